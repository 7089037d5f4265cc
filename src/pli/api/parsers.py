"""Request body parsers of the API."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import IO, Any

from django.utils.translation import gettext as _
from rest_framework import parsers
from rest_framework.exceptions import ParseError


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, refusing with a 400 what it would let through to a 500:

    * nesting deep enough to exhaust Python's recursion limit (``[[[[…]]]]``);
    * a lone UTF-16 surrogate (``"\\ud800"``), valid JSON that no UTF-8 text can hold: an
      error message quoting it could not be rendered, nor the value encrypted or stored.
    """

    def parse(
        self, stream: IO[Any], media_type: str | None = None, parser_context: Mapping[str, Any] | None = None
    ) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(_("the JSON is nested too deeply.")) from None
        except ParseError as exc:
            # DRF's own message is Python's, in English ("JSON parse error - Expecting
            # property name enclosed in double quotes…"), inside a French answer.
            raise ParseError(_unreadable(exc.__context__)) from None
        try:
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ParseError(_("the JSON holds text that is not valid Unicode.")) from None
        except RecursionError:
            raise ParseError(_("the JSON is nested too deeply.")) from None
        return data


def _unreadable(cause: BaseException | None) -> str:
    if isinstance(cause, json.JSONDecodeError):
        return _("the body is not valid JSON (line %(line)d, column %(column)d).") % {
            "line": cause.lineno,
            "column": cause.colno,
        }
    if isinstance(cause, UnicodeDecodeError):
        return _("the JSON is not encoded in UTF-8.")
    return _("the body is not valid JSON.")
