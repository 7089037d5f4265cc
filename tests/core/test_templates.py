"""Pli's own templates, read as files."""

from __future__ import annotations

from pathlib import Path

import pli

TEMPLATES = sorted(
    path
    for path in Path(pli.__file__).parent.glob("**/templates/**/*")
    if path.suffix in {".html", ".txt"} and path.is_file()
)


def test_there_are_templates() -> None:
    assert len(TEMPLATES) > 50


def test_every_short_comment_closes_on_its_own_line() -> None:
    """Django's ``{# … #}`` comments hold to one line: one written over two was printed on the
    page (the shares list's did, while it was being written). Longer comments use
    ``{% comment %}``."""
    unclosed = []
    for path in TEMPLATES:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if line.count("{#") > line.count("#}"):
                unclosed.append(f"{path.relative_to(Path(pli.__file__).parent)}:{number}")
    assert unclosed == []
