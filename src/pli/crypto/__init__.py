"""Pli's cryptography: master keyring, envelope (field) encryption, streaming encryption.

Pure Python on top of pyca/cryptography, with no Django import, so it can be used and
tested on its own. Constructions are documented ones (AES-256-GCM, HKDF, Tink's
AES-GCM-HKDF streaming AEAD); every stored format starts with a version byte.
"""

from pli.crypto.envelope import DATA_KEY_SIZE, new_data_key, open_sealed, seal, sealed_size
from pli.crypto.errors import (
    CryptoError,
    DecryptionError,
    KeyringError,
    UnknownKeyVersion,
    UnsupportedFormat,
    WrappingRefused,
)
from pli.crypto.keyring import (
    MASTER_KEY_SIZE,
    WRAPPED_KEY_SIZE,
    Keyring,
    MasterKey,
    add_key_version,
    retire_key_version,
)
from pli.crypto.stream import (
    SEGMENT_SIZE,
    STREAM_KEY_SIZE,
    StreamDecryptor,
    StreamEncryptor,
    ciphertext_size,
    decrypt_file,
    decrypt_stream,
    encrypt_file,
    encrypt_stream,
)

__all__ = [
    "DATA_KEY_SIZE",
    "MASTER_KEY_SIZE",
    "SEGMENT_SIZE",
    "STREAM_KEY_SIZE",
    "WRAPPED_KEY_SIZE",
    "CryptoError",
    "DecryptionError",
    "Keyring",
    "KeyringError",
    "MasterKey",
    "StreamDecryptor",
    "StreamEncryptor",
    "UnknownKeyVersion",
    "UnsupportedFormat",
    "WrappingRefused",
    "add_key_version",
    "ciphertext_size",
    "decrypt_file",
    "decrypt_stream",
    "encrypt_file",
    "encrypt_stream",
    "new_data_key",
    "open_sealed",
    "retire_key_version",
    "seal",
    "sealed_size",
]
