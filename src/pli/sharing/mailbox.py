"""Where shares meet the practitioner's mailbox (``pli.messaging``).

* A patient's reply becomes a message received in the share's reply mailbox, through
  messaging's own service (``receive_external_message``): no sender mailbox (the patient has
  none) but the patient as its external sender, the patient's identity as the message's
  patient context, the files as attachments (already encrypted into the messaging blob store
  by the upload handler, under each attachment's own key). All replies of one share form
  one thread, whose id is the share's; a ``ShareReply`` row names each reply's message.
* A received message's attachments can be forwarded to a patient: each one is re-encrypted
  under a new document key into the shares' blob store.
"""

from __future__ import annotations

import contextlib
import datetime
import time
import uuid
from collections.abc import Iterable, Sequence

from django.conf import settings
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.formats import date_format
from django.utils.translation import gettext as _

from pli.accounts.models import User
from pli.crypto import new_data_key
from pli.messaging import services as messaging
from pli.messaging.models import Attachment, ExternalSender, Message
from pli.messaging.uploads import attachment_aad
from pli.messaging.uploads import blob_store as message_blob_store
from pli.sharing.models import PatientShare, ShareDocument
from pli.sharing.services import PATIENT
from pli.sharing.uploads import PendingFile, UploadRules, document_rules, share_blob_store

REPLY_MAX_FILES = 5
REPLY_MAX_FILE_BYTES = 10 * 10**6
# Per share, over the last 24 hours: a patient answers a few times; someone past the two
# factors must not fill the server's disk or the practitioner's mailbox.
REPLIES_PER_DAY = 10
REPLY_BYTES_PER_DAY = 100 * 10**6


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
        allow_empty=False,
    )


def patient_context(share: PatientShare) -> dict[str, str]:
    context = {
        "family_name": share.patient_family_name,
        "given_names": share.patient_given_name,
        "birth_date": share.patient_birth_date.isoformat(),
    }
    if share.patient_ins:
        context["ins"] = share.patient_ins
    return context


def patient_name(share: PatientShare) -> str:
    return f"{share.patient_given_name} {share.patient_family_name}"


def deliver_patient_reply(
    share: PatientShare,
    text: str,
    files: Sequence[PendingFile],
    now: datetime.datetime,
    *,
    request: HttpRequest | None = None,
) -> uuid.UUID:
    """Inside the caller's transaction (which checked that the share has a reply mailbox):
    the reply as a message received in that mailbox, in the share's thread (its id is the
    share's), from the patient."""
    mailbox = share.reply_mailbox
    assert mailbox is not None  # noqa: S101 - services.reply refuses shares without one
    with translation.override(settings.LANGUAGE_CODE):
        subject = _("Reply from %(name)s to your secure share") % {"name": patient_name(share)}
        shared = (
            _("Reply to the message you sent on %(date)s: %(url)s")
            if share.message_only
            else _("Reply to the documents you shared on %(date)s: %(url)s")
        )
        intro = shared % {
            # In local time: date_format takes the UTC datetime as it is (shared at 00:30
            # read as the day before).
            "date": date_format(timezone.localtime(share.created_at), "SHORT_DATE_FORMAT"),
            "url": settings.PUBLIC_URL + reverse("sharing:detail", args=[share.pk]),
        }
    message = messaging.receive_external_message(
        mailbox,
        sender_kind=ExternalSender.PATIENT_LINK,
        sender_name=patient_name(share),
        subject=subject,
        body=f"{intro}\n\n{text}".strip(),
        patient=patient_context(share),
        attachments=files,
        thread_id=share.pk,
        actor=PATIENT,
        request=request,
        now=now,
    )
    return message.pk


def received_attachments(user: User, message_id: uuid.UUID | str) -> list[Attachment]:
    """The attachments of a message ``user`` can see (``messaging.NotVisible`` otherwise)."""
    message = messaging.visible_message(user, message_id)
    return messaging.message_attachments(message)


def replied(share_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    """Those of the shares ``share_ids`` that a patient's answer came through (its message's
    thread is the share's id), for the list to show which patients are waiting for a word."""
    ids = list(share_ids)
    if not ids:
        return set()
    return set(Message.objects.filter(thread_id__in=ids, sender__isnull=True).values_list("thread_id", flat=True))


def other_patient(forwarded: Sequence[Attachment], ins: str) -> str:
    """Why the attachments ``forwarded`` (of one message) may not go to the patient of INS
    ``ins``: the letter is about someone else (both name an INS, and they differ); empty
    otherwise.
    Identity vigilance: one patient's results handed to another by a slip of the software
    or of the hand, the share pre-filled from one letter and sent with another's files."""
    if not forwarded or not ins:
        return ""
    theirs = _plain_ins((forwarded[0].message.patient or {}).get("ins") or "")
    if theirs and theirs != _plain_ins(ins):
        return _(
            "This INS is not that of the patient of the message whose documents go with the share: "
            "check that they are this patient's."
        )
    return ""


def _plain_ins(value: str) -> str:
    return value.replace(" ", "").upper()


def over_limits(uploads: Sequence[PendingFile], forwarded: Sequence[Attachment]) -> str:
    """Why the documents break the share's limits, or "". The upload handler enforces them
    on the files uploaded only: a message's attachments come on top of those, and a message
    may carry more and larger files than a share takes (100 MiB against 100 MB)."""
    rules = document_rules()
    if len(uploads) + len(forwarded) > rules.max_files:
        return rules.too_many(rules)
    if any(a.size > rules.max_file_bytes for a in forwarded):
        return rules.too_large(rules, False)
    if sum(p.size for p in uploads) + sum(a.size for a in forwarded) > rules.max_total_bytes:
        return rules.too_large(rules, True)
    return ""


def copy_attachments(attachments: Sequence[Attachment]) -> list[PendingFile]:
    """Re-encrypt attachments as share documents (each under a new key), before the share's
    transaction; blobs of a share that is never saved are removed by the orphan cleanup."""
    target = share_blob_store()
    copies: list[PendingFile] = []
    try:
        for attachment in attachments:
            new_id = uuid.uuid4()
            key = new_data_key()
            aad = ShareDocument(id=new_id).blob_aad("content")
            with messaging.reading_source(attachment) as reader:
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
    except BaseException:
        # A later copy failed (its source deleted meanwhile, no room left): the copies
        # made are not the caller's to discard yet, so they go now.
        for copy in copies:
            with contextlib.suppress(OSError):
                target.delete(copy.blob_id)
        raise
    return copies
