"""The character sets a request's text may come in."""

from __future__ import annotations

import codecs

# Django decodes a form with the charset its request names, and Pli decodes a multipart
# text part with its own: only these, which cover the clients seen in France (UTF-8, and
# the Latin-1 family Java and older Windows software send). Others garbled text (utf-16),
# raised errors Django does not expect (idna), or produced text no database can store
# (utf-7 yields lone surrogates).
SUPPORTED = frozenset({"utf-8", "ascii", "iso8859-1", "iso8859-15", "cp1252", "iso8859-2", "cp1250"})


def codec_name(name: str | None) -> str | None:
    """A charset's canonical codec name, or None when unnamed or unknown to Python."""
    if not name:
        return None
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def supported(name: str | None) -> bool:
    """Whether text in charset ``name`` is read (a known codec among :data:`SUPPORTED`)."""
    return codec_name(name) in SUPPORTED
