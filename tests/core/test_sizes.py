"""Size limits read as they were set: 10,000,000 bytes is "10 Mo", 100 MiB is "100 Mio"."""

from __future__ import annotations

import pytest
from django.utils import translation

from pli.core.sizes import limit_size


@pytest.mark.parametrize(
    ("value", "french", "english"),
    [
        (10 * 10**6, "10 Mo", "10 MB"),
        (100 * 2**20, "100 Mio", "100 MB"),
        (1_500_000, "1,5 Mo", "1.5 MB"),
        (3 * 2**30, "3 Gio", "3 GB"),
        (2_500, "2,5 ko", "2.5 KB"),
        # Multiples of 1024 in powers of 1000 too: read as set.
        (16_000_000, "16 Mo", "16 MB"),
        (2 * 10**9, "2 Go", "2 GB"),
        # Neither: rounded, not cut.
        (1_990_000, "2 Mo", "2 MB"),
        (1_234_567, "1,2 Mo", "1.2 MB"),
    ],
)
def test_limits_in_the_units_they_were_set_in(value: int, french: str, english: str) -> None:
    with translation.override("fr"):
        assert limit_size(value) == french
    with translation.override("en"):
        assert limit_size(value) == english


def test_small_limits_in_bytes() -> None:
    with translation.override("en"):
        assert limit_size(512).replace("\xa0", " ") == "512 bytes"


@pytest.mark.parametrize(
    ("value", "french", "english"),
    [
        (1_572_864, "1,6 Mo", "1.6 MB"),
        (358_400, "358 ko", "358 KB"),
        (12_345, "12,3 ko", "12.3 KB"),
        (100 * 2**20, "105 Mo", "105 MB"),
        (3 * 10**9, "3 Go", "3 GB"),
    ],
)
def test_file_sizes_in_the_units_phones_show(value: int, french: str, english: str) -> None:
    """An attachment's size read « 1,5 Mio » beside limits of « 100 Mo » and the sizes the
    compose page's script writes: units few French readers know, counted otherwise."""
    from pli.core.sizes import file_size

    with translation.override("fr"):
        assert file_size(value) == french
    with translation.override("en"):
        assert file_size(value) == english
