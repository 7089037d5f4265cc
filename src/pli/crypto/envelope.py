"""Field encryption with per-object data keys (the inner half of envelope encryption).

Each object gets its own random 256-bit data key (:func:`new_data_key`); the keyring wraps
that key under a master key, and this module encrypts the object's fields with it.

Sealed format (format byte 0x01)::

    0x01 || nonce (12 random bytes) || AES-256-GCM ciphertext || tag (16 bytes)

The associated data given to AES-GCM is ``b"pli/field/v1|" + aad + b"\\x01"``. Callers
pass the object's identity and field name as ``aad``, so a ciphertext copied onto another
object or into another field fails authentication. The header byte is authenticated too.

The leading format byte is there so that another algorithm (for instance a post-quantum
hybrid HPKE construction, or a nonce-misuse-resistant AEAD) can be introduced later
alongside this one: old values keep decrypting by their byte, new values get a new byte,
and no migration of existing data is needed.

Random 96-bit nonces are safe here because each data key encrypts only the handful of
fields of one object, far below the 2**32 messages per key that NIST SP 800-38D allows.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pli.crypto.errors import DecryptionError, UnsupportedFormat

__all__ = [
    "DATA_KEY_SIZE",
    "FORMAT_AES256_GCM",
    "new_data_key",
    "open_sealed",
    "seal",
    "sealed_size",
]

DATA_KEY_SIZE = 32
FORMAT_AES256_GCM = 0x01

_NONCE_SIZE = 12
_TAG_SIZE = 16
_HEADER = bytes([FORMAT_AES256_GCM])
_AAD_PREFIX = b"pli/field/v1|"
_OVERHEAD = len(_HEADER) + _NONCE_SIZE + _TAG_SIZE


def new_data_key() -> bytes:
    """Return a fresh random 256-bit data key."""
    return os.urandom(DATA_KEY_SIZE)


def sealed_size(plaintext_size: int) -> int:
    """Return the length of :func:`seal`'s output for a plaintext of ``plaintext_size``."""
    return plaintext_size + _OVERHEAD


def _check_key(dek: bytes) -> None:
    if len(dek) != DATA_KEY_SIZE:
        raise ValueError(f"data key must be {DATA_KEY_SIZE} bytes, got {len(dek)}")


def seal(dek: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """Encrypt ``plaintext`` under ``dek``, bound to ``aad`` (object id and field name)."""
    _check_key(dek)
    nonce = os.urandom(_NONCE_SIZE)
    body = AESGCM(dek).encrypt(nonce, plaintext, _AAD_PREFIX + aad + _HEADER)
    return _HEADER + nonce + body


def open_sealed(dek: bytes, ciphertext: bytes, aad: bytes) -> bytes:
    """Decrypt a value produced by :func:`seal` with the same ``dek`` and ``aad``.

    Raises :class:`UnsupportedFormat` for an unknown format byte and
    :class:`DecryptionError` for anything that does not authenticate.
    """
    _check_key(dek)
    if not ciphertext:
        raise DecryptionError("ciphertext is empty")
    if ciphertext[0] != FORMAT_AES256_GCM:
        raise UnsupportedFormat(f"unknown field ciphertext format byte 0x{ciphertext[0]:02x}")
    if len(ciphertext) < _OVERHEAD:
        raise DecryptionError(f"ciphertext is truncated ({len(ciphertext)} bytes, at least {_OVERHEAD} expected)")
    view = memoryview(ciphertext)
    nonce = view[1 : 1 + _NONCE_SIZE]
    try:
        return AESGCM(dek).decrypt(nonce, view[1 + _NONCE_SIZE :], _AAD_PREFIX + aad + _HEADER)
    except InvalidTag:
        raise DecryptionError(
            "ciphertext failed authentication (tampered, truncated, wrong key, or bound to another object/field)"
        ) from None
