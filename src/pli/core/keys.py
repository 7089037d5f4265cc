"""The instance's master keyring, loaded once per process from the operator's configuration."""

from __future__ import annotations

import threading

from django.conf import settings

from pli.crypto import Keyring, KeyringError

_lock = threading.Lock()
_keyring: Keyring | None = None


def load_keyring() -> Keyring:
    """Read the keys now. Development creates the first key; production never invents one."""
    if settings.PLI_MASTER_KEY_ENV:
        return Keyring.from_env_value(settings.PLI_MASTER_KEY_ENV)
    create = settings.PLI_ENV == "development"
    keyring = Keyring.from_directory(settings.PLI_KEYS_DIR, create_if_empty=create)
    if not keyring.versions:
        raise KeyringError(f"no master key in {settings.PLI_KEYS_DIR} (expected master-v1.key)")
    return keyring


def keyring() -> Keyring:
    global _keyring
    if _keyring is None:
        with _lock:
            if _keyring is None:
                _keyring = load_keyring()
    return _keyring


def reset() -> None:
    """Forget the cached keyring (after rotation, and in tests)."""
    global _keyring
    with _lock:
        _keyring = None
