"""REST API v1 for patient shares: create (multipart), read status and events, revoke,
unlock, resend; scopes and ownership."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone

from pli.api.services import create_token
from pli.audit.models import AuditEvent
from pli.sharing import services
from pli.sharing.models import PatientShare, Status
from pli.sharing.uploads import share_blob_store
from pli.testing.accounts import make_organisation, make_user
from sharing.helpers import Patient, make_share, pdf_bytes, run_tasks, token_of


def api(user: Any, scopes: list[str] | None = None) -> Client:
    _token, raw = create_token(user, "test", scopes)
    return Client(HTTP_AUTHORIZATION=f"Bearer {raw}")


def fields(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "patient_given_name": "Élodie",
        "patient_family_name": "Durand",
        "patient_birth_date": "1984-02-15",
        "patient_email": "patient@example.org",
        "patient_mobile": "+33612345678",
        "message": "Vos résultats",
        "documents": [
            SimpleUploadedFile("bilan.pdf", pdf_bytes("bilan"), "application/pdf"),
            SimpleUploadedFile("radio.png", b"\x89PNG\r\n\x1a\n" + b"0" * 100, "image/png"),
        ],
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def test_create_then_follow_the_status(db: None) -> None:
    user = make_user()
    client = api(user)
    response = client.post("/api/v1/shares", fields(expires_in_days="7", allow_reply="true"))
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"id", "status", "expires_at"}
    assert body["status"] == "sent"
    share = PatientShare.objects.get(pk=body["id"])
    assert share.document_count == 2 and share.allow_reply
    expires = datetime.datetime.fromisoformat(body["expires_at"])
    assert abs(expires - (timezone.now() + datetime.timedelta(days=7))) < datetime.timedelta(minutes=1)
    assert [d.name for d in share.documents.all()] == ["bilan.pdf", "radio.png"]

    token = token_of(share)
    run_tasks()
    Patient(token).sign_in()
    detail = client.get(f"/api/v1/shares/{share.pk}").json()
    assert detail["status"] == "opened"
    types = [e["type"] for e in detail["events"]]
    assert types[0] == "created" and "notification_sent" in types and "opened" in types
    assert all(set(e) == {"type", "at", "channel", "final", "reason"} for e in detail["events"])
    # Which channel each notification and code went by; nothing else in an event.
    sent = [e for e in detail["events"] if e["type"] in ("notification_sent", "code_sent")]
    assert sent and all(e["channel"] in ("sms", "email") and e["final"] is None for e in sent)
    assert all(e["channel"] is None and e["final"] is None for e in detail["events"] if e not in sent)
    assert all(e["reason"] is None for e in detail["events"])
    assert "Durand" not in str(detail["events"])
    # Who the share is for, as now on file, and what it holds: software checks them against
    # its own record (the patient's contacts corrected by /resend, say).
    assert detail["patient"] == {
        "given_name": "Élodie",
        "family_name": "Durand",
        "birth_date": "1984-02-15",
        "ins": None,
        "email": "patient@example.org",
        "mobile": "+33612345678",
    }
    assert [(f["name"], f["content_type"]) for f in detail["files"]] == [
        ("bilan.pdf", "application/pdf"),
        ("radio.png", "image/png"),
    ]
    assert detail["created_by"] == {"email": user.email, "name": user.display_name}
    assert detail["forward_of"] is None
    # Reading it is recorded, as reading the share's page is.
    assert AuditEvent.objects.filter(action="share.read", target_id=str(share.pk)).exists()

    listing = client.get("/api/v1/shares").json()
    assert [item["id"] for item in listing] == [str(share.pk)]
    # Times in UTC, as the messages give them (they came in the server's time zone).
    times = [body["expires_at"], detail["created_at"], *[e["at"] for e in detail["events"]], listing[0]["expires_at"]]
    assert all(t.endswith("+00:00") for t in times), times
    # An id in capitals (SQL Server, .NET) is the same share.
    assert client.get(f"/api/v1/shares/{str(share.pk).upper()}").json()["id"] == str(share.pk)


def test_default_expiry_is_the_organisation_policy(db: None) -> None:
    organisation = make_organisation()
    organisation.share_expiry_days = 10
    organisation.save()
    client = api(make_user(organisation))
    body = client.post("/api/v1/shares", fields()).json()
    expires = datetime.datetime.fromisoformat(body["expires_at"])
    assert abs(expires - (timezone.now() + datetime.timedelta(days=10))) < datetime.timedelta(minutes=1)


def test_bad_input_is_a_400_naming_each_field(db: None) -> None:
    client = api(make_user())
    response = client.post(
        "/api/v1/shares",
        fields(
            patient_birth_date="15/02/1984",
            patient_email=None,
            patient_mobile="01 45 67 89 01",
            patient_ins="123",
            expires_in_days="91",
            documents=None,
            message=None,
        ),
    )
    assert response.status_code == 400
    errors = response.json()
    assert {"patient_birth_date", "patient_mobile", "patient_ins", "expires_in_days", "documents"} <= set(errors)
    assert not PatientShare.objects.exists()


def test_a_name_with_a_direction_override_is_refused(db: None) -> None:
    """U+202E would show "Durand" followed by reversed text in the practitioner's list."""
    response = api(make_user()).post("/api/v1/shares", fields(patient_family_name="Durand\u202e"))
    assert response.status_code == 400
    assert "invisible" in response.json()["patient_family_name"][0]
    assert not PatientShare.objects.exists()


def test_a_contact_is_required(db: None) -> None:
    response = api(make_user()).post("/api/v1/shares", fields(patient_email=None, patient_mobile=None))
    assert response.status_code == 400
    assert "patient_mobile" in response.json() and "patient_email" in response.json()


def test_a_json_body_is_refused_as_such_not_read_as_no_fields(db: None) -> None:
    """Integrators were told that every field they had sent was missing."""
    data = fields(documents=None)
    response = api(make_user()).post("/api/v1/shares", data, content_type="application/json")
    assert response.status_code == 415
    assert response.json() == {
        "detail": "Type de m\u00e9dia \u00ab\u00a0application/json\u00a0\u00bb non accept\u00e9 ici\u00a0: "
        "envoyez la requ\u00eate en multipart/form-data."
    }
    response = api(make_user()).post("/api/v1/shares", b"", content_type="", HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 415
    assert response.json() == {"detail": "The request has no Content-Type header: send it as multipart/form-data."}
    assert PatientShare.objects.count() == 0


def test_a_birth_date_the_ins_contradicts_is_refused(db: None) -> None:
    response = api(make_user()).post(
        "/api/v1/shares", fields(patient_ins="284029912345655", patient_birth_date="1984-12-15")
    )
    assert response.status_code == 400
    assert "INS" in response.json()["patient_birth_date"][0]
    assert PatientShare.objects.count() == 0


def test_files_only_in_documents(db: None) -> None:
    response = api(make_user()).post(
        "/api/v1/shares", fields(other=SimpleUploadedFile("x.pdf", pdf_bytes(), "application/pdf"))
    )
    assert response.status_code == 400
    assert "other" in response.json()


def test_scopes_are_enforced(db: None) -> None:
    user = make_user()
    share, _token = make_share(user)
    reader = api(user, ["shares:read"])
    assert reader.get(f"/api/v1/shares/{share.pk}").status_code == 200
    assert reader.post("/api/v1/shares", fields()).status_code == 403
    assert reader.post(f"/api/v1/shares/{share.pk}/revoke").status_code == 403
    writer = api(user, ["shares:write"])
    assert writer.get(f"/api/v1/shares/{share.pk}").status_code == 403
    # Nor does acting on it read it: what happened to the share is for readers.
    assert writer.post(f"/api/v1/shares/{share.pk}/revoke").json() == {"id": str(share.pk), "status": "revoked"}
    assert "events" in api(user).post(f"/api/v1/shares/{share.pk}/revoke").json()
    assert Client().get(f"/api/v1/shares/{share.pk}").status_code == 401


def test_another_practitioners_share_is_not_found(db: None) -> None:
    share, _token = make_share(make_user())
    intruder = api(make_user())
    assert intruder.get(f"/api/v1/shares/{share.pk}").status_code == 404
    for action in ("revoke", "unlock", "resend", "close"):
        assert intruder.post(f"/api/v1/shares/{share.pk}/{action}").status_code == 404
    share.refresh_from_db()
    assert share.status == Status.SENT


def test_revoke_unlock_resend(db: None) -> None:
    user = make_user()
    client = api(user)
    share, token = make_share(user)
    assert client.post(f"/api/v1/shares/{share.pk}/unlock").status_code == 409
    patient = Patient(token)
    for _ in range(5):
        patient.birth_date("01/01/2001")
    locked = client.get(f"/api/v1/shares/{share.pk}").json()
    # What locked it, so that the integrator's user knows what to check with the patient.
    assert locked["status"] == "locked" and locked["lock_reason"] == "birth_date"
    assert client.post(f"/api/v1/shares/{share.pk}/resend").status_code == 409
    unlocked = client.post(f"/api/v1/shares/{share.pk}/unlock")
    assert unlocked.status_code == 200 and unlocked.json()["status"] == "sent"
    assert unlocked.json()["lock_reason"] is None
    resent = client.post(f"/api/v1/shares/{share.pk}/resend")
    assert resent.status_code == 200
    assert "resent" in [e["type"] for e in resent.json()["events"]]
    assert Patient(token).get().status_code == 404  # the old link was replaced
    revoked = client.post(f"/api/v1/shares/{share.pk}/revoke")
    assert revoked.json()["status"] == "revoked"
    assert client.post(f"/api/v1/shares/{share.pk}/resend").status_code == 409


def test_an_integrator_closes_the_patients_conversation(db: None) -> None:
    """Medical software that follows a conversation ends it as the practitioner's page
    does: the patient can no longer reply, and the share says since when."""
    from pli.sharing.models import ShareReply

    user = make_user()
    client = api(user)
    share, token = make_share(user, allow_reply=True)
    assert client.get(f"/api/v1/shares/{share.pk}").json()["conversation_closed_at"] is None
    assert api(make_user()).post(f"/api/v1/shares/{share.pk}/close").status_code == 404
    assert api(user, ["shares:read"]).post(f"/api/v1/shares/{share.pk}/close").status_code == 403
    share.refresh_from_db()
    assert share.closed_at is None

    closed = client.post(f"/api/v1/shares/{share.pk}/close")
    assert closed.status_code == 200, closed.content
    body = closed.json()
    assert body["status"] == "sent" and body["allow_reply"] is True
    assert [e["type"] for e in body["events"]].count("closed") == 1
    at = datetime.datetime.fromisoformat(body["conversation_closed_at"])
    assert abs(at - timezone.now()) < datetime.timedelta(minutes=1)
    again = client.post(f"/api/v1/shares/{share.pk}/close").json()
    assert again["conversation_closed_at"] == body["conversation_closed_at"]
    assert [e["type"] for e in again["events"]].count("closed") == 1

    patient = Patient(token)
    patient.sign_in()
    assert patient.client.post(patient.url("/reply"), {"text": "Merci"}).status_code == 400
    assert not ShareReply.objects.exists()

    # Nothing to close on a share that takes no replies: said so, and nothing recorded.
    silent, _token = make_share(user)
    refused = client.post(f"/api/v1/shares/{silent.pk}/close")
    assert refused.status_code == 409
    assert refused.json()["detail"] == "Cet envoi n\u2019accepte pas de réponse du patient."
    silent.refresh_from_db()
    assert silent.closed_at is None and "closed" not in [e.type for e in services.events(silent)]


def test_expired_share_reads_as_expired(db: None) -> None:
    user = make_user()
    share, _token = make_share(user, now=timezone.now() - datetime.timedelta(days=40))
    assert api(user).get(f"/api/v1/shares/{share.pk}").json()["status"] == "expired"


def test_an_expired_share_cannot_be_revoked(db: None) -> None:
    """Revoking changed an expired share into a revoked one: its status rewritten, and its
    documents, due for deletion 30 days after the expiry, kept 30 days after the revocation."""
    user = make_user()
    client = api(user)
    unrecorded, _token = make_share(user, now=timezone.now() - datetime.timedelta(days=40))
    recorded, _token = make_share(user, now=timezone.now() - datetime.timedelta(days=40))
    services.expire_shares()
    for share in (unrecorded, recorded):
        response = client.post(f"/api/v1/shares/{share.pk}/revoke")
        assert response.status_code == 409
        assert response.json()["detail"] == "Cet envoi a expiré."
        share.refresh_from_db()
        assert share.revoked_at is None and share.status != Status.REVOKED
        assert client.get(f"/api/v1/shares/{share.pk}").json()["status"] == "expired"
        assert "revoked" not in [e.type for e in services.events(share)]


def test_schema_documents_the_share_endpoints(db: None) -> None:
    schema = Client().get("/api/v1/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    text = schema.content.decode()
    for path in ("/api/v1/shares", "/api/v1/shares/{share_id}", "/api/v1/shares/{share_id}/revoke"):
        assert path in text
    assert "patient_birth_date" in text and "expires_in_days" in text
    # The bodies of a conflict and of a too-large upload are described, not just named.
    operations = schema.json()["paths"]
    conflict = operations["/api/v1/shares/{share_id}/unlock"]["post"]["responses"]["409"]
    assert conflict["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Conflict"}
    too_large = operations["/api/v1/shares"]["post"]["responses"]["413"]
    assert too_large["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ValidationError"}
    assert {"408", "411", "415"} <= set(operations["/api/v1/shares"]["post"]["responses"])


def test_a_cut_off_upload_saves_nothing(db: None) -> None:
    from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart

    body = encode_multipart(BOUNDARY, fields(documents=[SimpleUploadedFile("a.pdf", pdf_bytes() * 50)]))
    cut = body[: len(body) // 2]
    response = api(make_user()).generic("POST", "/api/v1/shares", cut, content_type=MULTIPART_CONTENT)
    assert response.status_code == 400
    assert not PatientShare.objects.exists()
    assert list(share_blob_store().iter_ids()) == []


def test_too_many_documents(db: None, settings: Any) -> None:
    settings.PLI_SHARE_MAX_DOCUMENTS = 1
    response = api(make_user()).post("/api/v1/shares", fields())
    assert response.status_code == 400
    assert "documents" in response.json()
    assert not PatientShare.objects.exists()


def test_allow_reply_is_read_strictly(db: None) -> None:
    """Software sends flags as 0/1, no/yes, false/true: "0" must not let the patient reply."""
    client = api(make_user())
    for raw, expected in [("0", False), ("no", False), ("OFF", False), ("", False), ("1", True), ("yes", True)]:
        response = client.post("/api/v1/shares", fields(allow_reply=raw))
        assert response.status_code == 201, (raw, response.content)
        assert PatientShare.objects.get(pk=response.json()["id"]).allow_reply is expected, raw
    refused = client.post("/api/v1/shares", fields(allow_reply="maybe"))
    assert refused.status_code == 400
    assert "allow_reply" in refused.json()


def test_an_empty_document_is_refused(db: None) -> None:
    empty = SimpleUploadedFile("vide.pdf", b"", "application/pdf")
    response = api(make_user()).post("/api/v1/shares", fields(documents=[empty]))
    assert response.status_code == 400
    assert "vide.pdf" in response.json()["documents"][0]
    assert not PatientShare.objects.exists()
    assert list(share_blob_store().iter_ids()) == []


def test_an_upload_too_old_to_commit_is_refused_and_nothing_kept(db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from pli.sharing import services

    monkeypatch.setattr(services, "MAX_PENDING_AGE", -1.0)  # every upload is already too old
    response = api(make_user()).post("/api/v1/shares", fields())
    assert response.status_code == 400
    again = "L\u2019envoi des fichiers a pris trop de temps\u00a0; veuillez les envoyer à nouveau."
    assert response.json() == {"documents": [again]}
    assert not PatientShare.objects.exists()
    assert list(share_blob_store().iter_ids()) == []


def test_a_document_sent_as_text_is_refused_not_dropped(db: None) -> None:
    """A text part named ``documents`` beside a real file was dropped without a word: the
    patient got the share without that document."""
    data = fields(documents=[SimpleUploadedFile("bilan.pdf", pdf_bytes("bilan"), "application/pdf"), "JVBERi0xLjQK"])
    response = api(make_user()).post("/api/v1/shares", data)
    assert response.status_code == 400
    assert "fichiers" in response.json()["documents"][0]
    assert not PatientShare.objects.exists()


def test_a_document_sent_only_as_text_is_named_as_such(db: None) -> None:
    response = api(make_user()).post("/api/v1/shares", fields(documents="JVBERi0xLjQK"), HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 400
    assert response.json()["documents"] == [
        "Documents must be sent as files (multipart/form-data parts with a file name)."
    ]


def test_a_list_parameter_given_twice_is_refused(db: None) -> None:
    """status=sent&status=revoked listed the revoked shares only, without a word."""
    response = api(make_user()).get("/api/v1/shares?status=sent&status=revoked")
    assert response.status_code == 400
    assert list(response.json()) == ["status"]


def test_an_empty_status_is_refused_an_empty_search_is_none(db: None) -> None:
    """status= listed every share, where the schema allows only a status."""
    client = api(make_user())
    response = client.get("/api/v1/shares?status=")
    assert response.status_code == 400 and list(response.json()) == ["status"]
    assert response.json()["status"][0].startswith("Donnez un statut, parmi\u00a0: sent, opened,")
    assert client.get("/api/v1/shares?q=").status_code == 200


def test_events_say_whether_a_failed_notification_will_be_retried(db: None) -> None:
    """An integrator must tell « Pli retries » from « the patient will never get it »."""
    from pli.audit import services as audit

    user = make_user()
    share, _token = make_share(user)
    target = ("sharing.patientshare", str(share.pk))
    for final in (False, True):
        details = {"channel": "sms", "kind": "link", "attempt": 1, "reason": "refused", "final": final}
        audit.record("share.notification_failed", target=target, outcome=audit.FAILURE, details=details)
    events = api(user).get(f"/api/v1/shares/{share.pk}").json()["events"]
    failed = [(e["channel"], e["final"]) for e in events if e["type"] == "notification_failed"]
    assert failed == [("sms", False), ("sms", True)]


def test_a_misspelt_field_is_refused_not_ignored(db: None) -> None:
    """An integrator's « allow_replies » would otherwise make a share the patient cannot
    answer, without a word: the field is named, nothing is created, the document's blob is
    not kept."""
    user = make_user()
    client = api(user)
    blobs = list(share_blob_store().iter_ids())
    refused = client.post("/api/v1/shares", fields(allow_replies="true", patient_nir="1840275123456"))
    assert refused.status_code == 400
    body = refused.json()
    assert set(body) == {"allow_replies", "patient_nir"}
    assert "allow_reply" in body["allow_replies"][0] and "patient_ins" in body["allow_replies"][0]
    assert not PatientShare.objects.exists() and list(share_blob_store().iter_ids()) == blobs
    # A file part under another name than « documents » is named too.
    misplaced = client.post("/api/v1/shares", fields(document=SimpleUploadedFile("a.pdf", pdf_bytes("a"))))
    assert misplaced.status_code == 400 and set(misplaced.json()) == {"document"}

    share, _token = make_share(user)
    resend = client.post(
        f"/api/v1/shares/{share.pk}/resend", {"patient_phone": "+33698765432"}, content_type="application/json"
    )
    assert resend.status_code == 400 and set(resend.json()) == {"patient_phone"}
    # A revocation takes no body: its « reason » would be lost.
    revoke = client.post(f"/api/v1/shares/{share.pk}/revoke", {"reason": "erreur"}, content_type="application/json")
    assert revoke.status_code == 400 and set(revoke.json()) == {"reason"}
    share.refresh_from_db()
    assert share.status == Status.SENT and not share.revoked_at
    assert client.post(f"/api/v1/shares/{share.pk}/revoke").json()["status"] == "revoked"


def test_the_schema_says_the_bodies_take_no_other_field(db: None) -> None:
    schema = Client().get("/api/v1/schema/", HTTP_ACCEPT="application/json").json()["components"]["schemas"]
    for name in ("ShareCreateRequest", "ShareResendRequest", "MessageCreateRequest", "MoveRequest"):
        assert schema[name]["additionalProperties"] is False, name


def test_a_misspelt_listing_parameter_is_refused_not_ignored(db: None) -> None:
    """« statut=locked » ignored listed every share, as if none were locked."""
    client = api(make_user())
    response = client.get("/api/v1/shares?statut=locked&limit=5")
    assert response.status_code == 400
    assert set(response.json()) == {"statut"}
    assert "aucun paramètre de ce nom" in response.json()["statut"][0]
    assert "status" in response.json()["statut"][0]
    assert client.get("/api/v1/shares?status=locked&limit=5").status_code == 200


def test_a_search_in_the_body_finds_what_the_listing_finds(db: None) -> None:
    """POST /api/v1/shares/search: the patient's name or INS stays out of the URL."""
    client = api(make_user())
    made = [
        client.post("/api/v1/shares", fields(patient_family_name=name)).json()["id"] for name in ("Durand", "Martin")
    ]
    made.append(client.post("/api/v1/shares", fields()).json()["id"])
    first = client.post("/api/v1/shares/search", {"q": "Durand", "limit": 1}, content_type="application/json")
    assert first.status_code == 200, first.content
    page = first.json()
    assert [s["id"] for s in page["results"]] == [made[2]] and page["next_created_before"]
    following = client.post(
        "/api/v1/shares/search",
        {"q": "durand", "limit": 1, "created_before": page["next_created_before"]},
        content_type="application/json",
    ).json()
    assert [s["id"] for s in following["results"]] == [made[0]]
    listing = [s["id"] for s in client.get("/api/v1/shares?q=Durand").json()]
    as_form = client.post("/api/v1/shares/search", "q=Durand", content_type="application/x-www-form-urlencoded")
    assert [s["id"] for s in as_form.json()["results"]] == listing == [made[2], made[0]]
    # The search is recorded, not what was looked for.
    searches = AuditEvent.objects.filter(action="share.list")
    assert searches.count() == 4 and "Durand" not in str(list(searches.values("details")))
    refused = client.post("/api/v1/shares/search", {"patient": "Durand", "q": 5}, content_type="application/json")
    assert refused.status_code == 400 and set(refused.json()) == {"patient"}
    typed = client.post("/api/v1/shares/search", {"q": ["Durand"]}, content_type="application/json")
    assert typed.status_code == 400 and set(typed.json()) == {"q"}
