"""The instance's master keyring, loaded once per process from the operator's configuration."""

from __future__ import annotations

import threading

from django.conf import settings

from pli.crypto import Keyring

_lock = threading.Lock()
_keyring: Keyring | None = None


def load_keyring() -> Keyring:
    """Read the keys now. Development creates the first key; production never invents one."""
    if settings.PLI_MASTER_KEY_ENV:
        return Keyring.from_env_value(settings.PLI_MASTER_KEY_ENV)
    create = settings.PLI_ENV == "development"
    return Keyring.from_directory(settings.PLI_KEYS_DIR, create_if_empty=create)


def keyring() -> Keyring:
    global _keyring
    if _keyring is None:
        with _lock:
            if _keyring is None:
                _keyring = load_keyring()
    return _keyring


_purpose_keys: dict[str, bytes] = {}


def purpose_key(name: str) -> bytes:
    """A stable 256-bit secret for one purpose, created on first use, kept in the database
    wrapped by the master key (so it survives rotation, rewrap and retirement)."""
    cached = _purpose_keys.get(name)
    if cached is not None:
        return cached
    from django.db import IntegrityError, transaction

    from pli.core.models import DataKey, PurposeKey

    row = PurposeKey.objects.select_related("data_key").filter(name=name).first()
    if row is not None:
        secret = row.data_key.unwrap()
        _purpose_keys[name] = secret
        return secret
    try:
        with transaction.atomic():
            data_key, secret = DataKey.generate()
            PurposeKey.objects.create(name=name, data_key=data_key)
    except IntegrityError:
        # Another process created it first: use theirs.
        row = PurposeKey.objects.select_related("data_key").get(name=name)
        secret = row.data_key.unwrap()
        _purpose_keys[name] = secret
        return secret
    # Remember a new key only once it is committed: if the caller's transaction rolls
    # back, the key is gone from the database and must not linger in this process.
    transaction.on_commit(lambda: _purpose_keys.__setitem__(name, secret))
    return secret


def reset() -> None:
    """Forget the cached keys (after rotation, and in tests)."""
    global _keyring
    with _lock:
        _keyring = None
        _purpose_keys.clear()
