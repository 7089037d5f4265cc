"""Field encryption with per-object data keys."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pli.crypto import DecryptionError, UnsupportedFormat, new_data_key, open_sealed, seal, sealed_size

DEK = bytes(range(32))
AAD = b"message:0f3a9c|subject"


@settings(max_examples=200, deadline=None)
@given(plaintext=st.binary(max_size=2048), aad=st.binary(max_size=64))
def test_round_trip(plaintext: bytes, aad: bytes) -> None:
    sealed = seal(DEK, plaintext, aad)
    assert len(sealed) == sealed_size(len(plaintext))
    assert sealed[0] == 0x01
    assert open_sealed(DEK, sealed, aad) == plaintext


def test_data_keys_and_nonces_are_fresh() -> None:
    assert len(new_data_key()) == 32
    assert new_data_key() != new_data_key()
    assert seal(DEK, b"same", AAD) != seal(DEK, b"same", AAD)


def test_ciphertext_swapped_between_fields_or_objects_fails() -> None:
    subject = seal(DEK, b"Results", b"message:1|subject")
    body = seal(DEK, b"Your results are normal", b"message:1|body")
    with pytest.raises(DecryptionError, match="bound to another object/field"):
        open_sealed(DEK, subject, b"message:1|body")
    with pytest.raises(DecryptionError):
        open_sealed(DEK, body, b"message:1|subject")
    with pytest.raises(DecryptionError):
        open_sealed(DEK, subject, b"message:2|subject")


def test_any_bit_flip_fails() -> None:
    sealed = seal(DEK, b"confidential", AAD)
    for position in range(len(sealed)):
        for bit in range(8):
            tampered = bytearray(sealed)
            tampered[position] ^= 1 << bit
            with pytest.raises(UnsupportedFormat if position == 0 else DecryptionError):
                open_sealed(DEK, bytes(tampered), AAD)


def test_any_truncation_or_extension_fails() -> None:
    sealed = seal(DEK, b"confidential", AAD)
    for length in range(len(sealed)):
        with pytest.raises(DecryptionError):
            open_sealed(DEK, sealed[:length], AAD)
    with pytest.raises(DecryptionError):
        open_sealed(DEK, sealed + b"\x00", AAD)


@pytest.mark.parametrize("first_byte", [0x00, 0x02, 0x80, 0xFF])
def test_unknown_format_byte(first_byte: int) -> None:
    sealed = bytes([first_byte]) + seal(DEK, b"x", AAD)[1:]
    with pytest.raises(UnsupportedFormat, match=f"0x{first_byte:02x}"):
        open_sealed(DEK, sealed, AAD)


def test_wrong_key_fails() -> None:
    with pytest.raises(DecryptionError):
        open_sealed(os.urandom(32), seal(DEK, b"x", AAD), AAD)


@pytest.mark.parametrize("dek", [b"", b"k" * 16, b"k" * 33])
def test_rejects_bad_key_length(dek: bytes) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        seal(dek, b"x", AAD)
    with pytest.raises(ValueError, match="32 bytes"):
        open_sealed(dek, b"\x01" + bytes(40), AAD)


def test_error_message_carries_no_secret() -> None:
    sealed = bytearray(seal(DEK, b"HIV positive", AAD))
    sealed[-1] ^= 1
    with pytest.raises(DecryptionError) as caught:
        open_sealed(DEK, bytes(sealed), AAD)
    assert "HIV" not in str(caught.value)
    assert DEK.hex() not in str(caught.value)
