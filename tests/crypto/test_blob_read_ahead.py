"""Decrypting ahead on a helper thread: the same pieces and the same errors as the plain
reader, at most a few segments ahead, and nothing left running or open afterwards."""

from __future__ import annotations

import gc
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pli.blobs import BlobReader, BlobStore, ReadAhead
from pli.blobs.read_ahead import DEFAULT_DEPTH
from pli.crypto import SEGMENT_SIZE, DecryptionError
from pli.testing.blobs import descriptors_on, read_ahead_threads

BLOB_ID = "0123456789abcdef0123456789abcdef"
AAD = b"attachment:" + BLOB_ID.encode()
KEY = bytes(range(32))
FIRST = SEGMENT_SIZE - 40 - 16  # plaintext bytes in the first segment (after the Tink header)
FULL = SEGMENT_SIZE - 16  # plaintext bytes in each following segment
# Six segments: enough for the helper to run ahead of the consumer.
SIX = os.urandom(FIRST + 4 * FULL + 777)


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "blobs")


def _open(store: BlobStore) -> int:
    """How many descriptors this process has open on the blob's file."""
    return descriptors_on(store.path_for(BLOB_ID))


def _until(condition: Callable[[], bool], seconds: float = 10) -> None:
    """Wait for another thread to get somewhere (a bound, not a timing assertion)."""
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.005)


def _read(reader: Iterator[bytes]) -> tuple[list[bytes], BaseException | None]:
    pieces: list[bytes] = []
    try:
        for piece in reader:
            pieces.append(piece)
    except Exception as exc:
        return pieces, exc
    return pieces, None


def _ahead(store: BlobStore) -> ReadAhead:
    return ReadAhead(store.open(BLOB_ID, KEY, AAD))


class Counting(Iterator[bytes]):
    """A reader that records which thread took each piece, and whether it was closed."""

    def __init__(self, count: int, fail_after: int | None = None) -> None:
        self.count = count
        self.fail_after = fail_after
        self.taken_by: list[int] = []
        self.closed = False

    def __next__(self) -> bytes:
        if self.fail_after is not None and len(self.taken_by) == self.fail_after:
            raise OSError("disk gone")
        if len(self.taken_by) == self.count:
            raise StopIteration
        self.taken_by.append(threading.get_ident())
        return len(self.taken_by).to_bytes(4, "big")

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize("size", [0, 1, FIRST, FIRST + 1, FIRST + FULL, FIRST + 2 * FULL + 12345, len(SIX)])
def test_same_pieces_as_the_plain_reader(store: BlobStore, size: int) -> None:
    data = SIX[:size]
    store.put(BLOB_ID, [data], KEY, AAD)
    plain = list(store.open(BLOB_ID, KEY, AAD))
    with _ahead(store) as ahead:
        pieces = list(ahead)
    assert pieces == plain
    assert b"".join(pieces) == data
    assert _open(store) == 0
    assert read_ahead_threads() == []


def test_later_segments_are_decrypted_on_a_helper_thread() -> None:
    reader = Counting(10)
    with ReadAhead(reader) as ahead:
        pieces = list(ahead)
    assert pieces == [i.to_bytes(4, "big") for i in range(1, 11)]
    me = threading.get_ident()
    # The first two on the caller's thread (no thread for a one-segment blob), the rest ahead.
    assert reader.taken_by[:2] == [me, me]
    assert me not in reader.taken_by[2:]
    assert reader.closed
    assert read_ahead_threads() == []


def test_one_segment_starts_no_thread(store: BlobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    store.put(BLOB_ID, [b"short"], KEY, AAD)
    started: list[threading.Thread] = []
    original = threading.Thread.start

    def spy(thread: threading.Thread) -> None:
        started.append(thread)
        original(thread)

    monkeypatch.setattr(threading.Thread, "start", spy)
    assert list(_ahead(store)) == [b"short"]
    assert started == []


def _segment_ends() -> list[int]:
    return [SEGMENT_SIZE + 1 + i * SEGMENT_SIZE for i in range(5)]


@pytest.mark.parametrize(
    "length", [0, 1, 41, 100, SEGMENT_SIZE // 2, *_segment_ends(), _segment_ends()[1] + 1, _segment_ends()[3] + 100]
)
def test_truncated_blob_fails_at_the_same_place(store: BlobStore, length: int) -> None:
    store.put(BLOB_ID, [SIX], KEY, AAD)
    with store.path_for(BLOB_ID).open("r+b") as file:
        file.truncate(length)
    plain, plain_error = _read(store.open(BLOB_ID, KEY, AAD))
    pieces, error = _read(_ahead(store))
    assert isinstance(plain_error, DecryptionError)
    assert isinstance(error, DecryptionError)
    # Only whole, authenticated segments came out, the same ones, never the whole content.
    assert pieces == plain
    assert SIX.startswith(b"".join(pieces))
    assert len(b"".join(pieces)) < len(SIX)
    assert read_ahead_threads() == []


@pytest.mark.parametrize("segment", [0, 1, 2, 5])
def test_altered_segment_fails_after_the_segments_before_it(store: BlobStore, segment: int) -> None:
    store.put(BLOB_ID, [SIX], KEY, AAD)
    path = store.path_for(BLOB_ID)
    offset = 1 + segment * SEGMENT_SIZE + 100
    with path.open("r+b") as file:
        file.seek(offset)
        byte = file.read(1)
        file.seek(offset)
        file.write(bytes([byte[0] ^ 0x01]))
    pieces, error = _read(_ahead(store))
    assert isinstance(error, DecryptionError)
    assert len(pieces) == segment
    assert b"".join(pieces) == SIX[: sum(len(p) for p in pieces)]


def test_reordered_segments_fail(store: BlobStore) -> None:
    store.put(BLOB_ID, [SIX], KEY, AAD)
    path = store.path_for(BLOB_ID)
    raw = bytearray(path.read_bytes())
    second, third = slice(1 + 2 * SEGMENT_SIZE, 1 + 3 * SEGMENT_SIZE), slice(1 + 3 * SEGMENT_SIZE, 1 + 4 * SEGMENT_SIZE)
    raw[second], raw[third] = raw[third], raw[second]
    path.write_bytes(bytes(raw))
    pieces, error = _read(_ahead(store))
    assert isinstance(error, DecryptionError)
    assert b"".join(pieces) == SIX[: FIRST + FULL]


def test_appended_data_fails(store: BlobStore) -> None:
    store.put(BLOB_ID, [SIX], KEY, AAD)
    with store.path_for(BLOB_ID).open("ab") as file:
        file.write(b"\x00" * 16)
    pieces, error = _read(_ahead(store))
    assert isinstance(error, DecryptionError)
    assert len(b"".join(pieces)) < len(SIX)


def test_reader_error_comes_in_order_and_closes_the_reader() -> None:
    reader = Counting(10, fail_after=5)
    pieces, error = _read(ReadAhead(reader))
    assert isinstance(error, OSError)
    assert pieces == [i.to_bytes(4, "big") for i in range(1, 6)]
    assert reader.closed
    assert read_ahead_threads() == []


def test_runs_at_most_depth_segments_ahead() -> None:
    reader = Counting(1000)
    ahead = ReadAhead(reader)
    for _ in range(3):
        next(ahead)
    # Three handed out, DEFAULT_DEPTH waiting in the queue, one more waiting to be put.
    bound = 3 + DEFAULT_DEPTH + 1
    _until(lambda: len(reader.taken_by) >= bound)
    time.sleep(0.1)  # room to run away, if it could
    assert len(reader.taken_by) == bound
    ahead.close()
    assert reader.closed
    assert read_ahead_threads() == []


def test_close_mid_stream_stops_the_helper_and_closes_the_file(store: BlobStore) -> None:
    store.put(BLOB_ID, [SIX], KEY, AAD)
    ahead = _ahead(store)
    assert next(ahead) == SIX[:FIRST]
    next(ahead)
    next(ahead)
    assert read_ahead_threads() != []
    assert _open(store) == 1
    ahead.close()
    assert _open(store) == 0
    assert read_ahead_threads() == []
    with pytest.raises(StopIteration):
        next(ahead)
    ahead.close()  # twice is fine


def test_close_before_reading_closes_the_file(store: BlobStore) -> None:
    store.put(BLOB_ID, [SIX], KEY, AAD)
    reader = store.open(BLOB_ID, KEY, AAD)
    assert isinstance(reader, BlobReader)
    ReadAhead(reader).close()
    assert _open(store) == 0


def test_abandoned_read_ahead_stops_its_helper(store: BlobStore) -> None:
    store.put(BLOB_ID, [SIX], KEY, AAD)
    ahead = _ahead(store)
    for _ in range(3):
        next(ahead)
    (helper,) = read_ahead_threads()
    assert _open(store) == 1
    del ahead
    gc.collect()
    helper.join(timeout=10)
    assert not helper.is_alive()
    assert _open(store) == 0


def test_depth_must_be_positive() -> None:
    with pytest.raises(ValueError, match="depth"):
        ReadAhead(Counting(1), depth=0)


def test_eager_decrypts_from_the_start_on_the_helper() -> None:
    reader = Counting(10)
    with ReadAhead(reader, eager=True) as ahead:
        # Before anything is asked for, the helper has begun (up to its bound).
        _until(lambda: len(reader.taken_by) >= DEFAULT_DEPTH + 1)
        assert read_ahead_threads() != []
        pieces = list(ahead)
    assert pieces == [i.to_bytes(4, "big") for i in range(1, 11)]
    assert threading.get_ident() not in reader.taken_by
    assert reader.closed
    assert read_ahead_threads() == []


def test_eager_closed_unread_closes_the_file(store: BlobStore) -> None:
    store.put(BLOB_ID, [SIX], KEY, AAD)
    ahead = ReadAhead(store.open(BLOB_ID, KEY, AAD), eager=True)
    _until(lambda: _open(store) == 1)
    ahead.close()
    assert _open(store) == 0
    assert read_ahead_threads() == []
