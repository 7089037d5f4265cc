"""A signed-in session's browser and system as people name them (« Firefox 133 sur Windows
10 »): the raw user agent string told nobody which session was their phone."""

from __future__ import annotations

from functools import lru_cache

from django import template
from django.utils.translation import gettext as _
from ua_parser import parse

register = template.Library()

# Longer strings are padding or an attack on the parser's regular expressions, not a browser.
_LONGEST = 512
# Device names that add nothing to the browser and the system.
_VAGUE_DEVICES = frozenset({"Other", "Mac", "Spider", "Generic Smartphone", "Generic Feature Phone", "K"})
# Systems whose user agent keeps an old version whatever the real one (macOS says 10.15),
# or gives a build number (ChromeOS): named without a version.
_NO_VERSION = frozenset({"Mac OS X", "Chrome OS"})
# As their makers name them now.
_SYSTEM_NAMES = {"Mac OS X": "macOS", "Chrome OS": "ChromeOS"}


@lru_cache(maxsize=256)
def _parts(user_agent: str) -> tuple[str, str, str]:
    """(browser, system, device), each empty when unknown."""
    result = parse(user_agent[:_LONGEST])
    browser = system = device = ""
    if result.user_agent is not None and result.user_agent.family != "Other":
        browser = " ".join(filter(None, [result.user_agent.family, result.user_agent.major]))
    if result.os is not None and result.os.family != "Other":
        major = None if result.os.family in _NO_VERSION else result.os.major
        system = " ".join(filter(None, [_SYSTEM_NAMES.get(result.os.family, result.os.family), major]))
    if result.device is not None and result.device.family not in _VAGUE_DEVICES:
        device = result.device.family
    return browser, system, device


@register.filter
def device_name(user_agent: str | None) -> str:
    raw = (user_agent or "").strip()
    if not raw:
        return _("Unknown device")
    browser, system, device = _parts(raw)
    if browser and system:
        name = _("%(browser)s on %(system)s") % {"browser": browser, "system": system}
    elif browser:
        name = browser
    else:
        # Not a browser the parser knows (a script, an application): what it says of itself,
        # « Windows » alone said nothing of « Pli-Desktop/1.2 (Windows) ».
        return raw if len(raw) <= 80 else raw[:79] + "…"
    return f"{name} ({device})" if device and device not in name else name
