"""Data keys: one per object holding health data, wrapped by a versioned master key."""

from __future__ import annotations

import uuid
from collections.abc import Collection

from django.db import models

from pli.core import keys
from pli.crypto import Keyring, UnknownKeyVersion, new_data_key


class DataKey(models.Model):
    """The wrapped data key of one object. Deleting the row shreds the object's content."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    key_version = models.PositiveIntegerField(db_index=True)
    wrapped = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "pli_data_key"

    def __str__(self) -> str:
        return f"data key {self.id} (master key v{self.key_version})"

    def __repr__(self) -> str:
        return f"<DataKey {self.id} v{self.key_version}>"

    @property
    def context(self) -> bytes:
        return b"datakey|" + self.id.bytes

    @classmethod
    def forget(cls, ids: Collection[uuid.UUID]) -> None:
        """Delete keys that no row uses any more (the caller has just cleared their
        references): the contents they protected can no longer be read anywhere.

        Without Django's deletion collector, which looks for each key in every table that
        may hold one (an UPDATE … SET NULL per table and a read of the purpose keys: eight
        statements where one does, on every notification delivered, under SQLite's write
        lock). A key still in use fails its foreign key at COMMIT: the transaction is
        refused instead of a row left pointing at no key."""
        if ids:
            cls.objects.filter(pk__in=ids)._raw_delete(cls.objects.db)

    @classmethod
    def generate(cls) -> tuple[DataKey, bytes]:
        """A new saved data key and its plaintext (kept only in memory by the caller)."""
        dek = new_data_key()
        key = cls.wrapping(dek)
        key.save(force_insert=True)
        return key, dek

    @classmethod
    def wrapping(cls, dek: bytes) -> DataKey:
        """An unsaved row wrapping ``dek`` under the current master key: for a key chosen
        before its object existed (an upload encrypted as it arrived), or for callers that
        insert many rows in one statement."""
        ring = keys.keyring()
        key = cls(key_version=ring.current_version)
        key.wrapped = ring.wrap_data_key(dek, key.context)
        return key

    def unwrap(self) -> bytes:
        try:
            return keys.keyring().unwrap_data_key(bytes(self.wrapped), self.context)
        except UnknownKeyVersion:
            # Another process may have rotated the keys since this one loaded them.
            keys.reset()
            return keys.keyring().unwrap_data_key(bytes(self.wrapped), self.context)

    def rewrap(self, ring: Keyring) -> bool:
        """Re-wrap under the current master key; the data itself is not touched."""
        if self.key_version == ring.current_version:
            return False
        self.wrapped = ring.rewrap(bytes(self.wrapped), self.context)
        self.key_version = Keyring.wrapped_version(self.wrapped)
        self.save(update_fields=["wrapped", "key_version"])
        return True


class PurposeKey(models.Model):
    """An instance-wide secret for one purpose (e.g. keyed search tokens), stored like any
    data key: wrapped by the master key, so it follows rotation and needs no extra file."""

    name = models.CharField(max_length=64, unique=True)
    data_key = models.OneToOneField(DataKey, on_delete=models.PROTECT, related_name="+")

    class Meta:
        db_table = "pli_purpose_key"

    def __str__(self) -> str:
        return f"purpose key {self.name}"


class InstanceId(models.Model):
    """One row: this database's instance id, which ``PLI_BLOB_DIR/instance`` repeats
    (pli.core.instance). Made by the migration that created the table."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    value = models.UUIDField(default=uuid.uuid4)

    class Meta:
        db_table = "pli_instance_id"

    def __str__(self) -> str:
        return f"instance {self.value}"
