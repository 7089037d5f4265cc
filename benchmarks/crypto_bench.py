"""Throughput and memory of the streaming encryption and the blob store, and a reference
of this machine's speed at running Python (``python_reference_ms``, lower is faster).

Units: 1 MB = 10**6 bytes everywhere (as openssl and dd report), so MB/s figures compare
directly. The payloads are 512 MiB (and 1 GiB for the memory figure).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from pli.blobs import BlobStore
from pli.crypto import decrypt_stream, encrypt_stream, new_data_key

MB = 1_000_000
PAYLOAD = 512 * 2**20
RSS_PAYLOAD = 2**30
CHUNK = 2**20
DISK_ROUNDS = 3
AAD = b"bench:blob"
BLOB_ID = "0" * 32
BENCH_DIR = Path(__file__).resolve().parent.parent / "var" / "bench"

Figure = tuple[str, float, str]


def _chunks(total: int, block: bytes) -> Iterator[bytes]:
    """``total`` bytes of plaintext as reused 1 MiB blocks: never the whole payload in memory."""
    whole, rest = divmod(total, len(block))
    for _ in range(whole):
        yield block
    if rest:
        yield block[:rest]


class _RepeatingReader(io.RawIOBase):
    """A file-like source of ``total`` bytes that fills the caller's buffer, like an upload
    spooled to disk and read from the page cache (one copy per byte)."""

    def __init__(self, total: int, block: bytes) -> None:
        self._left = total
        self._block = memoryview(block)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        count = min(len(buffer), self._left, len(self._block))
        buffer[:count] = self._block[:count]
        self._left -= count
        return count


def _rate(size: int, seconds: float) -> float:
    return size / seconds / MB


def bench_stream(block: bytes) -> list[Figure]:
    key = new_data_key()
    start = time.perf_counter()
    for _ in encrypt_stream(key, AAD, _chunks(PAYLOAD, block)):
        pass
    encrypt = _rate(PAYLOAD, time.perf_counter() - start)

    # Decryption needs a genuine 512 MiB ciphertext; it is held in memory (untimed) so the
    # figure is the cipher's, not a disk's.
    ciphertext = list(encrypt_stream(key, AAD, _chunks(PAYLOAD, block)))
    start = time.perf_counter()
    for _ in decrypt_stream(key, AAD, ciphertext):
        pass
    decrypt = _rate(PAYLOAD, time.perf_counter() - start)
    return [("blob_encrypt_mb_s", encrypt, "MB/s"), ("blob_decrypt_mb_s", decrypt, "MB/s")]


def bench_openssl() -> float:
    """Single-core AES-256-GCM on 16 KiB blocks, as ``openssl speed`` measures it."""
    result = subprocess.run(
        ["openssl", "speed", "-evp", "aes-256-gcm", "-seconds", "3", "-bytes", "16384"],
        capture_output=True,
        text=True,
        check=True,
    )
    # The last line reads "AES-256-GCM  4039781.03k": thousands of bytes per second.
    match = re.search(r"^AES-256-GCM\s+([0-9.]+)k\s*$", result.stdout, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"unexpected openssl output: {result.stdout!r}")
    return float(match.group(1)) * 1000 / MB


def bench_memory_copy(block: bytes) -> list[Figure]:
    """One core copying memory (best of three), of 256 MiB, then of one 1 MiB buffer into
    another over and over. Reading a blob copies it out of the page cache once (and
    decryption writes it once more); a download also copies it into the socket and out of
    it again, mostly at the first speed, since a 100 MB blob does not stay in the caches.
    What those copies cost on this machine bounds a download against the blob read."""
    source = bytearray(block) * 256
    target = bytearray(len(source))
    hot_source, hot_target = bytearray(block), bytearray(len(block))
    cold = hot = 0.0
    for _ in range(3):
        start = time.perf_counter()
        target[:] = source
        cold = max(cold, _rate(len(source), time.perf_counter() - start))
        start = time.perf_counter()
        for _ in range(256):
            hot_target[:] = hot_source
        hot = max(hot, _rate(256 * len(block), time.perf_counter() - start))
    return [("memory_copy_mb_s", cold, "MB/s"), ("memory_copy_cached_mb_s", hot, "MB/s")]


def bench_store(directory: Path, block: bytes) -> tuple[float, float]:
    """Return (write, read) MB/s for one 512 MiB blob."""
    store = BlobStore(directory / "store")
    key = new_data_key()
    start = time.perf_counter()
    # put() fsyncs the file and its directory: this is a durable write, like dd's fdatasync.
    store.put(BLOB_ID, _RepeatingReader(PAYLOAD, block), key, AAD)
    write = _rate(PAYLOAD, time.perf_counter() - start)

    # The blob was just written, so it is read from the page cache: this measures
    # decryption plus a kernel copy, not the disk.
    start = time.perf_counter()
    for _ in store.open(BLOB_ID, key, AAD):
        pass
    read = _rate(PAYLOAD, time.perf_counter() - start)
    store.delete(BLOB_ID)
    return write, read


def bench_dd(directory: Path) -> float:
    target = directory / "dd.bin"
    result = subprocess.run(
        ["dd", "if=/dev/zero", f"of={target}", "bs=1M", "count=512", "conv=fdatasync"],
        capture_output=True,
        text=True,
        check=True,
    )
    target.unlink()
    # "536870912 bytes (537 MB, 512 MiB) copied, 1.05 s, 509 MB/s": recompute from bytes and
    # seconds, since dd picks its own unit for the rate.
    match = re.search(r"^(\d+) bytes .* copied, ([0-9.]+) s", result.stderr, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"unexpected dd output: {result.stderr!r}")
    return _rate(int(match.group(1)), float(match.group(2)))


def bench_peak_rss(directory: Path) -> float:
    """Peak RSS of a fresh process streaming 1 GiB through encrypt, the store and decrypt."""
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.crypto_bench", "rss-child", str(directory)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    return float(result.stdout.strip()) * 1024 / MB  # VmHWM is in KiB


def _rss_child(directory: Path) -> None:
    block = os.urandom(CHUNK)
    store = BlobStore(directory / "rss")
    key = new_data_key()
    # An iterable source goes through encrypt_stream, the path with the most buffering.
    info = store.put(BLOB_ID, _chunks(RSS_PAYLOAD, block), key, AAD)
    total = 0
    for piece in store.open(BLOB_ID, key, AAD):
        total += len(piece)
    if total != RSS_PAYLOAD or info.size != RSS_PAYLOAD:
        raise RuntimeError("size mismatch")
    store.delete(BLOB_ID)
    # Not ru_maxrss: Linux carries the parent's high-water mark across fork and exec into
    # it, so the child would report the benchmark process's own peak. VmHWM belongs to the
    # address space, which exec creates anew.
    status = Path("/proc/self/status").read_text()
    match = re.search(r"^VmHWM:\s+(\d+) kB$", status, re.MULTILINE)
    if match is None:
        raise RuntimeError("no VmHWM in /proc/self/status")
    print(match.group(1))


def bench_python_reference(rounds: int = 5) -> float:
    """Milliseconds for a fixed piece of pure Python (small dicts and strings built and read,
    as a request's code does), best of ``rounds``: how fast this machine runs Python at the
    moment. The CPU-bound figures (sends, share creation, page latencies) move with it: on
    2026-12-01 one send cost twice yesterday's server CPU on unchanged code. Compare two
    days' runs against it before suspecting the code."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        total = 0
        for i in range(200_000):
            row = {"id": i, "name": f"user{i}", "tags": [i, i + 1]}
            total += len(row["name"]) + row["tags"][1]
        best = min(best, time.perf_counter() - start)
    return best * 1000


def run() -> list[Figure]:
    figures: list[Figure] = [("python_reference_ms", bench_python_reference(), "ms")]
    block = os.urandom(CHUNK)
    figures += bench_stream(block)
    figures += bench_memory_copy(block)
    openssl = bench_openssl()
    figures.append(("openssl_aes256gcm_mb_s", openssl, "MB/s"))

    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(dir=BENCH_DIR))
    try:
        # This machine's disk is virtual and its speed swings by 2x from one run to the next:
        # the store and dd take turns, three times each, and the medians are reported.
        stores, dds = [], []
        for _ in range(DISK_ROUNDS):
            stores.append(bench_store(directory, block))
            dds.append(bench_dd(directory))
        write = statistics.median(w for w, _ in stores)
        dd = statistics.median(dds)
        figures.append(("blob_store_write_mb_s", write, "MB/s"))
        figures.append(("blob_store_read_mb_s", statistics.median(r for _, r in stores), "MB/s"))
        figures.append(("dd_fdatasync_write_mb_s", dd, "MB/s"))
        figures.append(("blob_peak_rss_mb", bench_peak_rss(directory), "MB"))
    finally:
        shutil.rmtree(directory, ignore_errors=True)

    values = {name: value for name, value, _ in figures}
    figures.append(("blob_encrypt_vs_openssl_pct", 100 * values["blob_encrypt_mb_s"] / openssl, "%"))
    figures.append(("blob_store_write_vs_dd_pct", 100 * write / dd, "%"))
    return figures


if __name__ == "__main__" and sys.argv[1:2] == ["rss-child"]:
    _rss_child(Path(sys.argv[2]))
