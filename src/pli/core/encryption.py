"""Encrypted model fields: ``subject = EncryptedTextField()`` declares a column of health data.

Each object owns a fresh data key (:class:`pli.core.models.DataKey`); every encrypted
column is sealed with AES-256-GCM under that key, with the model, primary key and field
name as associated data, so a ciphertext copied to another row or column fails to open.
Values are decrypted lazily on first access and never appear in ``repr`` or logs.
"""

from __future__ import annotations

import datetime
import json
import uuid
from typing import Any, Generic, TypeVar

from django.db import models, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from pli.core.models import DataKey
from pli.crypto import open_sealed, seal

T = TypeVar("T")


class ContentShredded(Exception):
    """The object's data key was deleted: its content is gone for good."""


class Sealed(bytes):
    """Ciphertext as read from the database, not yet opened."""

    def __repr__(self) -> str:
        return f"<sealed {len(self)} bytes>"


class _Clear:
    """A plaintext value set by code, to be sealed on save."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "<clear value>"


class _EncryptedAttribute:
    def __init__(self, field: EncryptedField[Any]) -> None:
        self.field = field

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        stored = instance.__dict__.get(self.field.attname)
        if isinstance(stored, Sealed):
            value = self.field.from_bytes(instance.open_field(self.field.name, bytes(stored)))
            instance.__dict__[self.field.attname] = _Clear(value)
            return value
        if isinstance(stored, _Clear):
            return stored.value
        return stored

    def __set__(self, instance: Any, value: Any) -> None:
        if isinstance(value, Sealed) or value is None:
            instance.__dict__[self.field.attname] = value
        else:
            instance.__dict__[self.field.attname] = _Clear(value)


class EncryptedField(models.BinaryField, Generic[T]):  # type: ignore[type-arg]
    """Base class: subclasses say how a value becomes bytes and back."""

    description = "Encrypted health data"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("editable", False)
        super().__init__(*args, **kwargs)

    def to_bytes(self, value: T) -> bytes:
        raise NotImplementedError

    def from_bytes(self, raw: bytes) -> T:
        raise NotImplementedError

    def contribute_to_class(self, cls: Any, name: str, private_only: bool = False) -> None:
        super().contribute_to_class(cls, name, private_only=private_only)
        setattr(cls, self.attname, _EncryptedAttribute(self))

    def from_db_value(self, value: Any, expression: Any, connection: BaseDatabaseWrapper) -> Sealed | None:
        if value is None:
            return None
        return Sealed(bytes(value))

    def pre_save(self, model_instance: Any, add: bool) -> bytes | None:
        stored = model_instance.__dict__.get(self.attname)
        if stored is None:
            return None
        if isinstance(stored, Sealed):
            return bytes(stored)
        if isinstance(stored, _Clear):
            if stored.value is None:
                return None
            sealed: bytes = model_instance.seal_field(self.name, self.to_bytes(stored.value))
            return sealed
        raise TypeError(f"unexpected value in encrypted field {self.name}")

    def get_lookup(self, lookup_name: str) -> Any:
        # Comparing ciphertexts is meaningless; only "is it set" is a valid question.
        if lookup_name != "isnull":
            raise TypeError(f"encrypted field {self.name} cannot be filtered with {lookup_name!r}")
        return super().get_lookup(lookup_name)

    def value_to_string(self, obj: Any) -> str:
        return "<encrypted>"


class EncryptedTextField(EncryptedField[str]):
    def to_bytes(self, value: str) -> bytes:
        if not isinstance(value, str):
            raise TypeError(f"{self.name} expects text")
        return value.encode("utf-8")

    def from_bytes(self, raw: bytes) -> str:
        return raw.decode("utf-8")


class EncryptedBinaryField(EncryptedField[bytes]):
    def to_bytes(self, value: bytes) -> bytes:
        return bytes(value)

    def from_bytes(self, raw: bytes) -> bytes:
        return raw


class EncryptedDateField(EncryptedField[datetime.date]):
    def to_bytes(self, value: datetime.date) -> bytes:
        if not isinstance(value, datetime.date) or isinstance(value, datetime.datetime):
            raise TypeError(f"{self.name} expects a date")
        return value.isoformat().encode("ascii")

    def from_bytes(self, raw: bytes) -> datetime.date:
        return datetime.date.fromisoformat(raw.decode("ascii"))


class EncryptedJSONField(EncryptedField[Any]):
    def to_bytes(self, value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    def from_bytes(self, raw: bytes) -> Any:
        return json.loads(raw)


class EncryptedModel(models.Model):
    """Abstract base of every model holding health data."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    data_key = models.ForeignKey(DataKey, null=True, on_delete=models.SET_NULL, editable=False, related_name="+")
    data_key_id: uuid.UUID | None

    class Meta:
        abstract = True

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.pk}>"

    def save(self, *args: Any, **kwargs: Any) -> None:
        with transaction.atomic():
            if self.data_key_id is None and self._state.adding:
                self.data_encryption_key()
            super().save(*args, **kwargs)

    def adopt_key(self, dek: bytes) -> DataKey:
        """Seal this new object with ``dek`` (a key chosen before it existed, such as an
        upload's): its ``data_key`` becomes an unsaved row wrapping ``dek``, returned for
        the caller to insert along with the object (pli.core.db.insert_rows)."""
        data_key = DataKey.wrapping(dek)
        self.data_key = data_key
        self.__dict__["_pli_dek"] = dek
        return data_key

    def _aad(self, field_name: str) -> bytes:
        return f"{self._meta.label_lower}|{self.pk}|{field_name}".encode()

    def data_encryption_key(self) -> bytes:
        """This object's plaintext data key, created on first use (kept in memory only)."""
        cached: bytes | None = self.__dict__.get("_pli_dek")
        if cached is not None:
            return cached
        if self.data_key_id is None:
            if not self._state.adding and self._has_sealed_values():
                raise ContentShredded(f"{self._meta.label} {self.pk}: content was shredded")
            key, dek = DataKey.generate()
            self.data_key = key
        else:
            try:
                data_key = self.data_key
            except DataKey.DoesNotExist:  # the key row vanished between load and use
                data_key = None
            if data_key is None:
                raise ContentShredded(f"{self._meta.label} {self.pk}: content was shredded")
            dek = data_key.unwrap()
        self.__dict__["_pli_dek"] = dek
        return dek

    def _has_sealed_values(self) -> bool:
        return any(isinstance(self.__dict__.get(f.attname), Sealed) for f in self._meta.concrete_fields)

    def seal_field(self, field_name: str, plaintext: bytes) -> bytes:
        return seal(self.data_encryption_key(), plaintext, self._aad(field_name))

    def open_field(self, field_name: str, ciphertext: bytes) -> bytes:
        if self.data_key_id is None:
            raise ContentShredded(f"{self._meta.label} {self.pk}: content was shredded")
        return open_sealed(self.data_encryption_key(), ciphertext, self._aad(field_name))

    def blob_aad(self, name: str) -> bytes:
        """Associated data for a blob owned by this object (streamed with its data key)."""
        return self._aad(f"blob:{name}")

    def shred(self) -> None:
        """Crypto-shred: forget the data key and clear the ciphertexts it protected."""
        with transaction.atomic():
            encrypted = [f for f in self._meta.concrete_fields if isinstance(f, EncryptedField)]
            for f in encrypted:
                self.__dict__[f.attname] = None
            key_id = self.data_key_id
            self.data_key = None
            self.__dict__.pop("_pli_dek", None)
            type(self).objects.filter(pk=self.pk).update(  # type: ignore[attr-defined]
                data_key=None, **{f.attname: None for f in encrypted}
            )
            if key_id is not None:
                DataKey.forget([key_id])
