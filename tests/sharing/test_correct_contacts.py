"""A mistyped e-mail address or mobile number: the practitioner corrects it on the share
(web page, or the API's resend) and a new link goes to the right place, without a new share
and its documents uploaded again. Checked through a real SMTP server on loopback and the SMS
file backend."""

from __future__ import annotations

import datetime
import uuid
from typing import Any

from django.db import connection
from django.test import Client
from django.utils import timezone

from pli.api.services import create_token
from pli.audit.models import AuditEvent
from pli.sharing import services
from pli.sharing.models import PatientShare, ShareNotification, Status
from pli.testing.accounts import make_organisation, make_user
from sharing.helpers import Patient, last_code, link_token, make_share, run_tasks, sms_messages, token_of

TYPO = "elodie.durand@exemple.fr"


def browser(user: Any) -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE="fr")
    client.force_login(user)
    return client


def api(user: Any) -> Client:
    _token, raw = create_token(user, "test")
    return Client(HTTP_AUTHORIZATION=f"Bearer {raw}", HTTP_ACCEPT_LANGUAGE="fr")


def doctor() -> Any:
    return make_user(make_organisation("Cabinet des Lilas"), first_name="Jeanne", last_name="Martin")


def stored(share: PatientShare, column: str) -> bytes:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM pli_patient_share WHERE id = %s", [share.pk.hex])  # noqa: S608
        row = cursor.fetchone()
    if row is None:  # PostgreSQL keeps the uuid as such
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {column} FROM pli_patient_share WHERE id = %s", [share.pk])  # noqa: S608
            row = cursor.fetchone()
    return bytes(row[0])


def test_a_mistyped_address_is_corrected_and_the_link_sent_again(db: None, smtp_server: Any) -> None:
    smtp_server.refuse_rcpt = "550 5.1.1 No such user"
    share, first_token = make_share(doctor(), mobile=None, email=TYPO)
    run_tasks()
    client = browser(share.created_by)
    page = client.get(f"/shares/{share.pk}").content.decode()
    assert "Corriger la date de naissance ou les coordonnées du patient" in page and 'name="patient_email"' in page
    smtp_server.refuse_rcpt = None
    marker = f"elodie.durand.{uuid.uuid4().hex[:8]}@example.org"
    response = client.post(
        f"/shares/{share.pk}/resend", {"contacts": "1", "patient_email": marker, "patient_mobile": ""}, follow=True
    )
    assert response.status_code == 200
    assert "Les coordonnées du patient sont corrigées" in response.content.decode()
    run_tasks()
    (mail,) = smtp_server.wait_for(1)
    assert mail.recipients == [marker]
    new_token = link_token(mail.body)
    # The documents are the same share's; the earlier link no longer opens it.
    assert PatientShare.objects.count() == 1
    assert Patient(first_token).get().status_code == 404
    assert Patient(new_token).get().status_code == 200
    share.refresh_from_db()
    assert share.patient_email == marker and share.patient_mobile is None
    # Sealed at rest like the original, under the share's key.
    assert marker.encode() not in stored(share, "patient_email")
    # Audited: which contact changed, never its value.
    event = AuditEvent.objects.filter(action="share.resent").get()
    assert event.details == {"channels": "email", "changed": "email"} and event.actor_id == str(share.created_by.pk)
    assert marker not in str(AuditEvent.objects.values_list("details", flat=True))
    history = client.get(f"/shares/{share.pk}").content.decode()
    assert "coordonnées corrigées, nouveau lien envoyé" in history
    assert "data-failure" not in history  # the failure was about the former address


def test_a_corrected_mobile_gets_the_codes_again(db: None) -> None:
    """The code went by e-mail once an SMS to the number failed for good: after the number
    is corrected, the code goes to the new one by SMS again."""
    share, token = make_share(doctor(), mobile="+33612345678")
    run_tasks()  # the link, by e-mail
    # The code SMS is refused for good: the next code would go by e-mail.
    assert Patient(token).birth_date()["Location"].endswith("?sent=sms")
    share.notifications.filter(channel="sms").update(state=ShareNotification.State.FAILED, last_error="number:x")
    assert Patient(token).birth_date()["Location"].endswith("?sent=email")
    browser(share.created_by).post(
        f"/shares/{share.pk}/resend",
        {"contacts": "1", "patient_mobile": "06 98 76 54 32", "patient_email": share.patient_email},
    )
    share.refresh_from_db()
    assert share.patient_mobile == "+33698765432"
    patient = Patient(token_of(share))
    assert patient.sign_in(to="+33698765432").status_code == 200
    assert last_code("+33698765432")


def test_refused_corrections_are_said_next_to_the_field_and_change_nothing(db: None) -> None:
    share, token = make_share(doctor())
    client = browser(share.created_by)
    bad = client.post(
        f"/shares/{share.pk}/resend", {"contacts": "1", "patient_mobile": "01 23 45 67 89", "patient_email": ""}
    )
    assert bad.status_code == 400
    text = bad.content.decode()
    assert "Rien n\u2019a été envoyé" in text or "Rien n'a été envoyé" in text
    assert 'id="id_patient_mobile_error"' in text and "autofocus" in text
    empty = client.post(f"/shares/{share.pk}/resend", {"contacts": "1", "patient_mobile": "", "patient_email": ""})
    assert empty.status_code == 400 and "Indiquez le numéro de mobile" in empty.content.decode()
    share.refresh_from_db()
    assert share.patient_mobile == "+33612345678" and token_of(share) == token
    assert not AuditEvent.objects.filter(action="share.resent").exists()


def test_only_whoever_may_act_on_the_share_corrects_it(db: None) -> None:
    share, _token = make_share(doctor())
    other = browser(make_user(make_organisation("Autre cabinet")))
    fields = {"contacts": "1", "patient_mobile": "06 98 76 54 32", "patient_email": ""}
    assert other.post(f"/shares/{share.pk}/resend", fields).status_code == 404
    assert other.post(f"/shares/{share.pk}/resend", {**fields, "patient_mobile": "x"}).status_code == 404
    assert api(make_user()).post(f"/api/v1/shares/{share.pk}/resend", {"patient_mobile": "0698765432"}).status_code == (
        404
    )
    share.refresh_from_db()
    assert share.patient_mobile == "+33612345678"


def test_a_revoked_share_keeps_its_contacts(db: None) -> None:
    share, _token = make_share(doctor())
    services.revoke(share.created_by, share.pk)
    fields = {"contacts": "1", "patient_mobile": "06 98 76 54 32", "patient_email": ""}
    page = browser(share.created_by).post(f"/shares/{share.pk}/resend", fields, follow=True).content.decode()
    assert "Cet envoi a été révoqué" in page
    # Even with a mistyped correction: the page no longer has the form to show it in.
    typo = browser(share.created_by).post(f"/shares/{share.pk}/resend", {**fields, "patient_mobile": "x"}, follow=True)
    assert typo.redirect_chain and "Cet envoi a été révoqué" in typo.content.decode()
    refused = api(share.created_by).post(
        f"/api/v1/shares/{share.pk}/resend", {"patient_mobile": "0698765432"}, content_type="application/json"
    )
    assert refused.status_code == 409 and "révoqué" in refused.json()["detail"]
    share.refresh_from_db()
    assert share.patient_mobile == "+33612345678"


def test_a_locked_share_is_corrected_unlocked_and_sent_again(db: None) -> None:
    share, token = make_share(doctor())
    for _ in range(5):
        Patient(token).birth_date("02/02/2002")
    client = browser(share.created_by)
    page = client.get(f"/shares/{share.pk}").content.decode()
    assert "Enregistrer, déverrouiller et envoyer un nouveau lien" in page
    client.post(
        f"/shares/{share.pk}/unlock",
        {"contacts": "1", "resend": "1", "patient_mobile": "06 98 76 54 32", "patient_email": ""},
    )
    share.refresh_from_db()
    assert share.status == Status.SENT and share.patient_mobile == "+33698765432" and share.patient_email is None
    run_tasks()
    assert [m["to"] for m in sms_messages() if "/p/" in m["text"]][-1] == "+33698765432"


def test_the_api_corrects_the_contacts_it_is_given(db: None) -> None:
    share, first_token = make_share(doctor())
    client = api(share.created_by)
    response = client.post(
        f"/api/v1/shares/{share.pk}/resend", {"patient_mobile": "06 98 76 54 32"}, content_type="application/json"
    )
    assert response.status_code == 200, response.content
    assert [e["type"] for e in response.json()["events"]][-1] == "resent"
    share.refresh_from_db()
    # Only what was given changes.
    assert share.patient_mobile == "+33698765432" and share.patient_email == "patient@example.org"
    assert Patient(first_token).get().status_code == 404
    # Checked as at creation, field by field.
    bad = client.post(f"/api/v1/shares/{share.pk}/resend", {"patient_email": "pas une adresse"})
    assert bad.status_code == 400 and set(bad.json()) == {"patient_email"}
    # Without any contact left: refused, naming the fields.
    client.post(f"/api/v1/shares/{share.pk}/resend", {"patient_email": ""})
    none_left = client.post(f"/api/v1/shares/{share.pk}/resend", {"patient_mobile": ""})
    assert none_left.status_code == 400 and set(none_left.json()) == {"patient_mobile"}
    share.refresh_from_db()
    assert share.patient_mobile == "+33698765432" and share.patient_email is None
    # Without fields, a resend as before.
    assert client.post(f"/api/v1/shares/{share.pk}/resend").status_code == 200


def test_a_contact_given_twice_is_refused_not_half_taken(db: None) -> None:
    share, _token = make_share(doctor())
    response = api(share.created_by).post(
        f"/api/v1/shares/{share.pk}/resend", {"patient_email": ["a@example.org", "b@example.org"]}
    )
    assert response.status_code == 400 and set(response.json()) == {"patient_email"}
    share.refresh_from_db()
    assert share.patient_email == "patient@example.org"


def test_a_number_removed_is_no_longer_said_to_be_refused(db: None, smtp_server: Any) -> None:
    """The link SMS failed for good (the number refused); the GP removes the number and gives
    the e-mail address: the page no longer asks her to correct a number the share no longer
    has."""
    share, _token = make_share(doctor(), email=None)
    share.notifications.filter(channel="sms").update(state=ShareNotification.State.FAILED, last_error="number:x")
    client = browser(share.created_by)
    assert 'data-failure="' in client.get(f"/shares/{share.pk}").content.decode()
    client.post(
        f"/shares/{share.pk}/resend", {"contacts": "1", "patient_mobile": "", "patient_email": "patient@example.org"}
    )
    run_tasks()
    assert smtp_server.wait_for(1)
    assert "data-failure" not in client.get(f"/shares/{share.pk}").content.decode()


def test_a_code_asked_for_as_the_contacts_are_corrected_goes_to_the_new_ones(db: None, monkeypatch: Any) -> None:
    """The birth date step prepares its code before it takes the share's lock, from the
    contacts as they were: a correction committed in between must not send the code to the
    number just corrected away (a stranger's, when it was mistyped)."""
    share, _token = make_share(doctor(), mobile="+33612345678", email=None)
    run_tasks()
    read_share = services._read_share

    def corrected_meanwhile(share_id: uuid.UUID) -> PatientShare:
        unlocked = read_share(share_id)
        services.resend(share.created_by, share_id, corrections={"mobile": "+33698765432"})
        return unlocked

    monkeypatch.setattr(services, "_read_share", corrected_meanwhile)
    result = services.check_birth_date(share.pk, share.patient_birth_date, session_key=None)
    assert result.outcome == "ok"
    run_tasks()
    codes = [m["to"] for m in sms_messages() if m["text"].startswith("Votre code")]
    assert codes == ["+33698765432"], sms_messages()


def test_a_null_contact_is_refused_not_taken_as_a_removal(db: None) -> None:
    """Much JSON software writes a field it has no value for as null: correcting the mobile
    alone, with ``"patient_email": null`` beside it, removed the patient's e-mail address,
    where the schema says a contact is text (empty to remove it) or left out."""
    share, _token = make_share(doctor())
    response = api(share.created_by).post(
        f"/api/v1/shares/{share.pk}/resend",
        {"patient_mobile": "06 98 76 54 32", "patient_email": None},
        content_type="application/json",
    )
    assert response.status_code == 400 and set(response.json()) == {"patient_email"}
    assert "vide pour la retirer" in response.json()["patient_email"][0]
    share.refresh_from_db()
    assert share.patient_email == "patient@example.org" and share.patient_mobile != "+33698765432"
    assert not AuditEvent.objects.filter(action="share.resent").exists()


def test_a_resend_body_that_is_not_an_object_is_refused(db: None) -> None:
    """A JSON body that is not an object (contacts wrapped in a list, say) was ignored: the
    new link went to the contacts the software meant to correct."""
    share, _token = make_share(doctor())
    client = api(share.created_by)
    for body in ('[{"patient_email": "elodie.durand@example.fr"}]', '"elodie.durand@example.fr"', "null"):
        response = client.post(f"/api/v1/shares/{share.pk}/resend", body, content_type="application/json")
        assert response.status_code == 400, body
        assert list(response.json()) == ["detail"]
        if body.startswith("["):
            assert response.json()["detail"] == (
                "Données non valides\u00a0: envoyez les champs dans un objet JSON (reçu\u00a0: list)."
            )
    assert not AuditEvent.objects.filter(action="share.resent").exists()
    # Without a body, or an empty object, a resend as before.
    assert client.post(f"/api/v1/shares/{share.pk}/resend", {}, content_type="application/json").status_code == 200
    assert client.post(f"/api/v1/shares/{share.pk}/resend").status_code == 200


def test_a_contact_that_is_not_text_is_refused(db: None) -> None:
    """An empty list or object was taken as an empty value too: the contact was removed."""
    share, _token = make_share(doctor())
    client = api(share.created_by)
    for value in ([], {}, [""], True):
        response = client.post(
            f"/api/v1/shares/{share.pk}/resend",
            {"patient_mobile": "06 98 76 54 32", "patient_email": value},
            content_type="application/json",
        )
        assert response.status_code == 400 and set(response.json()) == {"patient_email"}, value
    share.refresh_from_db()
    assert share.patient_email == "patient@example.org"
    assert not AuditEvent.objects.filter(action="share.resent").exists()


def test_a_link_email_refused_for_good_is_followed_by_links_by_sms(db: None, smtp_server: Any) -> None:
    """With an address and a mobile the link goes by e-mail only: once the patient's mail
    server refused the address, a new link (the practitioner's, or the 5-day reminder) goes
    to the mobile, not to the address known to be wrong; a corrected address gets it again."""
    smtp_server.refuse_rcpt = "550 5.1.1 No such user"
    share, _first = make_share(doctor(), email=TYPO, mobile="+33612345678")
    run_tasks()
    assert share.notifications.get().state == ShareNotification.State.FAILED
    client = browser(share.created_by)
    client.post(f"/shares/{share.pk}/resend")
    run_tasks()
    resent = share.notifications.filter(kind=ShareNotification.Kind.LINK).order_by("created_at").last()
    assert resent is not None and (resent.channel, resent.state) == ("sms", ShareNotification.State.SENT)
    new_token = link_token(sms_messages()[-1]["text"])
    assert Patient(new_token).get().status_code == 200
    assert AuditEvent.objects.filter(action="share.resent").get().details == {"channels": "sms"}
    # The reminder too.
    share.refresh_from_db()
    now = timezone.now() + 5 * datetime.timedelta(days=1) + datetime.timedelta(minutes=1)
    PatientShare.objects.filter(pk=share.pk).update(link_sent_at=now - 6 * datetime.timedelta(days=1))
    assert services.send_due_reminders(now) == 1
    assert share.notifications.get(kind=ShareNotification.Kind.REMINDER).channel == "sms"
    # The address corrected: the link goes to it again, by e-mail.
    smtp_server.refuse_rcpt = None
    marker = f"elodie.durand.{uuid.uuid4().hex[:8]}@example.org"
    client.post(
        f"/shares/{share.pk}/resend", {"contacts": "1", "patient_email": marker, "patient_mobile": "0612345678"}
    )
    run_tasks()
    assert [mail.recipients for mail in smtp_server.wait_for(1)] == [[marker]]


def test_a_new_link_says_where_the_code_will_really_go(db: None, smtp_server: Any) -> None:
    """The codes go by e-mail once an SMS to the number failed for good: a new link's e-mail
    no longer tells the patient to expect the code by SMS. Once the number is corrected, it
    does again."""
    share, token = make_share(doctor(), mobile="+33612345678")
    run_tasks()
    assert "par SMS" in smtp_server.wait_for(1)[0].body
    Patient(token).birth_date()
    share.notifications.filter(channel="sms").update(state=ShareNotification.State.FAILED, last_error="number:x")
    client = browser(share.created_by)
    client.post(f"/shares/{share.pk}/resend")
    run_tasks()
    body = smtp_server.wait_for(2)[-1].body
    assert "un code envoyé par e-mail" in body and "SMS" not in body
    client.post(
        f"/shares/{share.pk}/resend",
        {"contacts": "1", "patient_mobile": "06 98 76 54 32", "patient_email": share.patient_email},
    )
    run_tasks()
    assert "par SMS" in smtp_server.wait_for(3)[-1].body
