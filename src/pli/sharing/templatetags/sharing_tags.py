"""What messaging's pages show of a patient share."""

from __future__ import annotations

import uuid

from django import template

from pli.sharing.models import PatientShare

register = template.Library()


@register.simple_tag
def patient_share_exists(thread_id: uuid.UUID) -> bool:
    """Whether the share a patient's reply answered (its thread's id is the share's) still
    exists: the organisation's retention deletes ended shares, their replies stay in the
    mailbox, and a link to the share would lead to « page introuvable »."""
    return PatientShare.objects.filter(pk=thread_id).exists()
