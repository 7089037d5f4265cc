"""The instance's master keyring, loaded from the operator's configuration.

Keys in a directory (PLI_KEYS_DIR) are read again when the directory changes (looked at
once a second at most): `pli keys rotate` adds a file, and every running server and worker
wraps new data keys under the new version within a second, restarted or not. A process
that kept wrapping under the old version would write data that `pli keys retire` then
makes unreadable. Keys from PLI_MASTER_KEY change only with a restart.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from django.conf import settings

from pli.crypto import Keyring

logger = logging.getLogger(__name__)
_lock = threading.Lock()
_keyring: Keyring | None = None
_stamp: object = None
_looked_at = 0.0
RECHECK_SECONDS = 1.0


_Stamp = tuple[tuple[str, int, int, int, int], ...]


def _directory_stamp() -> _Stamp | None:
    """What the keys directory holds, as far as a change matters: the directory itself, and
    each file's name, inode, size, and modification and change times (a key copied over an
    old one, or its permissions fixed, changes these but not the directory's)."""
    directory = settings.PLI_KEYS_DIR
    try:
        found = os.stat(directory)
        entries = [(".", found.st_ino, found.st_size, found.st_mtime_ns, found.st_ctime_ns)]
        with os.scandir(directory) as listing:
            for entry in listing:
                info = entry.stat(follow_symlinks=True)
                entries.append((entry.name, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns))
    except OSError:
        return None
    return tuple(sorted(entries))


def load_keyring() -> Keyring:
    """Read the keys now. Development creates the first key; production never invents one."""
    if settings.PLI_MASTER_KEY_ENV:
        return Keyring.from_env_value(settings.PLI_MASTER_KEY_ENV)
    create = settings.PLI_ENV == "development"
    return Keyring.from_directory(settings.PLI_KEYS_DIR, create_if_empty=create)


def keyring() -> Keyring:
    global _keyring, _stamp, _looked_at
    ring = _keyring
    if ring is not None and not settings.PLI_MASTER_KEY_ENV:
        now = time.monotonic()
        if now - _looked_at >= RECHECK_SECONDS:
            _looked_at = now
            if _directory_stamp() != _stamp:
                ring = None
    if ring is None:
        with _lock:
            if _keyring is None or (not settings.PLI_MASTER_KEY_ENV and _directory_stamp() != _stamp):
                # Stamped before reading: a change while reading is seen next time.
                stamp = None if settings.PLI_MASTER_KEY_ENV else _directory_stamp()
                _looked_at = time.monotonic()
                try:
                    loaded = load_keyring()
                except Exception as exc:
                    if _keyring is None:
                        raise
                    # A key file being written, or left readable by others: what is stored
                    # still opens with the keys in hand, but nothing new is wrapped under
                    # them: this process may have slept through a rotation, and their newest
                    # version may be retired already (new data would be lost with it). Said
                    # once, until the directory changes.
                    _stamp = stamp
                    _keyring = _keyring.for_unwrapping_only(
                        f"the master keys could not be read again ({exc}); nothing new is encrypted until they can be"
                    )
                    logger.error(
                        "master keys not re-read: the previous ones still open stored data, but no new data "
                        "is encrypted (answered 503) until they can be read: %s",
                        exc,
                    )
                else:
                    _keyring, _stamp = loaded, stamp
            ring = _keyring
    return ring


class KeyMismatch(Exception):
    """A master key version does not open the data keys wrapped under it: a wrong key."""

    def __init__(self, version: int) -> None:
        super().__init__(
            f"master key v{version} does not open the data keys wrapped under it: the wrong key "
            "was given for that version (a restored or copied key file, a mistyped PLI_MASTER_KEY?)"
        )
        self.version = version


class MissingKeyVersions(KeyMismatch):
    """Data keys are wrapped by master key versions the keyring lacks: an old backup
    restored without its retired key, or a host missing the version another one added."""

    def __init__(self, versions: list[int]) -> None:
        Exception.__init__(
            self,
            f"data keys are wrapped by missing master key version(s) {versions}: add the key file(s) "
            "(or PLI_MASTER_KEY entries) of the backup's keys; `pli keys status` lists them",
        )
        self.version = versions[0]
        self.versions = versions


def check_keyring(ring: Keyring | None = None) -> list[int]:
    """Unwrap one data key of each version the keyring holds; raise KeyMismatch for a
    version whose key does not open them, MissingKeyVersions when data keys use versions
    it lacks. Returns the versions checked (those in use)."""
    from pli.core.models import DataKey

    ring = ring or keyring()
    others = DataKey.objects.exclude(key_version__in=ring.versions).order_by()
    missing = sorted(others.values_list("key_version", flat=True).distinct())
    if missing:
        raise MissingKeyVersions(missing)
    checked = []
    for version in ring.versions:
        sample = DataKey.objects.filter(key_version=version).order_by().first()
        if sample is None:
            continue
        try:
            ring.unwrap_data_key(bytes(sample.wrapped), sample.context)
        except Exception as exc:
            raise KeyMismatch(version) from exc
        checked.append(version)
    return checked


_checked: tuple[Keyring, bool] | None = None


def keyring_checked() -> bool:
    """check_keyring() once per keyring this process loads (the health check's view). A
    database error propagates and is not remembered."""
    global _checked
    ring = keyring()
    if _checked is None or _checked[0] is not ring:
        try:
            check_keyring(ring)
            _checked = (ring, True)
        except KeyMismatch:
            _checked = (ring, False)
    return _checked[1]


def check_at_start() -> None:
    """For `pli serve` and `pli worker`: refuse to start with a wrong master key, rather than
    answer every read with an error. Nothing to check before the first migration."""
    from django.db import DatabaseError

    try:
        check_keyring()
    except DatabaseError:
        return


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
    global _keyring, _stamp, _checked
    with _lock:
        _keyring = None
        _stamp = None
        _checked = None
        _purpose_keys.clear()
