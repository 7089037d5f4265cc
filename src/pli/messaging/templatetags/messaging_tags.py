"""Rendering message text: escaped first, then web links made clickable."""

from __future__ import annotations

import datetime
import re

from django import template
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

register = template.Library()

# Matched on the *escaped* text, so a URL can't smuggle markup: "<", ">" and quotes are
# already entities, and an entity for one of them ends the URL.
# "www.ameli.fr" too, as mail programs do, but not inside a longer name or an address.
_URL = re.compile(r"(?:\bhttps?://|(?<![\w@./-])www\.)(?:(?!&quot;|&#x27;|&lt;|&gt;)[^\s<>\"'])+", re.IGNORECASE)
_TRAILING = ".,;:!?)]}»"


def _link(match: re.Match[str]) -> str:
    url = match.group(0)
    stripped = url.rstrip(_TRAILING)
    # Keep a closing bracket that belongs to the URL (Wikipedia-style links).
    if url[len(stripped) : len(stripped) + 1] == ")" and stripped.count("(") > stripped.count(")"):
        stripped += ")"
    tail = url[len(stripped) :]
    scheme = "" if stripped.lower().startswith("http") else "https://"
    if len(stripped) <= len("https://") or (scheme and "." not in stripped[4:]):
        return url
    return f'<a href="{scheme}{stripped}" rel="noopener noreferrer nofollow" target="_blank">{stripped}</a>{tail}'


@register.filter(is_safe=True)
def linkify(text: str | None) -> SafeString:
    """Plain text → safe HTML with http(s) and www. links; line breaks are kept by CSS (pre-wrap)."""
    escaped = str(escape(text or ""))
    return mark_safe(_URL.sub(_link, escaped))  # noqa: S308 - escaped above, links built from escaped text


@register.filter
def sex_label(code: str | None) -> str:
    """F, M, I as words, in the user's language."""
    from pli.messaging.forms import SEX_CHOICES

    return str(dict(SEX_CHOICES).get(code or "", code or ""))


@register.filter
def as_date(value: str | None) -> datetime.date | str:
    """An ISO date kept as text (patient context) as a date, for the ``date`` filter."""
    try:
        return datetime.date.fromisoformat(value or "")
    except ValueError:
        return value or ""
