"""Encrypted blob store: round trips, atomic writes, limits, damaged files, path safety."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pli.blobs import BlobInfo, BlobNotFound, BlobStore, BlobTooLarge, validate_blob_id
from pli.crypto import SEGMENT_SIZE, DecryptionError, ciphertext_size, new_data_key

BLOB_ID = "0123456789abcdef0123456789abcdef"
OTHER_ID = "fedcba9876543210fedcba9876543210"
AAD = b"attachment:" + BLOB_ID.encode()
KEY = bytes(range(32))
# Three segments at the default size: header + first + full + a short last one.
BIG = os.urandom(SEGMENT_SIZE * 2 + 12345)


class ReadOnly:
    """A file-like object with read() only, like some upload wrappers."""

    def __init__(self, data: bytes) -> None:
        self._stream = io.BytesIO(data)

    def read(self, size: int = -1) -> bytes:
        return self._stream.read(size)


class Boom(Exception):
    pass


class FailingReader(io.RawIOBase):
    """Serves ``good`` bytes then fails, like a dropped upload."""

    def __init__(self, good: int) -> None:
        self._left = good

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._left <= 0:
            raise Boom("connection reset")
        count = min(len(buffer), self._left, 100_000)
        buffer[:count] = b"x" * count
        self._left -= count
        return count


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "blobs")


def _read(store: BlobStore, blob_id: str = BLOB_ID, aad: bytes = AAD) -> bytes:
    return b"".join(store.open(blob_id, KEY, aad))


def _leftovers(store: BlobStore) -> list[str]:
    return os.listdir(store.temp_dir) if store.temp_dir.exists() else []


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make_source",
    [
        pytest.param(lambda data: io.BytesIO(data), id="readinto"),
        pytest.param(lambda data: ReadOnly(data), id="read"),
        pytest.param(lambda data: [data[i : i + 70000] for i in range(0, len(data), 70000)], id="chunks"),
        pytest.param(lambda data: iter([data]), id="iterator"),
    ],
)
@pytest.mark.parametrize("data", [b"", b"hello", BIG], ids=["empty", "small", "three-segments"])
def test_round_trip(store: BlobStore, make_source: object, data: bytes) -> None:
    info = store.put(BLOB_ID, make_source(data), KEY, AAD)  # type: ignore[operator]
    assert info == BlobInfo(
        size=len(data), sha256=hashlib.sha256(data).hexdigest(), stored_size=ciphertext_size(len(data))
    )
    path = store.path_for(BLOB_ID)
    assert path == store.root / "01" / "23" / BLOB_ID
    assert path.stat().st_size == info.stored_size
    assert _read(store) == data
    assert _leftovers(store) == []


def test_put_from_real_file(store: BlobStore, tmp_path: Path) -> None:
    source = tmp_path / "upload.bin"
    source.write_bytes(BIG)
    with source.open("rb") as file:
        info = store.put(BLOB_ID, file, KEY, AAD)
    assert info.size == len(BIG)
    assert _read(store) == BIG


def test_content_is_encrypted_at_rest(store: BlobStore) -> None:
    secret = b"Patient: Jeanne Martin, diagnosis: confidential. " * 100
    store.put(BLOB_ID, [secret], KEY, AAD)
    raw = store.path_for(BLOB_ID).read_bytes()
    assert b"Jeanne" not in raw and b"confidential" not in raw
    assert raw[0] == 0x01


def test_modes_are_private(store: BlobStore) -> None:
    # With no umask at all, only the store's explicit modes protect the files.
    old_umask = os.umask(0)
    try:
        store.put(BLOB_ID, [b"data"], KEY, AAD)
    finally:
        os.umask(old_umask)
    path = store.path_for(BLOB_ID)
    assert _mode(path) == 0o600
    for directory in (store.root, store.temp_dir, path.parent, path.parent.parent):
        assert _mode(directory) == 0o700, directory


def test_put_replaces_existing_blob(store: BlobStore) -> None:
    store.put(BLOB_ID, [b"first"], KEY, AAD)
    store.put(BLOB_ID, [b"second"], KEY, AAD)
    assert _read(store) == b"second"


def test_blob_is_bound_to_its_key_and_associated_data(store: BlobStore) -> None:
    store.put(BLOB_ID, [b"data"], KEY, AAD)
    with pytest.raises(DecryptionError):
        _read(store, aad=b"attachment:" + OTHER_ID.encode())
    with pytest.raises(DecryptionError):
        b"".join(store.open(BLOB_ID, new_data_key(), AAD))
    # A blob file moved under another id (and read with that id's associated data) fails.
    store.path_for(OTHER_ID).parent.mkdir(parents=True)
    os.rename(store.path_for(BLOB_ID), store.path_for(OTHER_ID))
    with pytest.raises(DecryptionError):
        _read(store, OTHER_ID, b"attachment:" + OTHER_ID.encode())


# -- atomicity ------------------------------------------------------------------------------


def test_failing_iterable_source_leaves_nothing(store: BlobStore) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"a" * SEGMENT_SIZE
        yield b"b" * SEGMENT_SIZE
        raise Boom("client went away")

    with pytest.raises(Boom):
        store.put(BLOB_ID, chunks(), KEY, AAD)
    assert not store.exists(BLOB_ID)
    assert _leftovers(store) == []


def test_failing_file_source_leaves_nothing(store: BlobStore) -> None:
    with pytest.raises(Boom):
        store.put(BLOB_ID, FailingReader(3 * SEGMENT_SIZE), KEY, AAD)
    assert not store.exists(BLOB_ID)
    assert _leftovers(store) == []


def test_failed_replacement_keeps_the_old_blob(store: BlobStore) -> None:
    store.put(BLOB_ID, [b"original"], KEY, AAD)
    with pytest.raises(Boom):
        store.put(BLOB_ID, FailingReader(10), KEY, AAD)
    assert _read(store) == b"original"


def test_fsync_failure_leaves_nothing(store: BlobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    store.put(OTHER_ID, [b"make the directories first"], KEY, AAD)
    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="Input/output error"):
        store.put(BLOB_ID, [b"data"], KEY, AAD)
    monkeypatch.undo()
    assert not store.exists(BLOB_ID)
    assert _leftovers(store) == []


def test_nothing_at_final_path_while_writing(store: BlobStore) -> None:
    seen: list[bool] = []

    def chunks() -> Iterator[bytes]:
        for _ in range(3):
            yield b"z" * SEGMENT_SIZE
            seen.append(store.exists(BLOB_ID))
            seen.append(len(_leftovers(store)) == 1)

    store.put(BLOB_ID, chunks(), KEY, AAD)
    assert seen == [False, True] * 3
    assert store.exists(BLOB_ID)


# -- limits ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make_source",
    [
        pytest.param(lambda data: io.BytesIO(data), id="readinto"),
        pytest.param(lambda data: [data[i : i + 1000] for i in range(0, len(data), 1000)], id="chunks"),
    ],
)
def test_max_size(store: BlobStore, make_source: object) -> None:
    data = os.urandom(5000)
    assert store.put(BLOB_ID, make_source(data), KEY, AAD, max_size=5000).size == 5000  # type: ignore[operator]
    with pytest.raises(BlobTooLarge, match="maximum size of 4999 bytes"):
        store.put(OTHER_ID, make_source(data), KEY, AAD, max_size=4999)  # type: ignore[operator]
    assert not store.exists(OTHER_ID)
    assert _leftovers(store) == []


def test_max_size_stops_early_on_endless_source(store: BlobStore) -> None:
    def endless() -> Iterator[bytes]:
        while True:
            yield b"\x00" * 65536

    with pytest.raises(BlobTooLarge):
        store.put(BLOB_ID, endless(), KEY, AAD, max_size=3 * SEGMENT_SIZE)
    assert _leftovers(store) == []


# -- damaged blobs on disk ------------------------------------------------------------------


def _segment_ends() -> list[int]:
    first = 1 + SEGMENT_SIZE
    return [first, first + SEGMENT_SIZE]


@pytest.mark.parametrize(
    "length",
    [0, 1, 20, 41, 100, SEGMENT_SIZE // 2, *_segment_ends(), _segment_ends()[0] + 1, _segment_ends()[1] + 100],
)
def test_truncated_blob_never_reads_as_complete(store: BlobStore, length: int) -> None:
    store.put(BLOB_ID, [BIG], KEY, AAD)
    path = store.path_for(BLOB_ID)
    with path.open("r+b") as file:
        file.truncate(length)
    got: list[bytes] = []
    with pytest.raises(DecryptionError):
        for piece in store.open(BLOB_ID, KEY, AAD):
            got.append(piece)
    # Only whole, authenticated segments came out, and never the full content.
    assert BIG.startswith(b"".join(got))
    assert len(b"".join(got)) < len(BIG)


def test_tampered_blob_fails(store: BlobStore) -> None:
    store.put(BLOB_ID, [BIG], KEY, AAD)
    path = store.path_for(BLOB_ID)
    for offset in (1, 30, 100, SEGMENT_SIZE + 5, path.stat().st_size - 1):
        with path.open("r+b") as file:
            file.seek(offset)
            byte = file.read(1)
            file.seek(offset)
            file.write(bytes([byte[0] ^ 0x40]))
        with pytest.raises(DecryptionError):
            _read(store)
        with path.open("r+b") as file:
            file.seek(offset)
            file.write(byte)
    assert _read(store) == BIG


def test_appended_data_fails(store: BlobStore) -> None:
    store.put(BLOB_ID, [b"short"], KEY, AAD)
    with store.path_for(BLOB_ID).open("ab") as file:
        file.write(b"\x00" * 16)
    with pytest.raises(DecryptionError):
        _read(store)


# -- ids and housekeeping -------------------------------------------------------------------


@pytest.mark.parametrize(
    "blob_id",
    [
        "",
        "../../../../etc/passwd",
        "..",
        "/etc/passwd",
        "0123456789abcdef0123456789abcde",
        "0123456789abcdef0123456789abcdef0",
        "0123456789ABCDEF0123456789ABCDEF",
        "0123456789abcdef0123456789abcdef\n",
        "01/23456789abcdef0123456789abcde",
        "0123456789abcdef0123456789abcd..",
        "tmp",
        "0123456789abcdef\x000123456789abcde",
    ],
)
def test_rejects_unsafe_ids(store: BlobStore, blob_id: str) -> None:
    with pytest.raises(ValueError, match="invalid blob id"):
        validate_blob_id(blob_id)
    with pytest.raises(ValueError, match="32 lowercase hexadecimal digits"):
        store.put(blob_id, [b"x"], KEY, AAD)
    for call in (store.open, lambda i, k, a: store.exists(i), lambda i, k, a: store.delete(i)):
        with pytest.raises(ValueError):
            call(blob_id, KEY, AAD)
    assert not store.root.exists() or list(store.iter_ids()) == []


def test_open_missing_blob_fails_at_once(store: BlobStore) -> None:
    with pytest.raises(BlobNotFound, match=f"blob {BLOB_ID} not found"):
        store.open(BLOB_ID, KEY, AAD)
    with pytest.raises(BlobNotFound):
        store.stored_size(BLOB_ID)


def test_exists_delete_and_iter_ids(store: BlobStore) -> None:
    assert list(store.iter_ids()) == []
    store.put(BLOB_ID, [b"one"], KEY, AAD)
    store.put(OTHER_ID, [b"two"], KEY, AAD)
    (store.root / "01" / "23" / "junk").write_text("not a blob")
    (store.root / "01" / "23" / OTHER_ID).write_text("a blob id under the wrong prefix")
    (store.temp_dir / f"{BLOB_ID}.abc.part").write_text("in progress")
    assert sorted(store.iter_ids()) == [BLOB_ID, OTHER_ID]
    assert store.exists(BLOB_ID)
    assert store.stored_size(BLOB_ID) == ciphertext_size(3)
    store.delete(BLOB_ID)
    assert not store.exists(BLOB_ID)
    store.delete(BLOB_ID)  # idempotent
    assert list(store.iter_ids()) == [OTHER_ID]


def test_cleanup_temp(store: BlobStore) -> None:
    assert store.cleanup_temp(60) == 0  # no tmp directory yet
    store.put(BLOB_ID, [b"x"], KEY, AAD)
    old = store.temp_dir / f"{BLOB_ID}.old.part"
    fresh = store.temp_dir / f"{OTHER_ID}.fresh.part"
    unrelated = store.temp_dir / "keep.txt"
    for path in (old, fresh, unrelated):
        path.write_bytes(b"partial ciphertext")
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    os.utime(unrelated, (an_hour_ago, an_hour_ago))
    assert store.cleanup_temp(600) == 1
    assert not old.exists() and fresh.exists() and unrelated.exists()
    assert store.exists(BLOB_ID)


THIRD_ID = "00112233445566778899aabbccddeeff"


def _age(store: BlobStore, *blob_ids: str, seconds: float = 3600) -> None:
    then = time.time() - seconds
    for blob_id in blob_ids:
        os.utime(store.path_for(blob_id), (then, then))


def test_sweep_removes_only_old_blobs_nothing_claims(store: BlobStore) -> None:
    for blob_id in (BLOB_ID, OTHER_ID, THIRD_ID):
        store.put(blob_id, [b"x"], KEY, AAD)
    _age(store, BLOB_ID, OTHER_ID)  # THIRD_ID was just written: an upload about to commit
    stale = store.temp_dir / f"{BLOB_ID}.old.part"
    stale.write_bytes(b"partial")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    asked: list[list[str]] = []

    def referenced(batch: list[str]) -> set[str]:
        asked.append(sorted(batch))
        return {OTHER_ID}

    result = store.sweep(600, referenced)
    assert (result.removed, result.temporary, result.failed) == (1, 1, 0)
    assert asked == [sorted([BLOB_ID, OTHER_ID])]
    assert sorted(store.iter_ids()) == sorted([OTHER_ID, THIRD_ID]) and not stale.exists()


def test_sweep_goes_on_past_what_it_cannot_read_or_remove(
    store: BlobStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A file or folder whose permissions were changed by hand stopped the whole clean-up
    (the first error ended it), leaving every other orphan on the disk for good."""
    for blob_id in (BLOB_ID, OTHER_ID, THIRD_ID):
        store.put(blob_id, [b"x"], KEY, AAD)
    _age(store, BLOB_ID, OTHER_ID, THIRD_ID)
    stuck_file = store.path_for(BLOB_ID)
    stuck_folder = store.path_for(THIRD_ID).parent
    real_unlink, real_scandir = Path.unlink, os.scandir

    def unlink(path: Path, missing_ok: bool = False) -> None:
        if path == stuck_file:
            raise PermissionError(13, "Permission denied", str(path))
        real_unlink(path, missing_ok)

    def scandir(path: str | Path = ".") -> object:
        if Path(path) == stuck_folder:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(Path, "unlink", unlink)
    monkeypatch.setattr(os, "scandir", scandir)
    with caplog.at_level("WARNING", logger="pli.blobs.store"):
        result = store.sweep(600, lambda batch: set())
    assert (result.removed, result.failed) == (1, 2)
    assert not store.path_for(OTHER_ID).exists()
    assert stuck_file.exists() and store.path_for(THIRD_ID).exists()
    logged = caplog.text
    assert BLOB_ID in logged and "EACCES" in logged and str(store.root.parent) not in logged
    # Without a handler for them, the errors are raised as before.
    with pytest.raises(PermissionError):
        list(store.iter_ids())


def test_reader_closes_its_file(store: BlobStore) -> None:
    store.put(BLOB_ID, [BIG], KEY, AAD)
    fd_dir = Path("/proc/self/fd")
    before = len(os.listdir(fd_dir))
    with store.open(BLOB_ID, KEY, AAD) as reader:
        next(reader)
        assert len(os.listdir(fd_dir)) == before + 1
    assert len(os.listdir(fd_dir)) == before
    reader = store.open(BLOB_ID, KEY, AAD)
    assert b"".join(reader) == BIG
    assert len(os.listdir(fd_dir)) == before


def test_root_and_missing_parents_are_created(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "data" / "deep" / "blobs")
    store.put(BLOB_ID, [b"x"], KEY, AAD)
    assert _read(store) == b"x"
    assert _mode(tmp_path / "data") == 0o700
