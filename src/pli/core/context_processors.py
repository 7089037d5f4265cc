from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest


def pli(request: HttpRequest) -> dict[str, Any]:
    return {"pli_env": settings.PLI_ENV, "pli_development": settings.PLI_ENV == "development"}
