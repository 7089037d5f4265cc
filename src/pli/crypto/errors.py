"""Exceptions raised by :mod:`pli.crypto`.

Messages describe what went wrong and where (file, version, position) but never carry
plaintext or key material, so they are safe to log and to show to an operator.
"""

from __future__ import annotations


class CryptoError(Exception):
    """Base class of every error raised by :mod:`pli.crypto`."""


class DecryptionError(CryptoError):
    """A ciphertext could not be authenticated.

    Covers tampering, truncation, reordering, data moved from another object or field, and
    the wrong key: AES-GCM cannot tell these apart, and callers must treat them alike.
    """


class UnsupportedFormat(CryptoError):
    """A ciphertext or wrapped key starts with a format byte this version does not know."""


class UnknownKeyVersion(CryptoError):
    """A wrapped data key names a master key version that the keyring does not hold."""

    def __init__(self, version: int) -> None:
        super().__init__(f"master key version {version} is not available (retired or missing)")
        self.version = version


class KeyringError(CryptoError):
    """Master key material is missing, malformed, unreadable or too widely readable."""


class WrappingRefused(KeyringError):
    """The keys in hand may be out of date (the key directory could not be read again): no
    new data key is wrapped under them, since their newest version may have been retired."""
