"""Streaming encryption (Tink AES-GCM-HKDF): round trips, interoperability, every tamper."""

from __future__ import annotations

import io
import itertools
import os
from collections.abc import Callable, Iterable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pli.crypto import (
    SEGMENT_SIZE,
    CryptoError,
    DecryptionError,
    StreamDecryptor,
    StreamEncryptor,
    UnsupportedFormat,
    ciphertext_size,
    decrypt_file,
    decrypt_stream,
    encrypt_file,
    encrypt_stream,
)
from pli.crypto.stream import HEADER_SIZE, _Segments

KEY = bytes(range(32))
AAD = b"blob:3f1c|attachment"
# Small segments make multi-segment streams, boundaries and exhaustive tampering cheap.
SMALL = 64
SMALL_FIRST = SMALL - 40 - 16  # plaintext bytes in the first segment
SMALL_FULL = SMALL - 16  # plaintext bytes in the other segments
DEFAULT_FIRST = SEGMENT_SIZE - 40 - 16
DEFAULT_FULL = SEGMENT_SIZE - 16

Decrypt = Callable[[bytes, bytes, bytes, int], Iterator[bytes]]


def _decrypt_iterable(key: bytes, aad: bytes, ciphertext: bytes, segment_size: int) -> Iterator[bytes]:
    # Odd chunk sizes so segments straddle chunks.
    chunks = (ciphertext[i : i + 7] for i in range(0, len(ciphertext), 7))
    return decrypt_stream(key, aad, chunks, segment_size=segment_size)


def _decrypt_whole(key: bytes, aad: bytes, ciphertext: bytes, segment_size: int) -> Iterator[bytes]:
    return decrypt_stream(key, aad, [ciphertext], segment_size=segment_size)


def _decrypt_file(key: bytes, aad: bytes, ciphertext: bytes, segment_size: int) -> Iterator[bytes]:
    return decrypt_file(key, aad, io.BytesIO(ciphertext), segment_size=segment_size)


DECRYPTORS = [
    pytest.param(_decrypt_iterable, id="stream-chunked"),
    pytest.param(_decrypt_whole, id="stream-whole"),
    pytest.param(_decrypt_file, id="file"),
]


def _encrypt(plaintext: bytes, segment_size: int = SMALL, key: bytes = KEY, aad: bytes = AAD) -> bytes:
    return b"".join(encrypt_stream(key, aad, [plaintext], segment_size=segment_size))


def _segment_bounds(total: int, segment_size: int) -> list[int]:
    """Offsets in a ciphertext where a segment ends."""
    bounds = []
    end = HEADER_SIZE + segment_size - 40
    while end < total:
        bounds.append(end)
        end += segment_size
    return bounds


def _collect(pieces: Iterable[bytes]) -> tuple[list[bytes], BaseException | None]:
    """Consume ``pieces``, returning what was yielded and the error that ended it."""
    got: list[bytes] = []
    try:
        for piece in pieces:
            got.append(piece)
    except CryptoError as exc:
        return got, exc
    return got, None


# -- interoperability -----------------------------------------------------------------------

# Produced by Tink 1.16.1 (Python) with a raw AesGcmHkdfStreamingKey: key_value=bytes(range(32)),
# HKDF-SHA256, derived key size 32, ciphertext segment size 64, associated data
# b"pli known-answer test", plaintext bytes(i % 251 for i in range(150)).
TINK_CIPHERTEXT = bytes.fromhex(
    "28f92be464f35af53c88e9b1dbbd330b3f56604e08ae28fdcdb308d5a515c7f2ed43061d435a1f9d3143890b85"
    "0cdb43f072cf286fbad333cdf50edbb5d79613e9977313db9e70b86ad495124e41ce61ad4348c565ffe302e93b"
    "9332ad8b9916825f150d9e83bbe1d4b8f155f4f9c70a2f24f9843ea490d0a33b349293028410c53930f162ecad"
    "523ef4c2e2137cdbcdaff7e6a76aaf33a63661321bf4f5b8a85c8bd8eeb89cb9dfc9f0c87fca3342df9513d89a"
    "174a038765b9ce5cdb991d967f34a6e1d94ad2791a26ed45f58438fc233f864a6564d65a21af6f9f558d0f683c"
    "619a1da5b58d953b1c9ef9b398fa4669184def7838deadf4e94ab4b68f"
)


@pytest.mark.parametrize("decrypt", DECRYPTORS)
def test_decrypts_tink_ciphertext(decrypt: Decrypt) -> None:
    plaintext = bytes(i % 251 for i in range(150))
    got = b"".join(decrypt(bytes(range(32)), b"pli known-answer test", b"\x01" + TINK_CIPHERTEXT, 64))
    assert got == plaintext


def test_layout_matches_tink() -> None:
    ciphertext = _encrypt(b"x" * 100)
    assert ciphertext[0] == 0x01  # Pli format byte
    assert ciphertext[1] == 40  # Tink header length: itself, 32-byte salt, 7-byte nonce prefix
    assert len(ciphertext) == ciphertext_size(100, segment_size=SMALL)
    # 100 bytes = 8 (first segment) + 48 + 44: three segments, each with a 16-byte tag.
    assert len(ciphertext) == HEADER_SIZE + 100 + 3 * 16


def test_every_encryption_is_fresh() -> None:
    first, second = _encrypt(b"same"), _encrypt(b"same")
    assert first[2:41] != second[2:41]  # salt and nonce prefix
    assert first != second


# -- round trips ----------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    plaintext=st.binary(max_size=400),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=6),
    segment_size=st.sampled_from([57, 64, 100, 256]),
)
def test_round_trip_any_size_and_chunking(plaintext: bytes, cuts: list[int], segment_size: int) -> None:
    bounds = sorted({0, len(plaintext), *(c for c in cuts if c <= len(plaintext))})
    chunks = [plaintext[a:b] for a, b in itertools.pairwise(bounds)]
    ciphertext = b"".join(encrypt_stream(KEY, AAD, chunks, segment_size=segment_size))
    assert len(ciphertext) == ciphertext_size(len(plaintext), segment_size=segment_size)

    assert b"".join(decrypt_stream(KEY, AAD, [ciphertext], segment_size=segment_size)) == plaintext
    pieces = [ciphertext[a:b] for a, b in zip([0, *bounds], [*bounds, len(ciphertext)], strict=False)]
    assert b"".join(decrypt_stream(KEY, AAD, pieces, segment_size=segment_size)) == plaintext
    assert b"".join(decrypt_file(KEY, AAD, io.BytesIO(ciphertext), segment_size=segment_size)) == plaintext

    out = io.BytesIO()
    assert encrypt_file(KEY, AAD, io.BytesIO(plaintext), out, segment_size=segment_size) == len(plaintext)
    assert len(out.getvalue()) == len(ciphertext)
    assert b"".join(decrypt_stream(KEY, AAD, [out.getvalue()], segment_size=segment_size)) == plaintext


@pytest.mark.parametrize(
    "size",
    [
        0,
        1,
        DEFAULT_FIRST - 1,
        DEFAULT_FIRST,
        DEFAULT_FIRST + 1,
        DEFAULT_FIRST + DEFAULT_FULL - 1,
        DEFAULT_FIRST + DEFAULT_FULL,
        DEFAULT_FIRST + DEFAULT_FULL + 1,
    ],
)
def test_round_trip_at_default_segment_boundaries(size: int) -> None:
    plaintext = os.urandom(size)
    ciphertext = b"".join(encrypt_stream(KEY, AAD, [plaintext]))
    assert len(ciphertext) == ciphertext_size(size)
    assert b"".join(decrypt_stream(KEY, AAD, [ciphertext])) == plaintext
    out = io.BytesIO()
    encrypt_file(KEY, AAD, io.BytesIO(plaintext), out)
    assert b"".join(decrypt_file(KEY, AAD, io.BytesIO(out.getvalue()))) == plaintext


def test_exact_boundary_makes_no_empty_trailing_segment() -> None:
    # One full first segment is also the last one, as Tink does.
    assert ciphertext_size(SMALL_FIRST, segment_size=SMALL) == SMALL + 1
    assert len(_encrypt(b"a" * SMALL_FIRST)) == SMALL + 1
    assert len(_encrypt(b"a" * (SMALL_FIRST + SMALL_FULL))) == 2 * SMALL + 1


def test_decryption_yields_one_piece_per_segment() -> None:
    plaintext = os.urandom(SMALL_FIRST + 2 * SMALL_FULL + 5)
    pieces = list(decrypt_file(KEY, AAD, io.BytesIO(_encrypt(plaintext)), segment_size=SMALL))
    assert [len(p) for p in pieces] == [SMALL_FIRST, SMALL_FULL, SMALL_FULL, 5]


def test_reused_input_buffer_is_safe() -> None:
    # A reader that refills one bytearray must not corrupt segments held back by the encryptor.
    plaintext = os.urandom(1000)

    def refilling() -> Iterator[bytearray]:
        buffer = bytearray(30)
        for start in range(0, len(plaintext), 30):
            piece = plaintext[start : start + 30]
            buffer[: len(piece)] = piece
            yield buffer if len(piece) == 30 else bytearray(piece)

    ciphertext = b"".join(encrypt_stream(KEY, AAD, refilling(), segment_size=SMALL))
    assert b"".join(decrypt_stream(KEY, AAD, [ciphertext], segment_size=SMALL)) == plaintext


def test_incremental_objects() -> None:
    encryptor = StreamEncryptor(KEY, AAD, segment_size=SMALL)
    pieces = [encryptor.header]
    for _ in range(10):
        pieces += encryptor.update(memoryview(b"0123456789"))
    pieces.append(encryptor.finalize())
    with pytest.raises(ValueError, match="finalized"):
        encryptor.update(b"more")

    decryptor = StreamDecryptor(KEY, AAD, segment_size=SMALL)
    plain: list[bytes] = []
    for byte in b"".join(pieces):
        plain += decryptor.update(bytes([byte]))
    plain.append(decryptor.finalize())
    assert b"".join(plain) == b"0123456789" * 10


@pytest.mark.parametrize("key", [b"", b"k" * 16, b"k" * 31, b"k" * 33])
def test_rejects_bad_key_length(key: bytes) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        StreamEncryptor(key, AAD)
    with pytest.raises(ValueError, match="32 bytes"):
        StreamDecryptor(key, AAD)


@pytest.mark.parametrize("segment_size", [0, 56, 2**31])
def test_rejects_bad_segment_size(segment_size: int) -> None:
    with pytest.raises(ValueError, match="segment_size"):
        StreamEncryptor(KEY, AAD, segment_size=segment_size)


# -- tampering ------------------------------------------------------------------------------

PLAINTEXT = bytes(range(256))[:150]  # header + 4 segments at SMALL size


@pytest.mark.parametrize("decrypt", DECRYPTORS)
def test_any_bit_flip_is_detected(decrypt: Decrypt) -> None:
    ciphertext = _encrypt(PLAINTEXT)
    for position in range(len(ciphertext)):
        for bit in (0x01, 0x80):
            tampered = bytearray(ciphertext)
            tampered[position] ^= bit
            expected = UnsupportedFormat if position == 0 else DecryptionError
            with pytest.raises(expected):
                b"".join(decrypt(KEY, AAD, bytes(tampered), SMALL))


@pytest.mark.parametrize("decrypt", DECRYPTORS)
def test_any_truncation_is_detected(decrypt: Decrypt) -> None:
    ciphertext = _encrypt(PLAINTEXT)
    for length in range(len(ciphertext)):
        got, error = _collect(decrypt(KEY, AAD, ciphertext[:length], SMALL))
        assert isinstance(error, DecryptionError), length
        # Whatever came out before the error is an authenticated prefix, never garbage.
        assert PLAINTEXT.startswith(b"".join(got))


@pytest.mark.parametrize("decrypt", DECRYPTORS)
def test_truncation_exactly_at_segment_boundary(decrypt: Decrypt) -> None:
    plaintext = os.urandom(SMALL_FIRST + 3 * SMALL_FULL + 10)
    ciphertext = _encrypt(plaintext)
    bounds = _segment_bounds(len(ciphertext), SMALL)
    assert len(bounds) == 4
    for count, end in enumerate(bounds, start=1):
        got, error = _collect(decrypt(KEY, AAD, ciphertext[:end], SMALL))
        assert isinstance(error, DecryptionError)
        assert "authentication" in str(error)
        # The segments before the cut authenticate; the cut one, lacking its final flag, doesn't.
        authenticated = 0 if count == 1 else SMALL_FIRST + (count - 2) * SMALL_FULL
        assert b"".join(got) == plaintext[:authenticated]
        assert len(got) == count - 1


@pytest.mark.parametrize("decrypt", DECRYPTORS)
@pytest.mark.parametrize("extra", [b"\x00", os.urandom(16), os.urandom(SMALL), os.urandom(SMALL + 3)])
@pytest.mark.parametrize("size", [0, SMALL_FIRST, SMALL_FIRST + SMALL_FULL, 100])
def test_appended_data_is_detected(decrypt: Decrypt, extra: bytes, size: int) -> None:
    ciphertext = _encrypt(os.urandom(size))
    with pytest.raises(DecryptionError):
        b"".join(decrypt(KEY, AAD, ciphertext + extra, SMALL))


@pytest.mark.parametrize("decrypt", DECRYPTORS)
def test_appending_a_segment_of_another_stream_is_detected(decrypt: Decrypt) -> None:
    plaintext = os.urandom(SMALL_FIRST + SMALL_FULL)
    ciphertext = _encrypt(plaintext)
    other = _encrypt(os.urandom(SMALL_FIRST + 2 * SMALL_FULL))
    with pytest.raises(DecryptionError):
        b"".join(decrypt(KEY, AAD, ciphertext + other[-SMALL:], SMALL))


@pytest.mark.parametrize("decrypt", DECRYPTORS)
def test_swapped_segments_are_detected(decrypt: Decrypt) -> None:
    ciphertext = _encrypt(os.urandom(SMALL_FIRST + 3 * SMALL_FULL))
    start = HEADER_SIZE + SMALL_FIRST + 16
    second, third = ciphertext[start : start + SMALL], ciphertext[start + SMALL : start + 2 * SMALL]
    swapped = ciphertext[:start] + third + second + ciphertext[start + 2 * SMALL :]
    assert len(swapped) == len(ciphertext)
    with pytest.raises(DecryptionError, match="segment 1"):
        b"".join(decrypt(KEY, AAD, swapped, SMALL))


@pytest.mark.parametrize("decrypt", DECRYPTORS)
def test_segment_from_another_stream_is_detected(decrypt: Decrypt) -> None:
    size = SMALL_FIRST + 2 * SMALL_FULL
    first, second = _encrypt(os.urandom(size)), _encrypt(os.urandom(size))
    start = HEADER_SIZE + SMALL_FIRST + 16
    mixed = first[:start] + second[start : start + SMALL] + first[start + SMALL :]
    with pytest.raises(DecryptionError):
        b"".join(decrypt(KEY, AAD, mixed, SMALL))


@pytest.mark.parametrize("decrypt", DECRYPTORS)
def test_wrong_associated_data_or_key_is_detected(decrypt: Decrypt) -> None:
    ciphertext = _encrypt(PLAINTEXT)
    with pytest.raises(DecryptionError):
        b"".join(decrypt(KEY, b"blob:other|attachment", ciphertext, SMALL))
    with pytest.raises(DecryptionError):
        b"".join(decrypt(os.urandom(32), AAD, ciphertext, SMALL))
    with pytest.raises(DecryptionError):
        # Same bytes read with another segment size do not authenticate either.
        b"".join(decrypt(KEY, AAD, ciphertext, SMALL + 1))


@pytest.mark.parametrize("decrypt", DECRYPTORS)
@pytest.mark.parametrize("first_byte", [0x00, 0x02, 0xFF])
def test_unknown_format_byte(decrypt: Decrypt, first_byte: int) -> None:
    ciphertext = bytes([first_byte]) + _encrypt(PLAINTEXT)[1:]
    with pytest.raises(UnsupportedFormat, match=f"0x{first_byte:02x}"):
        b"".join(decrypt(KEY, AAD, ciphertext, SMALL))
    # Known from the first byte on, even before the header is complete.
    with pytest.raises(UnsupportedFormat):
        b"".join(decrypt(KEY, AAD, ciphertext[:1], SMALL))


@pytest.mark.parametrize("decrypt", DECRYPTORS)
def test_empty_and_short_inputs(decrypt: Decrypt) -> None:
    with pytest.raises(DecryptionError, match="empty"):
        b"".join(decrypt(KEY, AAD, b"", SMALL))
    with pytest.raises(DecryptionError, match="header"):
        b"".join(decrypt(KEY, AAD, _encrypt(b"")[:20], SMALL))
    with pytest.raises(DecryptionError, match="declares length 24"):
        b"".join(decrypt(KEY, AAD, b"\x01\x18" + bytes(60), SMALL))


@pytest.mark.parametrize("decrypt", DECRYPTORS)
def test_empty_final_segment_is_rejected(decrypt: Decrypt) -> None:
    # Built by hand with the right key: a conforming encryptor never emits this shape.
    encryptor = StreamEncryptor(KEY, AAD, segment_size=SMALL)
    salt, prefix = encryptor.header[2:34], encryptor.header[34:41]
    segments = _Segments(KEY, AAD, salt, prefix, SMALL)
    body = segments.seal(memoryview(b"a" * SMALL_FIRST), last=False)
    segments.advance()
    body += segments.seal(memoryview(b""), last=True)
    with pytest.raises(DecryptionError, match="empty final segment"):
        b"".join(decrypt(KEY, AAD, encryptor.header + body, SMALL))


def test_failed_decryptor_refuses_more_input() -> None:
    decryptor = StreamDecryptor(KEY, AAD, segment_size=SMALL)
    with pytest.raises(UnsupportedFormat):
        decryptor.update(b"\x07")
    with pytest.raises(ValueError, match="failed"):
        decryptor.update(b"\x01")


def test_error_messages_carry_no_secret() -> None:
    secret = b"Diagnosis: confidential" * 5
    ciphertext = bytearray(_encrypt(secret))
    ciphertext[-1] ^= 1
    with pytest.raises(DecryptionError) as caught:
        b"".join(decrypt_stream(KEY, AAD, [bytes(ciphertext)], segment_size=SMALL))
    message = str(caught.value)
    assert "confidential" not in message
    assert KEY.hex() not in message
