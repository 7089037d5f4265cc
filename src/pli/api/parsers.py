"""Request body parsers of the API."""

from __future__ import annotations

import codecs
import collections
import io
import json
from collections.abc import Mapping
from typing import IO, Any

from django.conf import settings
from django.utils.translation import gettext as _
from rest_framework import parsers
from rest_framework.exceptions import ParseError, UnsupportedMediaType, ValidationError


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, refusing with a 400 what it would let through to a 500:

    * nesting deep enough to exhaust Python's recursion limit (``[[[[…]]]]``);
    * a lone UTF-16 surrogate (``"\\ud800"``), valid JSON that no UTF-8 text can hold: an
      error message quoting it could not be rendered, nor the value encrypted or stored;

    and, naming it, a field the object gives twice, of which Python keeps the last
    (``{"folder": "archive", "folder": "trash"}`` binned the message), as forms refuse them.
    A UTF-8 byte order mark before the JSON, as Windows tools write one, is ignored
    (RFC 8259 allows it; Python's parser refused the body as invalid at column 1).
    """

    def parse(
        self, stream: IO[Any], media_type: str | None = None, parser_context: Mapping[str, Any] | None = None
    ) -> Any:
        raw = stream.read().removeprefix(codecs.BOM_UTF8)
        try:
            data = super().parse(io.BytesIO(raw), media_type, parser_context)
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
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        repeated = _repeated_names(raw.decode(encoding))
        if repeated:
            raise ValidationError({name: [_("This field is given more than once: send it once.")] for name in repeated})
        return data


class _Members(list[tuple[str, Any]]):
    """An object's members as the JSON gives them, repeated names included."""


def _repeated_names(text: str) -> list[str]:
    """The names the body's top-level object gives more than once."""
    top = json.loads(text, object_pairs_hook=_Members)
    if not isinstance(top, _Members):
        return []
    counts = collections.Counter(name for name, _value in top)
    return [name for name, count in counts.items() if count > 1]


def _unreadable(cause: BaseException | None) -> str:
    if isinstance(cause, json.JSONDecodeError):
        return _("the body is not valid JSON (line %(line)d, column %(column)d).") % {
            "line": cause.lineno,
            "column": cause.colno,
        }
    if isinstance(cause, UnicodeDecodeError):
        return _("the JSON is not encoded in UTF-8.")
    return _("the body is not valid JSON.")


def unsupported_upload(content_type: str) -> UnsupportedMediaType:
    """The 415 of an endpoint that takes an upload (a send, a share), saying what it takes:
    DRF's own named only the type refused, and for a request without a Content-Type read
    « Type de média «  » non supporté. »."""
    if not content_type:
        detail = _("The request has no Content-Type header: send it as multipart/form-data.")
    else:
        detail = _('Media type "%(type)s" is not accepted here: send the request as multipart/form-data.') % {
            "type": content_type
        }
    return UnsupportedMediaType(content_type, detail=detail)
