"""``Idempotency-Key`` on POST /api/v1/shares: a retry answers the first share again, with
no second share, document, notification (SMS or e-mail) or blob; keys expire and are pruned
by the periodic job."""

from __future__ import annotations

import datetime
from typing import Any

from django.core import mail
from django.test import Client
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from pli.api import idempotency
from pli.api.models import IdempotencyKey
from pli.audit.models import AuditEvent
from pli.sharing.models import PatientShare, ShareDocument, ShareNotification
from pli.sharing.uploads import share_blob_store
from pli.testing.accounts import make_user
from sharing.helpers import run_tasks, sms_messages
from sharing.test_api import api, fields

KEY = "dossier-4711/envoi-1"


def _create(client: Client, key: str | None = KEY, **overrides: Any) -> Any:
    headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    return client.post("/api/v1/shares", fields(**overrides), **headers)


def _counts() -> tuple[int, int, int, int, int]:
    return (
        PatientShare.objects.count(),
        ShareDocument.objects.count(),
        ShareNotification.objects.count(),
        DBTaskResult.objects.count(),
        len(list(share_blob_store().iter_ids())),
    )


def test_a_retry_answers_the_first_share_and_notifies_once(db: None) -> None:
    client = api(make_user())
    first = _create(client)
    assert first.status_code == 201, first.content
    created = _counts()
    assert created[:3] == (1, 2, 1) and created[4] == 2
    again = _create(client)
    assert again.status_code == 201, again.content
    assert again.json() == first.json()
    assert _counts() == created
    assert IdempotencyKey.objects.count() == 1
    assert AuditEvent.objects.filter(action="share.created").count() == 1
    assert AuditEvent.objects.filter(action="api.idempotent_replay").count() == 1
    run_tasks()
    assert len(mail.outbox) == 1  # the link, once


def test_the_same_key_for_another_share_is_refused(db: None) -> None:
    client = api(make_user())
    assert _create(client).status_code == 201
    created = _counts()
    for change in ({"patient_given_name": "Élise"}, {"documents": [fields()["documents"][0]]}):
        response = _create(client, **change)
        assert response.status_code == 422, response.content
        assert "Idempotency-Key" in response.json()["detail"]
    assert _counts() == created


def test_a_malformed_key_is_refused(db: None) -> None:
    response = _create(api(make_user()), key="é")
    assert response.status_code == 400
    assert list(response.json()) == ["Idempotency-Key"]
    assert _counts()[0] == 0 and _counts()[4] == 0


def test_a_refused_first_share_records_nothing(db: None) -> None:
    client = api(make_user())
    assert _create(client, patient_birth_date="15/02/1984").status_code == 400
    assert not IdempotencyKey.objects.exists()
    assert _create(client).status_code == 201


def test_keys_are_per_user(db: None) -> None:
    first = _create(api(make_user()))
    other = _create(api(make_user()))
    assert first.status_code == other.status_code == 201
    assert first.json()["id"] != other.json()["id"]


def test_the_same_key_on_the_other_endpoint_is_another_key(db: None) -> None:
    user = make_user()
    idempotency.claim(user, idempotency.MESSAGES, KEY)  # in flight on POST /messages
    assert _create(api(user)).status_code == 201


def test_expired_keys_are_pruned_by_the_periodic_job(db: None) -> None:
    from pli.sharing.tasks import periodic_jobs

    client = api(make_user())
    assert _create(client).status_code == 201
    assert _create(client, key="second").status_code == 201
    old = timezone.now() - idempotency.KEEP - datetime.timedelta(minutes=1)
    IdempotencyKey.objects.exclude(pk=IdempotencyKey.objects.order_by("-pk")[0].pk).update(created_at=old)
    periodic_jobs.enqueue()
    run_tasks()
    run = DBTaskResult.objects.filter(task_path=periodic_jobs.module_path, status="SUCCESSFUL").get()
    assert run.return_value["expired_idempotency_keys"] == 1
    assert IdempotencyKey.objects.count() == 1


def test_a_resend_retried_with_its_key_sends_one_link(db: None) -> None:
    """An integrator's resend whose answer was lost, sent again: without a key that was a
    second SMS, and the link of the first (already on the patient's phone) stopped working."""
    from sharing.helpers import make_share, token_of

    user = make_user()
    client = api(user)
    share, _first = make_share(user, email=None)
    run_tasks()

    def resend(key: str, **contacts: str) -> Any:
        return client.post(
            f"/api/v1/shares/{share.pk}/resend", contacts, content_type="application/json", HTTP_IDEMPOTENCY_KEY=key
        )

    first = resend("relance-1", patient_mobile="06 98 76 54 32")
    assert first.status_code == 200, first.content
    link = token_of(share)
    again = resend("relance-1", patient_mobile="06 98 76 54 32")
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert token_of(share) == link  # no newer link replaced the one just sent
    assert AuditEvent.objects.filter(action="share.resent").count() == 1
    assert AuditEvent.objects.filter(action="api.idempotent_replay").count() == 1
    run_tasks()
    assert [m["to"] for m in sms_messages()][1:] == ["+33698765432"]
    # The key with other contacts, or for another share, is another request: refused.
    assert resend("relance-1", patient_mobile="06 11 22 33 44").status_code == 422
    other, _t = make_share(user)
    assert client.post(f"/api/v1/shares/{other.pk}/resend", HTTP_IDEMPOTENCY_KEY="relance-1").status_code == 422
    # A new key is a new resend.
    assert resend("relance-2").status_code == 200
    assert AuditEvent.objects.filter(action="share.resent").count() == 2


def test_a_refused_resend_leaves_its_key_free(db: None) -> None:
    from sharing.helpers import make_share

    user = make_user()
    client = api(user)
    share, _token = make_share(user)
    url = f"/api/v1/shares/{share.pk}/resend"
    refused = client.post(url, {"patient_mobile": "12"}, content_type="application/json", HTTP_IDEMPOTENCY_KEY="k")
    assert refused.status_code == 400
    assert not IdempotencyKey.objects.exists()
    corrected = client.post(
        url, {"patient_mobile": "06 98 76 54 32"}, content_type="application/json", HTTP_IDEMPOTENCY_KEY="k"
    )
    assert corrected.status_code == 200
