"""Path converters of the API."""

from __future__ import annotations

import uuid

from django.urls import register_converter


class AnyCaseUUIDConverter:
    """``<guid:name>``: a UUID in any case. Django's ``<uuid:…>`` takes lower case only, and
    software built on SQL Server or .NET writes GUIDs in capitals: their requests for a
    message the caller can see were answered 404, as if it did not exist."""

    regex = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"

    def to_python(self, value: str) -> uuid.UUID:
        return uuid.UUID(value)

    def to_url(self, value: uuid.UUID | str) -> str:
        return str(value).lower()


register_converter(AnyCaseUUIDConverter, "guid")
