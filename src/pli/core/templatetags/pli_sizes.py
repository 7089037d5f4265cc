"""Sizes shown to people (pli.core.sizes)."""

from __future__ import annotations

from django import template

from pli.core import sizes

register = template.Library()


@register.filter
def file_size(value: int) -> str:
    return sizes.file_size(int(value))
