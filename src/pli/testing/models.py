from __future__ import annotations

from django.db import models

from pli.core.encryption import (
    EncryptedBinaryField,
    EncryptedDateField,
    EncryptedJSONField,
    EncryptedModel,
    EncryptedTextField,
)


class Specimen(EncryptedModel):
    label = models.CharField(max_length=50, blank=True)
    note = EncryptedTextField(null=True)
    born = EncryptedDateField(null=True)
    payload = EncryptedBinaryField(null=True)
    meta = EncryptedJSONField(null=True)
