"""Versioned master keys that wrap the per-object data keys (the outer half of envelope
encryption).

Wrapped data key format (format byte 0x01, AES-256-GCM key wrap), 65 bytes::

    0x01 || master key version (uint32, big-endian) || nonce (12 random bytes)
         || AES-256-GCM(master key, data key (32 bytes)) || tag (16 bytes)

The associated data is ``b"pli/dek/v1|" + context + header`` where ``header`` is the first
five bytes: the caller's context (object type and id) ties a wrapped key to its object, and
authenticating the header means neither the format byte nor the key version can be altered
without detection.

Random 96-bit nonces limit one master key to about 2**32 wraps (NIST SP 800-38D); rotating
master keys (:func:`add_key_version`, :meth:`Keyring.rewrap`) keeps well below that.

On disk a keyring is a directory of files named ``master-v<N>.key``, each holding the
base64 encoding of 32 random bytes. Key files must be readable by their owner only.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import copy
import os
import re
import stat
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pli.crypto.errors import DecryptionError, KeyringError, UnknownKeyVersion, UnsupportedFormat, WrappingRefused

__all__ = [
    "MASTER_KEY_SIZE",
    "WRAPPED_KEY_SIZE",
    "Keyring",
    "MasterKey",
    "add_key_version",
    "retire_key_version",
]

MASTER_KEY_SIZE = 32
# 32 random bytes take about 30 different values; fewer than 16 happens by chance with a
# probability below 10^-20. A key below it is a placeholder (base64 of zeros, "AAAA…=", a
# repeated word), not a secret: such a key would make every backup readable to anyone.
_MASTER_KEY_MIN_DISTINCT = 16
FORMAT_AES256_GCM_WRAP = 0x01
_DATA_KEY_SIZE = 32
_NONCE_SIZE = 12
_TAG_SIZE = 16
_HEADER_SIZE = 5
WRAPPED_KEY_SIZE = _HEADER_SIZE + _NONCE_SIZE + _DATA_KEY_SIZE + _TAG_SIZE
_AAD_PREFIX = b"pli/dek/v1|"
_MAX_VERSION = 2**32 - 1

_KEY_FILE_RE = re.compile(r"master-v([0-9]+)\.key")
# A key file is one line of base64; anything much larger is not a key file.
_MAX_KEY_FILE_SIZE = 4096


@dataclass(frozen=True)
class MasterKey:
    """One version of the master key."""

    version: int
    key: bytes

    def __post_init__(self) -> None:
        if not 1 <= self.version <= _MAX_VERSION:
            raise KeyringError(f"master key version {self.version} is out of range 1..{_MAX_VERSION}")
        if len(self.key) != MASTER_KEY_SIZE:
            raise KeyringError(
                f"master key version {self.version} must be {MASTER_KEY_SIZE} bytes, got {len(self.key)}"
            )

    def __repr__(self) -> str:
        # Keeps key bytes out of tracebacks, debug pages and logs.
        return f"MasterKey(version={self.version}, key=<redacted>)"


class Keyring:
    """A set of master key versions; the highest one wraps new data keys."""

    def __init__(self, keys: Iterable[MasterKey]) -> None:
        by_version: dict[int, MasterKey] = {}
        for master_key in keys:
            if master_key.version in by_version:
                raise KeyringError(f"master key version {master_key.version} is given twice")
            by_version[master_key.version] = master_key
        if not by_version:
            raise KeyringError("the keyring holds no master key")
        self._versions = sorted(by_version)
        self._aeads = {version: AESGCM(mk.key) for version, mk in by_version.items()}
        self._refusal: str | None = None

    @property
    def refusal(self) -> str | None:
        """Why this keyring wraps nothing new (see for_unwrapping_only), or None."""
        return self._refusal

    def for_unwrapping_only(self, reason: str) -> Keyring:
        """The same keys, opening what they wrap but wrapping nothing new (WrappingRefused,
        with ``reason``): for keys that could not be read again, whose newest version may
        since have been retired: a data key wrapped under it would be lost with it."""
        ring = copy.copy(self)
        ring._refusal = reason
        return ring

    def __repr__(self) -> str:
        return f"Keyring(versions={self._versions})"

    def __contains__(self, version: object) -> bool:
        return version in self._aeads

    @property
    def versions(self) -> list[int]:
        """The available versions, ascending."""
        return list(self._versions)

    @property
    def current_version(self) -> int:
        """The version used to wrap new data keys: the highest one."""
        return self._versions[-1]

    # -- wrapping -------------------------------------------------------------------------

    def wrap_data_key(self, dek: bytes, context: bytes) -> bytes:
        """Wrap ``dek`` under the current master key, bound to ``context``."""
        if self._refusal is not None:
            raise WrappingRefused(self._refusal)
        return self._wrap(self.current_version, dek, context)

    def unwrap_data_key(self, wrapped: bytes, context: bytes) -> bytes:
        """Recover the data key from ``wrapped``, checking that it belongs to ``context``."""
        version = self.wrapped_version(wrapped)
        aead = self._aeads.get(version)
        if aead is None:
            raise UnknownKeyVersion(version)
        view = memoryview(wrapped)
        header = view[:_HEADER_SIZE]
        nonce = view[_HEADER_SIZE : _HEADER_SIZE + _NONCE_SIZE]
        try:
            return aead.decrypt(nonce, view[_HEADER_SIZE + _NONCE_SIZE :], _AAD_PREFIX + context + header)
        except InvalidTag:
            raise DecryptionError(
                "wrapped data key failed authentication (tampered, wrong master key, or bound to another object)"
            ) from None

    def rewrap(self, wrapped: bytes, context: bytes) -> bytes:
        """Re-wrap ``wrapped`` under the current master key; unchanged if it already is."""
        if self.wrapped_version(wrapped) == self.current_version:
            return wrapped
        return self.wrap_data_key(self.unwrap_data_key(wrapped, context), context)

    @staticmethod
    def wrapped_version(wrapped: bytes) -> int:
        """Return the master key version that ``wrapped`` was wrapped with."""
        if not wrapped:
            raise DecryptionError("wrapped data key is empty")
        if wrapped[0] != FORMAT_AES256_GCM_WRAP:
            raise UnsupportedFormat(f"unknown wrapped data key format byte 0x{wrapped[0]:02x}")
        if len(wrapped) != WRAPPED_KEY_SIZE:
            raise DecryptionError(f"wrapped data key has {len(wrapped)} bytes, {WRAPPED_KEY_SIZE} expected")
        return int.from_bytes(wrapped[1:_HEADER_SIZE], "big")

    def _wrap(self, version: int, dek: bytes, context: bytes) -> bytes:
        if len(dek) != _DATA_KEY_SIZE:
            raise ValueError(f"data key must be {_DATA_KEY_SIZE} bytes, got {len(dek)}")
        header = bytes([FORMAT_AES256_GCM_WRAP]) + version.to_bytes(4, "big")
        nonce = os.urandom(_NONCE_SIZE)
        body = self._aeads[version].encrypt(nonce, dek, _AAD_PREFIX + context + header)
        return header + nonce + body

    # -- loading --------------------------------------------------------------------------

    @classmethod
    def from_directory(cls, path: str | os.PathLike[str], *, create_if_empty: bool = False) -> Keyring:
        """Load every ``master-v<N>.key`` file in ``path``.

        With ``create_if_empty``, a missing directory is created (mode 0700) and, when it
        holds no key, a first key ``master-v1.key`` (mode 0600) is generated in it: meant for
        development, where the data dir is set up automatically.
        """
        directory = Path(path)
        if create_if_empty and not directory.exists():
            _make_private_dir(directory)
        files = _scan_directory(directory)
        if not files and create_if_empty:
            # Another process may win the race to create version 1; either way one exists.
            _create_key_file(directory, 1, os.urandom(MASTER_KEY_SIZE))
            files = _scan_directory(directory)
        if not files:
            raise KeyringError(f"no master key file (master-v<N>.key) in {directory}")
        keys = [(MasterKey(version, _read_key_file(file)), str(file)) for version, file in files.items()]
        return cls(_with_random_current(keys))

    @classmethod
    def from_env_value(cls, value: str) -> Keyring:
        """Parse ``"1:BASE64,2:BASE64"`` (whitespace around and inside entries is ignored)."""
        keys: list[tuple[MasterKey, str]] = []
        for index, raw_entry in enumerate(value.split(","), start=1):
            entry = "".join(raw_entry.split())
            if not entry:
                continue
            version_text, separator, encoded = entry.partition(":")
            where = f"master key entry {index}"
            if not separator:
                raise KeyringError(f"{where}: expected VERSION:BASE64")
            if not (version_text.isascii() and version_text.isdigit()):
                raise KeyringError(f"{where}: version must be a positive integer")
            keys.append((MasterKey(int(version_text), _decode_key(encoded, where)), where))
        if not keys:
            raise KeyringError("the master key value is empty")
        return cls(_with_random_current(keys))


# -- key directory management -----------------------------------------------------------


def add_key_version(path: str | os.PathLike[str]) -> int:
    """Create the next master key version in the directory ``path`` and return its number.

    Existing key files are read first, so a broken keyring is reported rather than extended.
    """
    directory = Path(path)
    if not directory.is_dir():
        raise KeyringError(f"key directory {directory} does not exist")
    while True:
        files = _scan_directory(directory)
        for file in files.values():
            _read_key_file(file)
        version = max(files, default=0) + 1
        if version > _MAX_VERSION:
            raise KeyringError(f"no master key version left after {_MAX_VERSION}")
        if _create_key_file(directory, version, os.urandom(MASTER_KEY_SIZE)):
            return version
        # A concurrent call took that number: look again.


def retire_key_version(path: str | os.PathLike[str], version: int) -> None:
    """Delete master key ``version`` from the directory ``path``.

    The current (highest) version is never removed: new data keys are wrapped with it. The
    caller must first make sure that no data key is still wrapped with ``version`` (rewrap
    them), or the data they protect becomes unreadable. Deleting the file does not scrub the
    disk blocks that held it; encrypt the disk for that.
    """
    directory = Path(path)
    files = _scan_directory(directory)
    if version not in files:
        raise KeyringError(f"master key version {version} is not in {directory}")
    if version == max(files):
        raise KeyringError(
            f"master key version {version} is the current one; add a newer version and "
            "rewrap the data keys before retiring it"
        )
    try:
        files[version].unlink()
    except OSError as exc:
        raise KeyringError(f"{files[version]}: cannot delete ({exc.strerror})") from None
    _fsync_dir(directory)


# -- helpers ------------------------------------------------------------------------------


def _decode_key(encoded: str | bytes, where: str) -> bytes:
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise KeyringError(f"{where}: malformed base64") from None
    if len(key) != MASTER_KEY_SIZE:
        raise KeyringError(f"{where}: key must be {MASTER_KEY_SIZE} bytes, found {len(key)}")
    return key


def _with_random_current(keys: list[tuple[MasterKey, str]]) -> list[MasterKey]:
    """Refuse a placeholder as the current version, the one new data is written under. An
    older version may be one (an instance set up with it before this check): it still opens
    what it wraps, so that adding a real key and running `pli keys rewrap` moves off it."""
    current, where = max(keys, key=lambda item: item[0].version)
    if len(set(current.key)) < _MASTER_KEY_MIN_DISTINCT:
        raise KeyringError(
            f"{where}: not a random key (a placeholder?): the current master key must be one, "
            "generated with `pli keys generate` or `openssl rand -base64 32`"
        )
    return [key for key, _ in keys]


def _scan_directory(directory: Path) -> dict[int, Path]:
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        raise KeyringError(f"key directory {directory} does not exist") from None
    except NotADirectoryError:
        raise KeyringError(f"key directory {directory} is not a directory") from None
    except OSError as exc:
        raise KeyringError(f"key directory {directory} is not readable ({exc.strerror})") from None
    files: dict[int, Path] = {}
    for name in names:
        match = _KEY_FILE_RE.fullmatch(name)
        if match is None:
            continue
        digits = match.group(1)
        version = int(digits)
        # Reject "master-v01.key" and the like: two spellings of one version would be ambiguous.
        if str(version) != digits or not 1 <= version <= _MAX_VERSION:
            raise KeyringError(f"{directory / name}: invalid version number in file name")
        files[version] = directory / name
    return files


def _read_key_file(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise KeyringError(f"{path}: cannot open ({exc.strerror})") from None
    try:
        # fstat on the open descriptor checks the file actually read, not a swapped one.
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise KeyringError(f"{path}: not a regular file")
        if info.st_mode & 0o077:
            raise KeyringError(
                f"{path}: permissions {stat.S_IMODE(info.st_mode):04o} let group or others "
                f"access the key; run chmod 600 on it"
            )
        if info.st_size > _MAX_KEY_FILE_SIZE:
            raise KeyringError(f"{path}: too large to be a key file")
        content = b""
        while chunk := os.read(fd, _MAX_KEY_FILE_SIZE + 1 - len(content)):
            content += chunk
    except OSError as exc:
        raise KeyringError(f"{path}: cannot read ({exc.strerror})") from None
    finally:
        os.close(fd)
    return _decode_key(b"".join(content.split()), str(path))


def _make_private_dir(directory: Path) -> None:
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        # mkdir's mode is filtered by the umask; set it exactly.
        directory.chmod(0o700)
    except OSError as exc:
        raise KeyringError(f"key directory {directory}: cannot create ({exc.strerror})") from None


def _create_key_file(directory: Path, version: int, key: bytes) -> bool:
    """Write ``master-v<version>.key`` atomically; return False if it already exists."""
    final = directory / f"master-v{version}.key"
    try:
        # mkstemp creates the file 0600; its dot-name is ignored by _scan_directory.
        fd, temp_name = tempfile.mkstemp(dir=directory, prefix=f".master-v{version}.", suffix=".tmp")
    except OSError as exc:
        raise KeyringError(f"key directory {directory}: cannot write ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(base64.b64encode(key) + b"\n")
            file.flush()
            os.fsync(file.fileno())
        try:
            # link() rather than rename(): it never replaces a key another process just made.
            os.link(temp_name, final)
        except FileExistsError:
            return False
        except OSError as exc:
            raise KeyringError(f"{final}: cannot create ({exc.strerror})") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
    _fsync_dir(directory)
    return True


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
