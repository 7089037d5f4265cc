"""Where shares meet the practitioner's mailbox (``pli.messaging``).

* A patient's reply becomes a message in the share's reply mailbox: no sender mailbox (the
  patient has none), the patient's identity as the message's patient context, the files as
  attachments (already encrypted into the messaging blob store by the upload handler, under
  each attachment's own key). All replies of one share form one thread.
* A received message's attachments can be forwarded to a patient: each one is re-encrypted
  under a new document key into the shares' blob store.
"""

from __future__ import annotations

import datetime
import time
import uuid
from collections.abc import Sequence

from django.conf import settings
from django.urls import reverse
from django.utils import translation
from django.utils.formats import date_format
from django.utils.translation import gettext as _

from pli.accounts.models import User
from pli.core.models import DataKey
from pli.crypto import new_data_key
from pli.messaging import search
from pli.messaging import services as messaging
from pli.messaging.models import Attachment, Delivery, Folder, Message, Role, SearchToken
from pli.messaging.uploads import attachment_aad
from pli.messaging.uploads import blob_store as message_blob_store
from pli.sharing.models import PatientShare, ShareDocument
from pli.sharing.uploads import PendingFile, UploadRules, share_blob_store

REPLY_MAX_FILES = 5
REPLY_MAX_FILE_BYTES = 10 * 10**6


def reply_rules() -> UploadRules:
    from pli.sharing.uploads import REPLY_FILES_FIELD, REPLY_TYPES

    return UploadRules(
        field=REPLY_FILES_FIELD,
        max_files=REPLY_MAX_FILES,
        max_file_bytes=REPLY_MAX_FILE_BYTES,
        max_total_bytes=REPLY_MAX_FILES * REPLY_MAX_FILE_BYTES,
        store=message_blob_store(),
        aad_for=attachment_aad,
        accepted_types=REPLY_TYPES,
    )


def _saved_key(dek: bytes) -> DataKey:
    data_key = DataKey.wrapping(dek)
    data_key.save(force_insert=True)
    return data_key


def patient_context(share: PatientShare) -> dict[str, str]:
    context = {
        "family_name": share.patient_family_name,
        "given_names": share.patient_given_name,
        "birth_date": share.patient_birth_date.isoformat(),
    }
    if share.patient_ins:
        context["ins"] = share.patient_ins
    return context


def deliver_patient_reply(
    share: PatientShare, text: str, files: Sequence[PendingFile], now: datetime.datetime
) -> uuid.UUID:
    """Inside the caller's transaction (which checked that the share has a reply mailbox):
    the reply as a message in that mailbox."""
    mailbox = share.reply_mailbox
    assert mailbox is not None  # noqa: S101 - services.reply refuses shares without one
    patient = patient_context(share)
    with translation.override(settings.LANGUAGE_CODE):
        subject = _("Reply from %(name)s to your secure share") % {
            "name": f"{share.patient_given_name} {share.patient_family_name}"
        }
        intro = _("Reply to the documents you shared on %(date)s: %(url)s") % {
            "date": date_format(share.created_at, "SHORT_DATE_FORMAT"),
            "url": settings.PUBLIC_URL + reverse("sharing:detail", args=[share.pk]),
        }
    message = Message(
        thread_id=share.pk,
        sender=None,
        author=None,
        sent_at=now,
        attachment_count=len(files),
        attachments_size=sum(f.size for f in files),
    )
    message.subject = subject
    message.body = f"{intro}\n\n{text}".strip()
    message.patient = patient
    message.save(force_insert=True)
    for position, pending in enumerate(files):
        attachment = Attachment(
            id=pending.id, message=message, position=position, size=pending.size, data_key=_saved_key(pending.key)
        )
        attachment.name = pending.name
        attachment.content_type = pending.content_type
        attachment.sha256 = pending.sha256
        attachment.save(force_insert=True)
    Delivery.objects.create(
        message=message, mailbox=mailbox, role=Role.TO, folder=Folder.INBOX, sent_at=now, delivered_at=now
    )
    tokens = search.message_tokens(subject, patient)
    if tokens:
        SearchToken.objects.bulk_create([SearchToken(message=message, token=t) for t in tokens])
    return message.pk


def received_attachments(user: User, message_id: uuid.UUID | str) -> list[Attachment]:
    """The attachments of a message ``user`` can see (``messaging.NotVisible`` otherwise)."""
    message = messaging.visible_message(user, message_id)
    return messaging.message_attachments(message)


def copy_attachments(attachments: Sequence[Attachment]) -> list[PendingFile]:
    """Re-encrypt attachments as share documents (each under a new key), before the share's
    transaction; blobs of a share that is never saved are removed by the orphan cleanup."""
    source = message_blob_store()
    target = share_blob_store()
    copies: list[PendingFile] = []
    for attachment in attachments:
        new_id = uuid.uuid4()
        key = new_data_key()
        aad = ShareDocument(id=new_id).blob_aad("content")
        with source.open(
            attachment.blob_id, attachment.data_encryption_key(), attachment.blob_aad("content")
        ) as reader:
            info = target.put(new_id.hex, reader, key, aad)
        copies.append(
            PendingFile(
                id=new_id,
                key=key,
                name=attachment.name,
                content_type=attachment.content_type,
                size=info.size,
                sha256=info.sha256,
                completed_at=time.monotonic(),
            )
        )
    return copies
