"""Master keyring: wrapping data keys, rotation, and the key directory on disk."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from pli.crypto import (
    WRAPPED_KEY_SIZE,
    CryptoError,
    DecryptionError,
    Keyring,
    KeyringError,
    MasterKey,
    UnknownKeyVersion,
    UnsupportedFormat,
    add_key_version,
    new_data_key,
    retire_key_version,
)
from pli.crypto.keyring import _create_key_file

CONTEXT = b"message:7c1e"
KEY_1 = bytes(range(32))
KEY_2 = bytes(range(32, 64))


def _ring(*versions: int) -> Keyring:
    return Keyring(MasterKey(v, bytes([v]) * 32) for v in versions)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _write_key(directory: Path, version: int, content: bytes, mode: int = 0o600) -> Path:
    path = directory / f"master-v{version}.key"
    path.write_bytes(content)
    path.chmod(mode)
    return path


# -- master keys and wrapping ---------------------------------------------------------------


def test_master_key_repr_hides_the_key() -> None:
    master = MasterKey(1, KEY_1)
    assert repr(master) == "MasterKey(version=1, key=<redacted>)"
    assert KEY_1.hex() not in repr(master) and str(KEY_1) not in str(master)
    assert "redacted" not in repr(_ring(1, 2)) and repr(_ring(1, 2)) == "Keyring(versions=[1, 2])"


@pytest.mark.parametrize(("version", "key"), [(0, KEY_1), (2**32, KEY_1), (1, b"short"), (1, KEY_1 + b"x")])
def test_master_key_validation(version: int, key: bytes) -> None:
    with pytest.raises(KeyringError):
        MasterKey(version, key)


def test_keyring_construction() -> None:
    ring = _ring(3, 1, 2)
    assert ring.versions == [1, 2, 3]
    assert ring.current_version == 3
    assert 2 in ring and 4 not in ring
    with pytest.raises(KeyringError, match="no master key"):
        Keyring([])
    with pytest.raises(KeyringError, match="version 1 is given twice"):
        Keyring([MasterKey(1, KEY_1), MasterKey(1, KEY_2)])


def test_wrap_round_trip_and_format() -> None:
    ring = _ring(1, 2)
    dek = new_data_key()
    wrapped = ring.wrap_data_key(dek, CONTEXT)
    assert len(wrapped) == WRAPPED_KEY_SIZE == 65
    assert wrapped[0] == 0x01
    assert wrapped[1:5] == (2).to_bytes(4, "big")
    assert Keyring.wrapped_version(wrapped) == 2
    assert ring.unwrap_data_key(wrapped, CONTEXT) == dek
    assert ring.wrap_data_key(dek, CONTEXT) != wrapped  # fresh nonce


def test_wrapped_key_is_bound_to_its_context() -> None:
    ring = _ring(1)
    wrapped = ring.wrap_data_key(new_data_key(), CONTEXT)
    with pytest.raises(DecryptionError, match="failed authentication"):
        ring.unwrap_data_key(wrapped, b"message:other")


def test_any_bit_flip_in_wrapped_key_fails() -> None:
    ring = _ring(1)
    wrapped = ring.wrap_data_key(new_data_key(), CONTEXT)
    for position in range(len(wrapped)):
        for bit in range(8):
            tampered = bytearray(wrapped)
            tampered[position] ^= 1 << bit
            with pytest.raises(CryptoError) as caught:
                ring.unwrap_data_key(bytes(tampered), CONTEXT)
            if position == 0:
                assert isinstance(caught.value, UnsupportedFormat)
            elif position < 5:
                assert isinstance(caught.value, UnknownKeyVersion)
            else:
                assert isinstance(caught.value, DecryptionError)


def test_relabelled_key_version_fails() -> None:
    # Claiming another existing master key version is caught: the header is authenticated.
    ring = Keyring([MasterKey(1, KEY_1), MasterKey(2, KEY_1)])
    wrapped = bytearray(ring.wrap_data_key(new_data_key(), CONTEXT))
    wrapped[1:5] = (1).to_bytes(4, "big")
    with pytest.raises(DecryptionError):
        ring.unwrap_data_key(bytes(wrapped), CONTEXT)


def test_wrong_lengths_and_formats() -> None:
    ring = _ring(1)
    wrapped = ring.wrap_data_key(new_data_key(), CONTEXT)
    for bad in (b"", wrapped[:-1], wrapped + b"\x00", wrapped[:5]):
        with pytest.raises(DecryptionError):
            ring.unwrap_data_key(bad, CONTEXT)
    with pytest.raises(UnsupportedFormat, match="0x02"):
        ring.unwrap_data_key(b"\x02" + wrapped[1:], CONTEXT)
    with pytest.raises(ValueError, match="32 bytes"):
        ring.wrap_data_key(b"short", CONTEXT)


def test_unknown_key_version() -> None:
    wrapped = _ring(1, 2, 3).wrap_data_key(new_data_key(), CONTEXT)
    with pytest.raises(UnknownKeyVersion, match=r"^master key version 3 is not available \(retired or missing\)$"):
        _ring(1, 2).unwrap_data_key(wrapped, CONTEXT)


def test_rewrap_keeps_the_data_key() -> None:
    old_ring = _ring(1)
    dek = new_data_key()
    wrapped = old_ring.wrap_data_key(dek, CONTEXT)
    new_ring = _ring(1, 2)
    rewrapped = new_ring.rewrap(wrapped, CONTEXT)
    assert Keyring.wrapped_version(rewrapped) == 2
    assert new_ring.unwrap_data_key(rewrapped, CONTEXT) == dek
    # Once rewrapped, the old master key is no longer needed.
    assert _ring(2).unwrap_data_key(rewrapped, CONTEXT) == dek
    assert new_ring.rewrap(rewrapped, CONTEXT) is rewrapped
    with pytest.raises(DecryptionError):
        new_ring.rewrap(wrapped, b"message:other")


# -- environment value ----------------------------------------------------------------------


def test_from_env_value() -> None:
    value = f" 1:{base64.b64encode(KEY_1).decode()} ,\n 2 : {base64.b64encode(KEY_2).decode()[:20]} \n"
    value += base64.b64encode(KEY_2).decode()[20:] + ","
    ring = Keyring.from_env_value(value)
    assert ring.versions == [1, 2]
    dek = new_data_key()
    wrapped = Keyring([MasterKey(2, KEY_2)]).wrap_data_key(dek, CONTEXT)
    assert ring.unwrap_data_key(wrapped, CONTEXT) == dek


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "empty"),
        (" , ", "empty"),
        ("AAAA", "entry 1: expected VERSION:BASE64"),
        (f"x:{base64.b64encode(KEY_1).decode()}", "entry 1: version must be a positive integer"),
        (f"-1:{base64.b64encode(KEY_1).decode()}", "entry 1: version must be a positive integer"),
        (f"0:{base64.b64encode(KEY_1).decode()}", "out of range"),
        (f"1:{base64.b64encode(KEY_1).decode()},2:not*base64", "entry 2: malformed base64"),
        (f"1:{base64.b64encode(KEY_1[:16]).decode()}", "entry 1: key must be 32 bytes, found 16"),
        (f"1:{base64.b64encode(KEY_1).decode()},1:{base64.b64encode(KEY_2).decode()}", "given twice"),
        # Placeholders of the right length were loaded as master keys, in production too.
        ("1:" + "A" * 43 + "=", "entry 1: not a random key"),
        (f"1:{base64.b64encode(b'changeme' * 4).decode()}", "entry 1: not a random key"),
    ],
)
def test_from_env_value_errors(value: str, message: str) -> None:
    with pytest.raises(KeyringError, match=message) as caught:
        Keyring.from_env_value(value)
    assert base64.b64encode(KEY_1).decode()[:12] not in str(caught.value)


def test_a_placeholder_may_stay_as_an_older_version_to_move_off_it(tmp_path: Path) -> None:
    """An instance set up with a placeholder key before it was refused: `pli keys rotate`
    adds a random version, under which everything new goes, and the rewrap moves off it."""
    placeholder = bytes(32)
    wrapped = Keyring([MasterKey(1, placeholder)]).wrap_data_key(b"d" * 32, CONTEXT)
    _write_key(tmp_path, 1, base64.b64encode(placeholder))
    with pytest.raises(KeyringError, match=r"master-v1\.key: not a random key"):
        Keyring.from_directory(tmp_path)
    assert add_key_version(tmp_path) == 2
    for ring in (
        Keyring.from_directory(tmp_path),
        Keyring.from_env_value(f"1:{base64.b64encode(placeholder).decode()},2:{base64.b64encode(KEY_2).decode()}"),
    ):
        assert ring.current_version == 2
        assert ring.wrapped_version(ring.rewrap(wrapped, CONTEXT)) == 2


# -- key directory --------------------------------------------------------------------------


def test_create_if_empty_creates_private_directory_and_key(tmp_path: Path) -> None:
    directory = tmp_path / "data" / "keys"
    ring = Keyring.from_directory(directory, create_if_empty=True)
    assert ring.versions == [1]
    assert _mode(directory) == 0o700
    key_file = directory / "master-v1.key"
    assert _mode(key_file) == 0o600
    content = key_file.read_bytes()
    assert content.endswith(b"\n") and len(base64.b64decode(content.strip())) == 32
    assert sorted(os.listdir(directory)) == ["master-v1.key"]  # no temporary file left
    # Loading again reads the same key rather than making a new one.
    dek = new_data_key()
    wrapped = ring.wrap_data_key(dek, CONTEXT)
    assert Keyring.from_directory(directory, create_if_empty=True).unwrap_data_key(wrapped, CONTEXT) == dek
    assert Keyring.from_directory(directory).versions == [1]


def test_create_if_empty_in_existing_empty_directory(tmp_path: Path) -> None:
    assert Keyring.from_directory(tmp_path, create_if_empty=True).versions == [1]


def test_missing_or_empty_directory_without_create(tmp_path: Path) -> None:
    with pytest.raises(KeyringError, match="does not exist"):
        Keyring.from_directory(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("not a key")
    with pytest.raises(KeyringError, match=r"no master key file \(master-v<N>.key\) in"):
        Keyring.from_directory(tmp_path)


def test_path_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "keys").write_text("")
    with pytest.raises(KeyringError, match="not a directory"):
        Keyring.from_directory(tmp_path / "keys")


def test_unreadable_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Simulated: the suite runs as root in CI, and root reads any directory.
    def refuse(path: object) -> list[str]:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "listdir", refuse)
    with pytest.raises(KeyringError, match=rf"key directory {tmp_path} is not readable \(Permission denied\)"):
        Keyring.from_directory(tmp_path)


def test_unreadable_key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write_key(tmp_path, 1, base64.b64encode(KEY_1))
    real_open = os.open

    def refuse(file: str | os.PathLike[str], flags: int, mode: int = 0o777) -> int:
        if Path(file) == path:
            raise PermissionError(13, "Permission denied")
        return real_open(file, flags, mode)

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(KeyringError, match=rf"{path}: cannot open \(Permission denied\)"):
        Keyring.from_directory(tmp_path)


def test_reads_existing_files_with_whitespace(tmp_path: Path) -> None:
    _write_key(tmp_path, 1, b"  " + base64.b64encode(KEY_1) + b"\r\n\n")
    _write_key(tmp_path, 10, base64.b64encode(KEY_2))
    (tmp_path / "README").write_text("ignored")
    (tmp_path / ".master-v11.abc.tmp").write_text("ignored: an interrupted write")
    ring = Keyring.from_directory(tmp_path)
    assert ring.versions == [1, 10]
    dek = new_data_key()
    assert ring.unwrap_data_key(Keyring([MasterKey(1, KEY_1)]).wrap_data_key(dek, CONTEXT), CONTEXT) == dek


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o610, 0o601])
def test_refuses_key_file_open_to_group_or_others(tmp_path: Path, mode: int) -> None:
    path = _write_key(tmp_path, 1, base64.b64encode(KEY_1), mode)
    with pytest.raises(KeyringError, match=rf"{path}: permissions {mode:04o} let group or others"):
        Keyring.from_directory(tmp_path)


def test_accepts_owner_read_only_file(tmp_path: Path) -> None:
    _write_key(tmp_path, 1, base64.b64encode(KEY_1), 0o400)
    assert Keyring.from_directory(tmp_path).versions == [1]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not base64!\n", "malformed base64"),
        (b"", "key must be 32 bytes, found 0"),
        (base64.b64encode(KEY_1[:31]) + b"\n", "key must be 32 bytes, found 31"),
        (base64.b64encode(KEY_1 + b"x"), "key must be 32 bytes, found 33"),
        (KEY_1, "malformed base64|key must be"),
        (b"A" * 5000, "too large"),
        (base64.b64encode(bytes(32)) + b"\n", "not a random key"),
    ],
)
def test_refuses_malformed_key_file(tmp_path: Path, content: bytes, message: str) -> None:
    path = _write_key(tmp_path, 2, content)
    with pytest.raises(KeyringError, match=message) as caught:
        Keyring.from_directory(tmp_path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("name", ["master-v0.key", "master-v01.key", "master-v4294967296.key"])
def test_refuses_invalid_version_in_file_name(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_bytes(base64.b64encode(KEY_1))
    (tmp_path / name).chmod(0o600)
    with pytest.raises(KeyringError, match="invalid version number"):
        Keyring.from_directory(tmp_path)


def test_refuses_key_path_that_is_not_a_file(tmp_path: Path) -> None:
    (tmp_path / "master-v1.key").mkdir(mode=0o700)
    with pytest.raises(KeyringError, match=r"master-v1\.key: not a regular file"):
        Keyring.from_directory(tmp_path)


def test_add_and_retire_versions(tmp_path: Path) -> None:
    Keyring.from_directory(tmp_path, create_if_empty=True)
    dek = new_data_key()
    wrapped_v1 = Keyring.from_directory(tmp_path).wrap_data_key(dek, CONTEXT)

    assert add_key_version(tmp_path) == 2
    assert add_key_version(tmp_path) == 3
    assert _mode(tmp_path / "master-v3.key") == 0o600
    assert sorted(os.listdir(tmp_path)) == ["master-v1.key", "master-v2.key", "master-v3.key"]
    ring = Keyring.from_directory(tmp_path)
    assert ring.versions == [1, 2, 3] and ring.current_version == 3
    rewrapped = ring.rewrap(wrapped_v1, CONTEXT)

    with pytest.raises(KeyringError, match="version 3 is the current one"):
        retire_key_version(tmp_path, 3)
    with pytest.raises(KeyringError, match="version 7 is not in"):
        retire_key_version(tmp_path, 7)
    retire_key_version(tmp_path, 1)
    retire_key_version(tmp_path, 2)
    ring = Keyring.from_directory(tmp_path)
    assert ring.versions == [3]
    with pytest.raises(UnknownKeyVersion, match="master key version 1 is not available"):
        ring.unwrap_data_key(wrapped_v1, CONTEXT)
    assert ring.unwrap_data_key(rewrapped, CONTEXT) == dek
    with pytest.raises(KeyringError, match="current one"):
        retire_key_version(tmp_path, 3)  # the only key


def test_versions_keep_increasing_after_retirement(tmp_path: Path) -> None:
    Keyring.from_directory(tmp_path, create_if_empty=True)
    add_key_version(tmp_path)
    retire_key_version(tmp_path, 1)
    assert add_key_version(tmp_path) == 3


def test_add_key_version_in_empty_and_missing_directory(tmp_path: Path) -> None:
    assert add_key_version(tmp_path) == 1
    with pytest.raises(KeyringError, match="does not exist"):
        add_key_version(tmp_path / "missing")


def test_add_key_version_refuses_to_extend_broken_keyring(tmp_path: Path) -> None:
    _write_key(tmp_path, 1, base64.b64encode(KEY_1), 0o644)
    with pytest.raises(KeyringError, match="permissions"):
        add_key_version(tmp_path)
    assert not (tmp_path / "master-v2.key").exists()


def test_key_creation_never_replaces_an_existing_file(tmp_path: Path) -> None:
    path = _write_key(tmp_path, 1, base64.b64encode(KEY_1))
    assert _create_key_file(tmp_path, 1, KEY_2) is False
    assert path.read_bytes() == base64.b64encode(KEY_1)
    assert os.listdir(tmp_path) == ["master-v1.key"]
