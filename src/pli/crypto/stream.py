"""Streaming authenticated encryption for blobs of any size, in constant memory.

This implements Tink's *AES-GCM-HKDF streaming AEAD* construction, as specified by Tink
(``AesGcmHkdfStreamingKey``: HKDF-SHA256, 32-byte derived key, 1 MiB ciphertext segments,
which is Tink's ``AES256_GCM_HKDF_1MB`` template), preceded by one Pli format byte::

    0x01                                   Pli format byte (this construction)
    0x28                                   Tink header length (40)
    salt (32 random bytes)
    nonce prefix (7 random bytes)
    segment 0 || segment 1 || ... || segment n-1

* The segment key is HKDF-SHA256(ikm=key, salt=salt, info=associated data), 32 bytes, so
  every stream has its own AES key even if a data key is reused, and the associated
  data is bound to every segment through the key.
* Segment *i* is AES-256-GCM(segment key, nonce_prefix || i (uint32 big-endian) || last,
  plaintext_i) with no per-segment associated data, where ``last`` is 0x01 for the final
  segment and 0x00 otherwise. Numbering stops reordering; the final flag stops truncation,
  including truncation exactly at a segment boundary.
* Every ciphertext segment is 1 MiB (plaintext 1 MiB - 16 bytes) except the first, which is
  shorter by the 40-byte Tink header, and the last, which may be shorter. An empty
  plaintext is one empty, final segment.

Everything after the Pli format byte is a Tink ciphertext, decryptable by Tink with a raw
``AesGcmHkdfStreamingKey`` holding the same key. The format byte lets a later construction
(for instance one wrapping a post-quantum hybrid HPKE key) sit beside this one without
migrating stored blobs.

Decryption yields each segment's plaintext as soon as that segment authenticates, so a
consumer may receive leading segments of a stream that turns out to be truncated or
tampered further on; the error is always raised before the iterator finishes, and callers
that must not act on partial data have to wait for the end of the stream.

Sizes are kept fixed by the format: ``segment_size`` parameters exist for tests and must
stay at their default for stored data.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterable
from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from pli.crypto.errors import CryptoError, DecryptionError, UnsupportedFormat

__all__ = [
    "FORMAT_AES256_GCM_HKDF",
    "HEADER_SIZE",
    "SEGMENT_SIZE",
    "STREAM_KEY_SIZE",
    "StreamDecryptor",
    "StreamEncryptor",
    "ciphertext_size",
    "decrypt_file",
    "decrypt_stream",
    "encrypt_file",
    "encrypt_stream",
]

FORMAT_AES256_GCM_HKDF = 0x01
STREAM_KEY_SIZE = 32
SEGMENT_SIZE = 1 << 20  # ciphertext bytes per segment, Tink's AES256_GCM_HKDF_1MB

_TAG_SIZE = 16
_SALT_SIZE = STREAM_KEY_SIZE
_NONCE_PREFIX_SIZE = 7
_TINK_HEADER_SIZE = 1 + _SALT_SIZE + _NONCE_PREFIX_SIZE
HEADER_SIZE = 1 + _TINK_HEADER_SIZE
_MAX_SEGMENTS = 2**32
_MAX_SEGMENT_SIZE = 2**31 - 1
_FIRST_OVERHEAD = _TINK_HEADER_SIZE + _TAG_SIZE

ByteData = bytes | bytearray | memoryview


@runtime_checkable
class ReadableInto(Protocol):
    """A binary file object that can fill a caller's buffer (files, BytesIO, buffered readers)."""

    def readinto(self, buffer: memoryview, /) -> int | None: ...


class Writable(Protocol):
    """A binary file object to write ciphertext to."""

    def write(self, data: memoryview | bytes, /) -> int | None: ...


def ciphertext_size(plaintext_size: int, *, segment_size: int = SEGMENT_SIZE) -> int:
    """Return the length of the encryption of ``plaintext_size`` bytes."""
    _check_segment_size(segment_size)
    first = segment_size - _FIRST_OVERHEAD
    full = segment_size - _TAG_SIZE
    segments = 1 if plaintext_size <= first else 1 + -(-(plaintext_size - first) // full)
    return HEADER_SIZE + plaintext_size + segments * _TAG_SIZE


def _check_segment_size(segment_size: int) -> None:
    # Tink requires at least one plaintext byte in the first segment.
    if not _FIRST_OVERHEAD < segment_size <= _MAX_SEGMENT_SIZE:
        raise ValueError(f"segment_size must be in {_FIRST_OVERHEAD + 1}..{_MAX_SEGMENT_SIZE}, got {segment_size}")


def _check_key(key: bytes) -> None:
    if len(key) != STREAM_KEY_SIZE:
        raise ValueError(f"stream key must be {STREAM_KEY_SIZE} bytes, got {len(key)}")


def _as_bytes_view(data: ByteData) -> memoryview:
    view = memoryview(data)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view


class _Segments:
    """Per-stream state shared by encryption and decryption: key, nonce, position."""

    __slots__ = ("_aead", "_prefix", "index", "segment_size")

    def __init__(self, key: bytes, aad: bytes, salt: bytes, nonce_prefix: bytes, segment_size: int) -> None:
        derived = HKDF(algorithm=hashes.SHA256(), length=STREAM_KEY_SIZE, salt=salt, info=aad).derive(key)
        self._aead = AESGCM(derived)
        self._prefix = nonce_prefix
        self.segment_size = segment_size
        self.index = 0

    def nonce(self, last: bool) -> bytes:
        return self._prefix + self.index.to_bytes(4, "big") + (b"\x01" if last else b"\x00")

    def advance(self) -> None:
        self.index += 1
        if self.index >= _MAX_SEGMENTS:
            raise CryptoError(f"stream exceeds {_MAX_SEGMENTS} segments")

    def seal(self, plaintext: memoryview, last: bool) -> bytes:
        return self._aead.encrypt(self.nonce(last), plaintext, None)

    def seal_into(self, plaintext: memoryview, last: bool, out: memoryview) -> int:
        # encrypt_into wants a buffer of exactly plaintext + tag bytes.
        return self._aead.encrypt_into(self.nonce(last), plaintext, None, out[: len(plaintext) + _TAG_SIZE])

    def open(self, ciphertext: memoryview, last: bool) -> bytes:
        if last:
            if len(ciphertext) < _TAG_SIZE:
                raise DecryptionError(f"ciphertext is truncated: final segment {self.index} is shorter than its tag")
            if len(ciphertext) == _TAG_SIZE and self.index > 0:
                # A conforming encryptor only emits an empty segment for an empty plaintext.
                raise DecryptionError(f"ciphertext has an empty final segment {self.index}")
        try:
            return self._aead.decrypt(self.nonce(last), ciphertext, None)
        except InvalidTag:
            raise DecryptionError(
                f"ciphertext failed authentication at segment {self.index} (tampered, "
                "truncated, extended, reordered, wrong key, or bound to another object)"
            ) from None


def _new_header() -> tuple[bytes, bytes, bytes]:
    salt = os.urandom(_SALT_SIZE)
    nonce_prefix = os.urandom(_NONCE_PREFIX_SIZE)
    header = bytes([FORMAT_AES256_GCM_HKDF, _TINK_HEADER_SIZE]) + salt + nonce_prefix
    return header, salt, nonce_prefix


def _parse_header(header: bytes | bytearray) -> tuple[bytes, bytes]:
    """Check a complete header and return (salt, nonce prefix)."""
    if header[1] != _TINK_HEADER_SIZE:
        raise DecryptionError(f"stream header declares length {header[1]}, {_TINK_HEADER_SIZE} expected")
    salt = bytes(header[2 : 2 + _SALT_SIZE])
    return salt, bytes(header[2 + _SALT_SIZE : HEADER_SIZE])


def _check_format_byte(first: int) -> None:
    if first != FORMAT_AES256_GCM_HKDF:
        raise UnsupportedFormat(f"unknown stream format byte 0x{first:02x}")


class StreamEncryptor:
    """Incremental encryption: feed plaintext with :meth:`update`, end with :meth:`finalize`.

    Holds at most one segment of plaintext. Emit :attr:`header` first, then every piece
    returned by :meth:`update`, then the result of :meth:`finalize`.
    """

    def __init__(self, key: bytes, aad: bytes, *, segment_size: int = SEGMENT_SIZE) -> None:
        _check_key(key)
        _check_segment_size(segment_size)
        self.header, salt, nonce_prefix = _new_header()
        self._segments = _Segments(key, aad, salt, nonce_prefix, segment_size)
        self._buffer = memoryview(bytearray(segment_size - _TAG_SIZE))
        self._filled = 0
        self._limit = segment_size - _FIRST_OVERHEAD
        self._finished = False

    def update(self, data: ByteData) -> list[bytes]:
        """Take more plaintext; return the ciphertext segments completed so far."""
        if self._finished:
            raise ValueError("the stream is already finalized")
        view = _as_bytes_view(data)
        size = len(view)
        out: list[bytes] = []
        pos = 0
        segments = self._segments
        while pos < size:
            if self._filled == self._limit:
                # More data follows, so the buffered segment is not the last one.
                out.append(segments.seal(self._buffer[: self._filled], last=False))
                self._next_segment()
            if self._filled == 0 and size - pos > self._limit:
                # Whole segment inside the caller's data: encrypt in place, skipping a copy.
                out.append(segments.seal(view[pos : pos + self._limit], last=False))
                pos += self._limit
                self._next_segment()
                continue
            count = min(self._limit - self._filled, size - pos)
            self._buffer[self._filled : self._filled + count] = view[pos : pos + count]
            self._filled += count
            pos += count
        return out

    def finalize(self) -> bytes:
        """Encrypt the buffered plaintext as the final segment and return it."""
        if self._finished:
            raise ValueError("the stream is already finalized")
        self._finished = True
        return self._segments.seal(self._buffer[: self._filled], last=True)

    def _next_segment(self) -> None:
        self._segments.advance()
        self._filled = 0
        self._limit = self._segments.segment_size - _TAG_SIZE


class StreamDecryptor:
    """Incremental decryption: feed ciphertext with :meth:`update`, end with :meth:`finalize`.

    Each returned piece has been authenticated, but only :meth:`finalize` proves the stream
    is complete.
    """

    def __init__(self, key: bytes, aad: bytes, *, segment_size: int = SEGMENT_SIZE) -> None:
        _check_key(key)
        _check_segment_size(segment_size)
        self._key = key
        self._aad = aad
        self._segment_size = segment_size
        self._header = bytearray()
        self._segments: _Segments | None = None
        self._buffer = memoryview(bytearray(segment_size))
        self._filled = 0
        self._limit = segment_size - _TINK_HEADER_SIZE
        self._finished = False

    def update(self, data: ByteData) -> list[bytes]:
        """Take more ciphertext; return the plaintext of the segments authenticated so far."""
        if self._finished:
            raise ValueError("the stream is already finalized or failed")
        view = _as_bytes_view(data)
        size = len(view)
        pos = 0
        try:
            segments = self._segments
            if segments is None:
                pos = min(HEADER_SIZE - len(self._header), size)
                self._header += view[:pos]
                if self._header:
                    _check_format_byte(self._header[0])
                if len(self._header) < HEADER_SIZE:
                    return []
                segments = self._start()
            out: list[bytes] = []
            while pos < size:
                if self._filled == self._limit:
                    out.append(segments.open(self._buffer[: self._filled], last=False))
                    self._next_segment(segments)
                if self._filled == 0 and size - pos > self._limit:
                    out.append(segments.open(view[pos : pos + self._limit], last=False))
                    pos += self._limit
                    self._next_segment(segments)
                    continue
                count = min(self._limit - self._filled, size - pos)
                self._buffer[self._filled : self._filled + count] = view[pos : pos + count]
                self._filled += count
                pos += count
            return out
        except CryptoError:
            self._finished = True
            raise

    def finalize(self) -> bytes:
        """Authenticate the final segment and return its plaintext."""
        if self._finished:
            raise ValueError("the stream is already finalized or failed")
        self._finished = True
        if self._segments is None:
            if not self._header:
                raise DecryptionError("ciphertext is empty")
            raise DecryptionError("ciphertext is truncated inside its header")
        return self._segments.open(self._buffer[: self._filled], last=True)

    def _start(self) -> _Segments:
        salt, nonce_prefix = _parse_header(self._header)
        self._segments = _Segments(self._key, self._aad, salt, nonce_prefix, self._segment_size)
        return self._segments

    def _next_segment(self, segments: _Segments) -> None:
        segments.advance()
        self._filled = 0
        self._limit = segments.segment_size


def encrypt_stream(
    key: bytes,
    aad: bytes,
    chunks: Iterable[ByteData],
    *,
    segment_size: int = SEGMENT_SIZE,
) -> Generator[bytes, None, None]:
    """Encrypt an iterable of plaintext chunks of any sizes, yielding ciphertext pieces."""
    encryptor = StreamEncryptor(key, aad, segment_size=segment_size)
    yield encryptor.header
    for chunk in chunks:
        yield from encryptor.update(chunk)
    yield encryptor.finalize()


def decrypt_stream(
    key: bytes,
    aad: bytes,
    chunks: Iterable[ByteData],
    *,
    segment_size: int = SEGMENT_SIZE,
) -> Generator[bytes, None, None]:
    """Decrypt an iterable of ciphertext chunks, yielding plaintext segment by segment.

    Raises :class:`DecryptionError` before finishing if the stream is not intact.
    """
    decryptor = StreamDecryptor(key, aad, segment_size=segment_size)
    for chunk in chunks:
        yield from decryptor.update(chunk)
    yield decryptor.finalize()


def _read_full(source: ReadableInto, view: memoryview) -> int:
    """Fill ``view`` from ``source``; return the byte count, short only at end of file."""
    filled = 0
    size = len(view)
    while filled < size:
        count = source.readinto(view[filled:])
        if count is None:
            raise OSError("non-blocking source returned no data")
        if count == 0:
            break
        filled += count
    return filled


def _write_all(destination: Writable, data: memoryview) -> None:
    # Raw (unbuffered) files may accept less than asked; buffered ones return None or all.
    while data:
        written = destination.write(data)
        if written is None or written >= len(data):
            return
        data = data[written:]


def encrypt_file(
    key: bytes,
    aad: bytes,
    source: ReadableInto,
    destination: Writable,
    *,
    observer: Callable[[memoryview], object] | None = None,
    segment_size: int = SEGMENT_SIZE,
) -> int:
    """Encrypt everything read from ``source`` into ``destination``; return the plaintext size.

    Reads straight into one reusable buffer and encrypts into another, so the cost per
    segment is the cipher itself. ``observer`` sees each plaintext segment before it is
    encrypted (to hash or count it; it may raise to abort) and must not keep the view.
    """
    # Running the observer on a helper thread was measured slower than inline (the handoff
    # per segment costs more than the overlap wins), so it runs inline.
    _check_key(key)
    _check_segment_size(segment_size)
    header, salt, nonce_prefix = _new_header()
    segments = _Segments(key, aad, salt, nonce_prefix, segment_size)
    _write_all(destination, memoryview(header))
    # One byte beyond the segment tells whether more data follows, i.e. whether it is last.
    plain = memoryview(bytearray(segment_size - _TAG_SIZE + 1))
    sealed = memoryview(bytearray(segment_size))
    limit = segment_size - _FIRST_OVERHEAD
    filled = _read_full(source, plain[: limit + 1])
    total = 0
    while True:
        last = filled <= limit
        count = filled if last else limit
        segment = plain[:count]
        if observer is not None:
            observer(segment)
        written = segments.seal_into(segment, last, sealed)
        _write_all(destination, sealed[:written])
        total += count
        if last:
            return total
        plain[0] = plain[limit]
        segments.advance()
        limit = segment_size - _TAG_SIZE
        filled = 1 + _read_full(source, plain[1 : limit + 1])


def decrypt_file(
    key: bytes,
    aad: bytes,
    source: ReadableInto,
    *,
    segment_size: int = SEGMENT_SIZE,
) -> Generator[bytes, None, None]:
    """Decrypt a stream read from ``source``, yielding plaintext segment by segment.

    Raises :class:`DecryptionError` before finishing if the stream is not intact.
    """
    _check_key(key)
    _check_segment_size(segment_size)
    header = bytearray(HEADER_SIZE)
    got = _read_full(source, memoryview(header))
    if got == 0:
        raise DecryptionError("ciphertext is empty")
    _check_format_byte(header[0])
    if got < HEADER_SIZE:
        raise DecryptionError("ciphertext is truncated inside its header")
    salt, nonce_prefix = _parse_header(header)
    segments = _Segments(key, aad, salt, nonce_prefix, segment_size)
    buffer = memoryview(bytearray(segment_size + 1))
    limit = segment_size - _TINK_HEADER_SIZE
    filled = _read_full(source, buffer[: limit + 1])
    while True:
        last = filled <= limit
        yield segments.open(buffer[: filled if last else limit], last)
        if last:
            return
        buffer[0] = buffer[limit]
        segments.advance()
        limit = segment_size
        filled = 1 + _read_full(source, buffer[1 : limit + 1])
