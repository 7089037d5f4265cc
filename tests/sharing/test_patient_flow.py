"""The patient's path through /p/<token>: birth date, one-time code, documents, and every
way of getting it wrong."""

from __future__ import annotations

import datetime
import hashlib
import re
from typing import Any

import pytest
from django.db.models import F
from django.test import Client
from django.utils import timezone

from pli.audit.models import AuditEvent
from pli.core import keys
from pli.core.models import PurposeKey
from pli.sharing import services, tokens
from pli.sharing.models import OneTimeCode, PatientSession, PatientShare, Status
from pli.testing.accounts import make_user
from sharing.helpers import (
    BIRTH_DATE,
    EMAIL,
    MOBILE,
    Patient,
    code_in,
    last_code,
    make_share,
    pdf_bytes,
    pending_document,
    run_tasks,
    sms_messages,
    token_of,
)


def counters(share: PatientShare) -> tuple[Any, ...]:
    share.refresh_from_db()
    codes = list(OneTimeCode.objects.filter(share=share).values_list("attempts", "used_at", "retired"))
    return (share.status, share.progress, share.birth_date_failures, share.code_failures, share.open_count, codes)


def test_whole_path_by_sms(db: None) -> None:
    content = pdf_bytes("compte-rendu")
    share, token = make_share(documents=[pending_document("compte-rendu.pdf", content)])
    patient = Patient(token)

    page = patient.get()
    assert page.status_code == 200
    assert 'name="birth_date"' in page.content.decode()
    assert share.created_by.display_name in page.content.decode()

    response = patient.birth_date("15/02/1984")
    assert response.status_code == 303
    assert response["Location"] == f"/p/{token}/code?sent=sms"
    run_tasks()
    code = last_code()
    code_page = patient.get("/code?sent=sms")
    assert 'name="code"' in code_page.content.decode()

    response = patient.code(code)
    assert response.status_code == 303
    documents = patient.get("/documents")
    assert documents.status_code == 200
    html = documents.content.decode()
    assert "compte-rendu.pdf" in html
    assert "Voici vos résultats." in html
    assert "compte-rendu.pdf (s\u2019ouvre dans un nouvel onglet)</span>" in html  # said before it happens
    share.refresh_from_db()
    assert share.status == Status.OPENED

    document = share.documents.get()
    viewed = patient.get(f"/documents/{document.pk}/view")
    assert viewed.status_code == 200
    assert viewed["Content-Type"] == "application/pdf"
    assert viewed["Content-Security-Policy"].startswith("sandbox")
    assert viewed["Content-Disposition"].startswith("inline")
    assert b"".join(viewed.streaming_content) == content
    downloaded = patient.get(f"/documents/{document.pk}/download")
    assert downloaded["Content-Disposition"].startswith("attachment")
    assert b"".join(downloaded.streaming_content) == content
    share.refresh_from_db()
    assert share.status == Status.DOWNLOADED
    assert share.download_count == 2

    history = patient.get("/documents").content.decode()
    assert "compte-rendu.pdf" in history  # the patient sees when each document was opened
    types = [e.type for e in services.events(share)]
    assert {"created", "birth_date_confirmed", "code_sent", "opened", "viewed", "downloaded"} <= set(types)


def test_the_history_lists_the_latest_accesses_and_counts_the_earlier_ones(
    db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("pli.sharing.patient.HISTORY_SHOWN", 3)
    share, token = make_share(documents=[pending_document("echographie.pdf", pdf_bytes())])
    patient = Patient(token)
    first = patient.sign_in().content.decode()
    assert "accès plus ancien" not in first  # nothing left out yet
    document = share.documents.get()
    patient.get(f"/documents/{document.pk}/view")
    for _ in range(4):
        patient.get(f"/documents/{document.pk}/download")

    html = patient.get("/documents").content.decode()
    listed = re.findall(r"<li><time[^>]*>[^<]*</time> —\s*([^<]*?)</li>", html)
    assert listed == ["téléchargé\u00a0: echographie.pdf"] * 3  # the latest three, oldest first
    accesses = AuditEvent.objects.filter(target_id=str(share.pk), action__in=services.PATIENT_HISTORY_ACTIONS)
    assert accesses.count() == 6  # opened, viewed, downloaded four times
    assert "3 accès plus anciens ne sont pas listés\u00a0: voici les derniers." in html


def test_iso_birth_date_and_code_by_email_without_mobile(db: None, mailoutbox: list[Any]) -> None:
    _share, token = make_share(mobile=None)
    patient = Patient(token)
    response = patient.birth_date("1984-02-15")
    assert response["Location"].endswith("?sent=email")
    run_tasks()
    assert sms_messages() == []
    code_mail = [m for m in mailoutbox if "code" in m.subject.lower()]
    assert len(code_mail) == 1 and code_mail[0].to == [EMAIL]
    assert patient.code(code_in(code_mail[0].body)).status_code == 303
    assert patient.get("/documents").status_code == 200


def test_get_never_changes_anything(db: None) -> None:
    share, token = make_share()
    patient = Patient(token)
    before = counters(share)
    events = AuditEvent.objects.count()
    for _ in range(5):
        assert patient.get().status_code == 200
        assert patient.get("/code").status_code in (302, 303)
        assert patient.get("/documents").status_code in (302, 303)
    assert counters(share) == before
    assert AuditEvent.objects.count() == events
    # Even mid-way (birth date given, code pending), GETs change nothing.
    patient.birth_date()
    before = counters(share)
    for _ in range(5):
        patient.get("/code")
        patient.get()
    assert counters(share) == before


def test_a_get_of_a_steps_address_takes_no_step(db: None) -> None:
    """Mail scanners and link previews follow every link they find, with GET: the steps
    (a new code, leaving, replying) answer a GET with 405 and change nothing."""
    share, token = make_share(allow_reply=True)
    patient = Patient(token)
    assert patient.birth_date().status_code == 303
    before = counters(share)
    events = AuditEvent.objects.count()
    for suffix in ("/code/new", "/code/new?channel=email", "/leave", "/reply"):
        assert patient.get(suffix).status_code == 405, suffix
    assert counters(share) == before
    assert AuditEvent.objects.count() == events
    assert PatientSession.objects.filter(share=share, ended_at__isnull=True).count() == 1


def test_wrong_birth_dates_lock_after_five(db: None) -> None:
    share, token = make_share()
    patient = Patient(token)
    for attempt in range(1, 5):
        response = patient.birth_date("16/02/1984")
        assert response.status_code == 400
        assert 'aria-invalid="true"' in response.content.decode()
        share.refresh_from_db()
        assert share.birth_date_failures == attempt and share.status == Status.SENT
    response = patient.birth_date("16/02/1984")
    assert response.status_code == 403
    share.refresh_from_db()
    assert share.status == Status.LOCKED and share.lock_reason == "birth_date"
    # Locked: even the right birth date is refused, and the page says whom to contact.
    response = patient.birth_date("15/02/1984")
    assert response.status_code == 403
    assert share.created_by.display_name in response.content.decode()
    assert OneTimeCode.objects.filter(share=share).count() == 0
    # Opening the link again says so at once, rather than asking for the birth date.
    page = patient.get()
    assert page.status_code == 403 and 'name="birth_date"' not in page.content.decode()


def test_a_locked_or_withdrawn_link_gives_the_practice_s_telephone(db: None) -> None:
    """« Contact the sender » and only a name: an elderly patient locked out was stuck."""
    share, token = make_share()
    organisation = share.organisation
    assert organisation is not None
    organisation.phone = "+33478123456"
    organisation.save(update_fields=["phone"])
    patient = Patient(token)
    for _ in range(5):
        patient.birth_date("16/02/1984")
    page = patient.get().content.decode()
    assert 'Téléphone\u00a0: <a href="tel:+33478123456">04 78 12 34 56</a>' in page
    services.revoke(share.created_by, share.pk)
    assert 'href="tel:+33478123456"' in patient.get().content.decode()
    # Never in what reaches the patient's phone or mailbox.
    texts = " ".join(n.text or "" for n in share.notifications.all())
    assert "78 12 34 56" not in texts and "478123456" not in texts


def test_malformed_birth_date_is_a_form_error_not_an_attempt(db: None) -> None:
    share, token = make_share()
    response = Patient(token).birth_date("le quinze février")
    assert response.status_code == 400
    share.refresh_from_db()
    assert share.birth_date_failures == 0
    # Sent empty: the patient's own words, not Django's « Ce champ est obligatoire. »
    empty = Patient(token).birth_date("").content.decode()
    assert "Saisissez votre date de naissance." in empty and "Ce champ est obligatoire" not in empty
    share.refresh_from_db()
    assert share.birth_date_failures == 0


def test_wrong_codes_lock_after_three(db: None) -> None:
    share, token = make_share()
    patient = Patient(token)
    patient.birth_date()
    run_tasks()
    right = last_code()
    wrong = f"{(int(right) + 1) % 10**6:06d}"
    for attempt in (1, 2):
        assert patient.code(wrong).status_code == 400
        assert OneTimeCode.objects.get(share=share).attempts == attempt
    assert patient.code(wrong).status_code == 403
    share.refresh_from_db()
    assert share.status == Status.LOCKED and share.lock_reason == "code"
    assert patient.code(right).status_code == 403


def test_after_a_wrong_code_the_field_is_empty_focused_and_the_channel_still_said(db: None) -> None:
    _share, token = make_share()
    patient = Patient(token)
    sent = patient.birth_date()
    run_tasks()
    right = last_code()
    wrong = f"{(int(right) + 1) % 10**6:06d}"
    response = patient.client.post(sent["Location"], {"code": wrong})
    assert response.status_code == 400
    html = response.content.decode()
    code_input = re.search(r"<input[^>]*name=\"code\"[^>]*>", html)
    assert code_input is not None
    assert wrong not in code_input.group(0) and "autofocus" in code_input.group(0)
    assert "Le dernier code a été envoyé par SMS au +33\u00a06\u00a0••\u00a0••\u00a0••\u00a078" in html


def test_an_expired_code_is_not_said_to_have_just_been_sent(db: None, mailoutbox: list[Any]) -> None:
    """The code page, refused, said both « a code has just been sent… valid 10 minutes »
    and « this code has expired »: which to believe? It says where the last code went."""
    share, token = make_share(mobile=None)
    patient = Patient(token)
    sent = patient.birth_date()
    run_tasks()
    OneTimeCode.objects.filter(share=share).update(expires_at=timezone.now() - datetime.timedelta(seconds=1))
    (code_mail,) = [m for m in mailoutbox if "code" in m.subject.lower()]
    response = patient.client.post(sent["Location"], {"code": code_in(code_mail.body)})
    assert response.status_code == 400
    html = response.content.decode()
    assert "Ce code a expiré" in html and "vient d\u2019être envoyé" not in html
    assert "Le dernier code a été envoyé à votre adresse e-mail." in html


def test_a_refused_birth_date_keeps_the_focus_on_its_field(db: None) -> None:
    _share, token = make_share()
    html = Patient(token).birth_date("le quinze février").content.decode()
    birth_date = re.search(r"<input[^>]*name=\"birth_date\"[^>]*>", html)
    assert birth_date is not None and "autofocus" in birth_date.group(0)


def test_expired_code_is_refused_and_counted(db: None) -> None:
    share, token = make_share()
    patient = Patient(token)
    patient.birth_date()
    run_tasks()
    code = last_code()
    OneTimeCode.objects.filter(share=share).update(expires_at=timezone.now() - datetime.timedelta(seconds=1))
    response = patient.code(code)
    assert response.status_code == 400
    assert OneTimeCode.objects.get(share=share).attempts == 1
    share.refresh_from_db()
    assert share.code_failures == 1 and share.status == Status.SENT


def test_replayed_code_is_refused_and_counted(db: None) -> None:
    share, token = make_share()
    first = Patient(token)
    first.birth_date()
    run_tasks()
    code = last_code()
    assert first.code(code).status_code == 303
    # Someone else, who also knows the birth date, replays the same code.
    second = Patient(token)
    second.birth_date()
    response = second.code(code)
    assert response.status_code == 400
    share.refresh_from_db()
    assert share.code_failures == 1


def test_a_code_seen_once_used_opens_nothing_for_another_session(db: None) -> None:
    """Someone who knows the birth date waits on a session of their own and reads the code
    over the patient's shoulder once the patient has used it: the latest code, used."""
    share, token = make_share()
    intruder = Patient(token)
    assert intruder.birth_date().status_code == 303
    patient = Patient(token)
    assert patient.sign_in().status_code == 200
    used = last_code()
    assert intruder.code(used).status_code == 400
    assert intruder.get("/documents").status_code == 303
    share.refresh_from_db()
    assert share.code_failures == 1 and share.open_count == 1


def test_code_of_another_share_is_refused_and_counted(db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    # Two different codes, whatever the draw: equal random codes would prove nothing.
    monkeypatch.setattr(tokens, "new_code", iter(["314159", "271828"]).__next__)
    doctor = make_user()
    share_a, token_a = make_share(doctor)
    _share_b, token_b = make_share(doctor, mobile="+33698765432")
    a, b = Patient(token_a), Patient(token_b)
    a.birth_date()
    b.birth_date()
    run_tasks()
    code_b = last_code("+33698765432")
    code_a = last_code(MOBILE)
    assert code_a != code_b
    assert a.code(code_b).status_code == 400
    share_a.refresh_from_db()
    assert share_a.code_failures == 1
    assert OneTimeCode.objects.get(share=share_a).attempts == 1


def test_a_code_hash_is_bound_to_its_share(db: None) -> None:
    """The same six digits sent for two shares are kept as two unrelated hashes."""
    doctor = make_user()
    share_a, _token_a = make_share(doctor)
    share_b, _token_b = make_share(doctor)
    assert tokens.code_hash(share_a.pk, "123456") == tokens.code_hash(share_a.pk, "123456")
    assert tokens.code_hash(share_a.pk, "123456") != tokens.code_hash(share_b.pk, "123456")


def test_the_link_is_stored_as_a_hash_keyed_by_the_instance(db: None) -> None:
    """A copy of the database cannot even test a guessed token: the hash is keyed by a
    secret of the instance (wrapped by the master key), not a plain digest."""
    share, token = make_share()
    assert token not in share.token_hash
    assert share.token_hash != hashlib.sha256(token.encode()).hexdigest()
    assert services.find_share(token) == share
    # Under another instance's key, the same token opens nothing.
    PurposeKey.objects.filter(name="share-token").delete()
    keys.reset()
    assert tokens.token_hash(token) != share.token_hash
    assert services.find_share(token) is None


def test_guessed_token_is_refused_counted_and_reveals_nothing(db: None) -> None:
    make_share()
    guess = "A" * 43
    before = AuditEvent.objects.filter(action="share.access_denied").count()
    page = Patient(guess).get()
    post = Patient(guess).birth_date()
    assert page.status_code == post.status_code == 404
    assert AuditEvent.objects.filter(action="share.access_denied").count() == before + 2
    # Malformed tokens get the same page.
    assert Patient("short").get().status_code == 404
    assert without_csrf(page.content) == without_csrf(post.content)


def without_csrf(html: bytes) -> bytes:
    return re.sub(rb'name="csrfmiddlewaretoken" value="[^"]*"', b"", html)


def _age_codes(share: PatientShare, seconds: int = 31) -> None:
    """As if the codes (and the share's counting window) had started ``seconds`` earlier:
    past the resend cool-down, still within the hour."""
    earlier = datetime.timedelta(seconds=seconds)
    OneTimeCode.objects.filter(share=share).update(created_at=F("created_at") - earlier)
    PatientShare.objects.filter(pk=share.pk).update(counters_reset_at=F("counters_reset_at") - earlier)


def _five_codes_sent() -> tuple[PatientShare, Patient]:
    """A share whose patient gave the birth date and asked for four more codes, each past
    the resend cool-down: the hour's five."""
    share, token = make_share()
    patient = Patient(token)
    assert patient.birth_date().status_code == 303
    for _ in range(4):
        _age_codes(share)
        assert patient.new_code().status_code == 303
    return share, patient


def test_switching_channels_back_and_forth_waits_like_asking_again(db: None) -> None:
    """An impatient patient tapping "by e-mail", "by SMS", "by e-mail"... used to spend the
    hourly allowance in seconds and lock the share."""
    share, token = make_share()
    patient = Patient(token)
    assert patient.birth_date().status_code == 303  # a code by SMS
    assert patient.new_code(channel="email").status_code == 303  # the other channel: at once
    back = patient.new_code(channel="sms")
    assert back.status_code == 303 and "wait=" in back["Location"]
    assert "wait=" in patient.new_code(channel="email")["Location"]
    assert OneTimeCode.objects.filter(share=share).count() == 2
    share.refresh_from_db()
    assert share.status == Status.SENT
    # One code every 30 seconds from then on, whichever the channel: the five codes of the
    # hour last two minutes of switching, not a few seconds.
    for channel, count in (("sms", 3), ("email", 4)):
        _age_codes(share)
        assert "wait=" not in patient.new_code(channel=channel)["Location"]
        assert "wait=" in patient.new_code(channel="email" if channel == "sms" else "sms")["Location"]
        assert OneTimeCode.objects.filter(share=share).count() == count


def test_an_address_refused_for_good_is_no_longer_offered_for_the_code(db: None) -> None:
    """Once the patient's mail server refused the address for good, the code page still
    offered « L\u2019envoyer plutôt par e-mail », and the code went to that address, never
    to arrive."""
    share, token = make_share()
    share.notifications.filter(channel="email").update(state="failed", last_error="smtp:recipient_refused")
    patient = Patient(token)
    response = patient.birth_date()
    assert response.status_code == 303 and response["Location"].endswith("?sent=sms")
    page = patient.get("/code?sent=sms").content.decode()
    assert "L\u2019envoyer plutôt par e-mail" not in page
    asked = patient.new_code(channel="email")  # an older page, or a form sent by hand
    assert asked.status_code == 303 and "sent=sms" in asked["Location"]
    assert set(OneTimeCode.objects.filter(share=share).values_list("channel", flat=True)) == {"sms"}
    # Another failure (a full mailbox, the relay down) does not take the e-mail away.
    share.notifications.filter(channel="email").update(last_error="smtp:552")
    assert "L\u2019envoyer plutôt par e-mail" in patient.get("/code?sent=sms").content.decode()


def test_codes_per_hour_limit_locks(db: None) -> None:
    share, patient = _five_codes_sent()
    _age_codes(share)
    assert OneTimeCode.objects.filter(share=share).count() == 5
    locked = patient.new_code()
    assert locked.status_code == 403
    share.refresh_from_db()
    assert share.status == Status.LOCKED and share.lock_reason == "codes_sent"
    # Codes asked for (each may have opened the documents) are no failed attempts: the
    # page said « après plusieurs tentatives infructueuses » to a patient who made none.
    page = locked.content.decode()
    assert "trop de codes ont été demandés en une heure" in page
    assert "infructueuses" not in page


def test_codes_older_than_an_hour_no_longer_count(db: None) -> None:
    share, patient = _five_codes_sent()
    # The hour's five codes, an hour and a minute ago: a sixth is sent, nothing locks.
    _age_codes(share, 3600 + 60)
    assert patient.new_code().status_code == 303
    assert OneTimeCode.objects.filter(share=share).count() == 6
    share.refresh_from_db()
    assert share.status == Status.SENT


def test_unlocking_a_share_locked_by_its_codes_lets_a_code_through_at_once(db: None) -> None:
    """The codes that locked it are what the practitioner lifted: they no longer count."""
    share, patient = _five_codes_sent()
    _age_codes(share)
    assert patient.new_code().status_code == 403
    share.refresh_from_db()
    assert share.lock_reason == "codes_sent"
    services.unlock(share.created_by, share.pk)
    assert patient.sign_in().status_code == 200
    share.refresh_from_db()
    assert share.status == Status.OPENED


def test_a_second_code_asked_for_at_once_is_not_sent(db: None) -> None:
    """The first code is probably on its way: a second one would retire it and count
    towards the hourly limit."""
    share, token = make_share()
    patient = Patient(token)
    patient.birth_date()
    response = patient.new_code()
    # Redirected, so that a reload never posts again; the page says how long to wait.
    assert response.status_code == 303 and "wait=" in response["Location"]
    page = patient.client.get(response["Location"]).content.decode()
    # Focused, since nothing else on the page changed: a screen reader reads why no code came.
    assert re.search(
        r'<p class="errorlist" role="alert" tabindex="-1" autofocus>Un code vient de partir[^<]*'
        r"Vous pourrez en demander un autre dans \d+ secondes\.</p>",
        page,
    ), page
    # And the page does not say a code « has just been sent »: none was.
    assert "vient d\u2019être envoyé" not in page
    assert "Le dernier code a été envoyé par SMS au" in page
    assert OneTimeCode.objects.filter(share=share).count() == 1
    share.refresh_from_db()
    assert share.status == Status.SENT
    # The other channel is a deliberate choice: no wait.
    assert patient.new_code(channel="email").status_code == 303
    _age_codes(share)
    assert patient.new_code(channel="email").status_code == 303
    assert OneTimeCode.objects.filter(share=share).count() == 3


def test_the_birth_date_given_again_at_once_sends_no_second_code(db: None) -> None:
    """The back button, then "Continue" again: the first code is still on its way."""
    share, token = make_share()
    patient = Patient(token)
    assert patient.birth_date().status_code == 303
    again = patient.birth_date()
    assert again.status_code == 303 and "/code" in again["Location"]
    assert OneTimeCode.objects.filter(share=share).count() == 1
    run_tasks()
    assert patient.code(last_code()).status_code == 303
    # Another browser, once that code is used, is given a code of its own.
    assert Patient(token).birth_date().status_code == 303
    assert OneTimeCode.objects.filter(share=share).count() == 2


def test_a_double_tap_on_a_first_visit_sends_one_code(db: None) -> None:
    """Both requests of a double tap come without a cookie: two sessions, one code."""
    share, token = make_share()
    first, second = Patient(token), Patient(token)
    assert first.birth_date().status_code == 303
    assert second.birth_date().status_code == 303
    assert OneTimeCode.objects.filter(share=share).count() == 1
    run_tasks()
    codes = [m for m in sms_messages() if m["to"] == MOBILE and "/p/" not in m["text"]]
    assert len(codes) == 1
    # The browser keeps whichever session it was given last: the code opens it.
    assert second.code(last_code()).status_code == 303
    assert second.client.get(f"/p/{token}/documents").status_code == 200


def _opened_keeping_the_earlier_key(patient: Patient) -> tuple[str, str]:
    """The patient gives the birth date, then the code, which opens the documents: the code,
    and the key the browser held before the code's answer replaced it (what a second tap,
    sent before that answer arrived, comes with)."""
    assert patient.birth_date().status_code == 303
    run_tasks()
    code = last_code()
    before = patient.client.cookies["pli_patient"].value
    assert patient.code(code)["Location"] == f"/p/{patient.token}/documents"
    return code, before


def test_a_double_tap_on_the_code_lands_on_the_documents_without_a_failure(db: None) -> None:
    """« Valider » tapped twice with the right code: the second request comes with the cookie
    as it was before the first answer set the new key (the browser dropped that answer)."""
    share, token = make_share()
    patient = Patient(token)
    code, before = _opened_keeping_the_earlier_key(patient)
    patient.client.cookies["pli_patient"] = before
    again = patient.code(code)
    assert again.status_code == 303 and again["Location"] == f"/p/{token}/documents"
    assert again.cookies["pli_patient"].value != before
    assert patient.get("/documents").status_code == 200
    # The answer the browser did take: the key set by the first request still works too.
    assert patient.code(code)["Location"] == f"/p/{token}/documents"
    share.refresh_from_db()
    assert share.code_failures == 0 and share.open_count == 1 and share.status == Status.OPENED
    assert OneTimeCode.objects.get(share=share).attempts == 0
    assert not AuditEvent.objects.filter(action="share.code_failed").exists()
    assert PatientSession.objects.filter(share=share, stage=PatientSession.Stage.OPEN).count() == 1


def test_a_double_tap_on_the_code_from_a_browser_holding_two_shares(db: None) -> None:
    _other, other_token = make_share()
    share, token = make_share()
    patient = Patient(other_token)
    assert patient.sign_in().status_code == 200
    patient.token = token
    code, before = _opened_keeping_the_earlier_key(patient)
    patient.client.cookies["pli_patient"] = before
    again = patient.code(code)
    assert again["Location"] == f"/p/{token}/documents"
    # The key the repeat came with is replaced, the other share's kept.
    assert len(again.cookies["pli_patient"].value.split(".")) == 2
    assert patient.get("/documents").status_code == 200
    patient.token = other_token
    assert patient.get("/documents").status_code == 200
    share.refresh_from_db()
    assert share.code_failures == 0


def test_the_code_sent_again_later_from_the_same_browser_opens_nothing(db: None) -> None:
    share, token = make_share()
    patient = Patient(token)
    code, before = _opened_keeping_the_earlier_key(patient)
    later = timezone.now() - services.REPEAT_WINDOW - datetime.timedelta(seconds=1)
    OneTimeCode.objects.filter(share=share).update(used_at=later)
    PatientSession.objects.filter(share=share).update(opened_at=later)
    patient.client.cookies["pli_patient"] = before
    response = patient.code(code)
    assert response.status_code == 303 and response["Location"].endswith("?session=expired")
    assert patient.get("/documents").status_code == 303


def test_the_repeat_needs_the_code_that_opened(db: None) -> None:
    """The browser's earlier key alone (a key planted there before) opens nothing."""
    share, token = make_share()
    patient = Patient(token)
    code, before = _opened_keeping_the_earlier_key(patient)
    planted = Patient(token)
    planted.client.cookies["pli_patient"] = before
    wrong = f"{(int(code) + 1) % 1000000:06d}"
    assert planted.code(wrong)["Location"].endswith("?session=expired")
    assert planted.get("/documents").status_code == 303
    share.refresh_from_db()
    assert share.open_count == 1


def test_wrong_codes_with_the_key_a_code_has_just_replaced_are_counted_and_lock(db: None) -> None:
    """The former key is let through to the code check for a while (a double tap): wrong
    codes sent with it are guesses like any other, or whoever holds that key (planted there
    before) could try codes that never lock the share."""
    share, token = make_share()
    patient = Patient(token)
    code, before = _opened_keeping_the_earlier_key(patient)
    planted = Patient(token)
    planted.client.cookies["pli_patient"] = before
    guesses = [f"{(int(code) + n) % 1000000:06d}" for n in range(1, services.MAX_CODE_FAILURES + 1)]
    assert planted.code(guesses[0])["Location"].endswith("?session=expired")
    share.refresh_from_db()
    assert share.code_failures == 1
    assert AuditEvent.objects.filter(action="share.code_failed").count() == 1
    for guess in guesses[1:]:
        planted.client.cookies["pli_patient"] = before
        response = planted.code(guess)
    assert response.status_code == 403
    share.refresh_from_db()
    assert share.status == Status.LOCKED
    assert planted.get("/documents").status_code == 403


def test_the_birth_date_given_again_once_in_sends_no_code(db: None) -> None:
    """A landing page left open in another tab, filled in once the documents are open: the
    patient is in already, and a new code would be an SMS for nothing, out of the hour's five."""
    share, token = make_share()
    patient = Patient(token)
    assert patient.sign_in().status_code == 200
    again = patient.birth_date()
    assert again.status_code == 303 and again["Location"] == f"/p/{token}/documents"
    assert OneTimeCode.objects.filter(share=share).count() == 1
    assert patient.get("/documents").status_code == 200


def test_a_double_tap_on_the_birth_date_sends_one_code_and_counts_nothing(db: None) -> None:
    """The second request comes with the cookie the first answer set."""
    share, token = make_share()
    patient = Patient(token)
    assert patient.birth_date().status_code == 303
    again = patient.birth_date()
    assert again.status_code == 303 and again["Location"] == f"/p/{token}/code?sent=sms"
    assert OneTimeCode.objects.filter(share=share).count() == 1
    share.refresh_from_db()
    assert share.birth_date_failures == 0


def test_new_code_retires_the_previous_one(db: None) -> None:
    share, token = make_share()
    patient = Patient(token)
    patient.birth_date()
    run_tasks()
    old = last_code()
    patient.new_code(channel="email")
    run_tasks()
    assert OneTimeCode.objects.filter(share=share, retired=False).get().channel == "email"
    response = patient.code(old)
    assert response.status_code == 400


def test_code_needs_the_birth_date_in_the_same_browser(db: None) -> None:
    _share, token = make_share()
    Patient(token).birth_date()
    run_tasks()
    code = last_code()
    stranger = Patient(token)
    response = stranger.code(code)
    assert response.status_code == 303
    assert "session=expired" in response["Location"]
    assert stranger.get("/documents").status_code == 303
    # Sent back at once: no transaction, nothing written for a request that carries no key.
    assert not AuditEvent.objects.filter(action="share.access_denied").exists()


def test_session_expires_after_fifteen_idle_minutes(db: None) -> None:
    share, token = make_share()
    patient = Patient(token)
    assert patient.sign_in().status_code == 200
    share.patient_sessions.update(last_seen_at=timezone.now() - datetime.timedelta(minutes=14, seconds=50))
    assert patient.get("/documents").status_code == 200  # just in time (and kept alive)
    share.patient_sessions.update(last_seen_at=timezone.now() - datetime.timedelta(minutes=15, seconds=10))
    response = patient.get("/documents")
    assert response.status_code == 303 and "session=expired" in response["Location"]


def test_the_birth_date_alone_opens_no_document(db: None) -> None:
    share, token = make_share()
    patient = Patient(token)
    assert patient.birth_date().status_code == 303
    document = share.documents.get()
    for suffix in ("/documents", f"/documents/{document.pk}/view", f"/documents/{document.pk}/download"):
        response = patient.get(suffix)
        assert response.status_code == 303 and "session=expired" in response["Location"], suffix
    share.refresh_from_db()
    assert share.download_count == 0 and share.status == Status.SENT


def test_a_session_opens_only_the_share_it_was_opened_on(db: None) -> None:
    """The cookie's path is /p/: the browser sends it with every patient link, another
    share's too (the same patient, the same practitioner, the same birth date)."""
    doctor = make_user()
    _share_a, token_a = make_share(doctor)
    share_b, token_b = make_share(doctor, documents=[pending_document("autre.pdf", pdf_bytes("autre"))])
    patient = Patient(token_a)
    assert patient.sign_in().status_code == 200
    document_b = share_b.documents.get()
    patient.token = token_b
    assert patient.get().status_code == 200  # the birth date is asked for
    for suffix in ("/documents", f"/documents/{document_b.pk}/download"):
        response = patient.get(suffix)
        assert response.status_code == 303 and "session=expired" in response["Location"], suffix
    share_b.refresh_from_db()
    assert share_b.download_count == 0 and share_b.open_count == 0


def test_a_document_of_another_share_is_not_found(db: None) -> None:
    doctor = make_user()
    share_a, token_a = make_share(doctor)
    share_b, _token_b = make_share(doctor, documents=[pending_document("autre.pdf", pdf_bytes("autre"))])
    patient = Patient(token_a)
    assert patient.sign_in().status_code == 200
    other = share_b.documents.get()
    for action in ("view", "download"):
        assert patient.get(f"/documents/{other.pk}/{action}").status_code == 404, action
    share_a.refresh_from_db()
    assert share_a.download_count == 0
    denied = AuditEvent.objects.filter(action="share.access_denied", target_id=str(share_a.pk))
    assert [e.details["reason"] for e in denied] == ["no_document", "no_document"]


def test_the_session_cookie_is_for_the_patient_pages_only_and_out_of_scripts_reach(db: None) -> None:
    _share, token = make_share()
    patient = Patient(token)
    sent = patient.birth_date()
    run_tasks()
    opened = patient.code(last_code())
    for response in (sent, opened):
        cookie = response.cookies["pli_patient"]
        assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/p/"


def test_the_steps_refuse_an_expired_share_before_the_periodic_job_records_it(db: None) -> None:
    """The pages refuse an expired link; the services refuse it too, on their own."""
    share, token = make_share()
    patient = Patient(token)
    assert patient.sign_in().status_code == 200
    key = patient.client.cookies["pli_patient"].value
    PatientShare.objects.filter(pk=share.pk).update(expires_at=timezone.now() - datetime.timedelta(seconds=1))
    share.refresh_from_db()
    assert share.status == Status.OPENED  # not recorded yet
    document = share.documents.get()
    assert services.open_session(share, key) is None
    assert services.record_document_access(share.pk, document.pk, session_key=key, download=True) is None
    assert services.check_birth_date(share.pk, BIRTH_DATE).outcome == Status.EXPIRED
    assert services.request_new_code(share.pk, session_key=key).outcome == Status.EXPIRED
    assert services.check_code(share.pk, "123456", session_key=key).outcome == Status.EXPIRED
    assert OneTimeCode.objects.filter(share=share).count() == 1
    share.refresh_from_db()
    assert share.download_count == 0


def test_revoked_and_expired_links_say_so(db: None) -> None:
    share, token = make_share()
    services.revoke(share.created_by, share.pk)
    page = Patient(token).get()
    assert page.status_code == 410
    assert "Voici vos résultats" not in page.content.decode()
    share2, token2 = make_share(now=timezone.now() - datetime.timedelta(days=31))
    assert Patient(token2).get().status_code == 410
    share2.refresh_from_db()
    assert share2.status == Status.SENT  # the page read it as expired; the periodic job records it


def test_an_ended_link_names_whom_to_contact(db: None) -> None:
    """« Contact the sender », said the expired and withdrawn pages, without saying who: a
    patient who has lost the e-mail had no one to turn to. They name the sender as the
    link's first page and the « locked » page do (nothing more than the link already showed)."""
    share, token = make_share()
    services.revoke(share.created_by, share.pk)
    expired, expired_token = make_share(now=timezone.now() - datetime.timedelta(days=31))
    for ended, ended_token in ((share, token), (expired, expired_token)):
        page = Patient(ended_token).get()
        assert page.status_code == 410
        text = page.content.decode()
        assert "besoin, contactez l\u2019expéditeur\u00a0:" in text
        assert ended.sender_name in text and ended.organisation.name in text


def test_revocation_ends_open_sessions(db: None) -> None:
    share, token = make_share()
    patient = Patient(token)
    patient.sign_in()
    document = share.documents.get()
    services.revoke(share.created_by, share.pk)
    assert patient.get(f"/documents/{document.pk}/download").status_code == 410


def test_unlock_resets_the_counters(db: None) -> None:
    share, token = make_share()
    patient = Patient(token)
    for _ in range(5):
        patient.birth_date("01/01/2000")
    share.refresh_from_db()
    assert share.status == Status.LOCKED
    services.unlock(share.created_by, share.pk)
    share.refresh_from_db()
    assert share.status == Status.SENT and share.birth_date_failures == 0
    assert patient.sign_in().status_code == 200


def test_resend_replaces_the_link(db: None) -> None:
    share, old_token = make_share(email=None)
    run_tasks()
    services.resend(share.created_by, share.pk)
    run_tasks()
    new_token = [m for m in sms_messages() if "/p/" in m["text"]][-1]["text"]
    assert old_token not in new_token
    assert Patient(old_token).get().status_code == 404


def test_a_new_link_ends_the_sessions_opened_with_the_old_one(db: None) -> None:
    """A link is resent because the first went astray: whoever opened it is let out."""
    share, token = make_share()
    patient = Patient(token)
    assert patient.sign_in().status_code == 200
    services.resend(share.created_by, share.pk)
    assert patient.get("/documents").status_code != 200
    # Not even through the new link, in the same browser (its cookie kept): both factors again.
    patient.token = token_of(share)
    response = patient.get("/documents")
    assert response.status_code == 303 and "session=expired" in response["Location"]


def test_too_many_unknown_links_say_when_to_try_again(db: None) -> None:
    from pli.sharing.patient import UNKNOWN_LINK_LIMIT, UNKNOWN_LINK_WINDOW

    client = Client(REMOTE_ADDR="203.0.113.77")  # an address of its own: counts are per address
    for _ in range(UNKNOWN_LINK_LIMIT):
        assert client.get("/p/" + "C" * 43).status_code == 404
    refused = client.get("/p/" + "D" * 43)
    assert refused.status_code == 429
    assert refused["Retry-After"] == str(UNKNOWN_LINK_WINDOW)


def test_the_unknown_link_window_ends_when_retry_after_says(db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The window is the 600 seconds Retry-After announces: not five minutes (the cache's
    default timeout) started again by every request."""
    import time

    from pli.sharing.patient import UNKNOWN_LINK_LIMIT, UNKNOWN_LINK_WINDOW

    real_time, real_now = time.time, timezone.now
    shift = [0.0]
    monkeypatch.setattr(time, "time", lambda: real_time() + shift[0])
    monkeypatch.setattr(timezone, "now", lambda: real_now() + datetime.timedelta(seconds=shift[0]))
    monkeypatch.setattr("django.core.cache.backends.db.tz_now", timezone.now)  # the cache's expiry
    client = Client(REMOTE_ADDR="203.0.113.79")
    for _ in range(UNKNOWN_LINK_LIMIT):
        assert client.get("/p/" + "C" * 43).status_code == 404
    assert client.get("/p/" + "D" * 43)["Retry-After"] == str(UNKNOWN_LINK_WINDOW)
    shift[0] = 301.0  # past Django's default cache timeout, within the window
    refused = client.get("/p/" + "D" * 43)
    assert refused.status_code == 429
    assert UNKNOWN_LINK_WINDOW - 302 <= int(refused["Retry-After"]) <= UNKNOWN_LINK_WINDOW - 300
    shift[0] = UNKNOWN_LINK_WINDOW + 1.0  # the window has ended: links are answered again
    assert client.get("/p/" + "D" * 43).status_code == 404


def test_leave_ends_the_session(db: None) -> None:
    _share, token = make_share()
    patient = Patient(token)
    patient.sign_in()
    left = patient.client.post(patient.url("/leave"))
    assert left.status_code == 200
    # Said to a woman as to a man, as « Né(e) le » is (it read « Vous êtes sorti »).
    assert "<h1>Vous êtes sorti(e)</h1>" in left.content.decode()
    assert patient.get("/documents").status_code == 303


def test_pages_are_not_cached_and_never_send_the_link_to_another_site(db: None) -> None:
    share, token = make_share()
    patient = Patient(token)
    page = patient.get()
    assert page["Cache-Control"] == "no-store"
    # Not "no-referrer" for pages with forms: Chromium would then send "Origin: null" and
    # the CSRF check would refuse every step (see settings.SECURE_REFERRER_POLICY).
    assert page["Referrer-Policy"] == "same-origin"
    assert MOBILE not in page.content.decode()
    patient.sign_in()
    document = share.documents.get()
    for suffix in ("/documents", f"/documents/{document.pk}/view", f"/documents/{document.pk}/download"):
        response = patient.get(suffix)
        assert response["Cache-Control"] == "no-store"
        assert response["Referrer-Policy"] in ("same-origin", "no-referrer")
    assert patient.get(f"/documents/{document.pk}/view")["Referrer-Policy"] == "no-referrer"


def test_reading_the_documents_page_is_audited(db: None) -> None:
    share, token = make_share()
    patient = Patient(token)
    patient.sign_in()
    patient.get("/documents")
    assert AuditEvent.objects.filter(action="share.documents_listed", target_id=str(share.pk)).count() == 2


def test_english_version_of_the_patient_pages(db: None) -> None:
    _share, token = make_share()
    patient = Patient(token)
    patient.client.cookies["django_language"] = "en"
    page = patient.get().content.decode()
    assert "Your birth date" in page and 'lang="en"' in page
    # English as the notification e-mail writes it (the page read « In doubt, call… »).
    assert "If in doubt, call your health professional" in page
    french = Patient(token).get().content.decode()
    assert "Votre date de naissance" in french


def test_the_language_switch_never_leads_to_a_step_that_takes_only_a_post(db: None) -> None:
    """It comes back to the page's address with a GET: after a reply or "Leave" (addresses
    that answer a GET with 405) it goes to the link instead, which leads to the right step."""
    _share, token = make_share(allow_reply=True)
    patient = Patient(token)

    def switch_target(html: str) -> str:
        found = re.search(r'<input name="next" type="hidden" value="([^"]*)">', html)
        assert found is not None
        return found.group(1)

    refused = patient.birth_date("01/01/1990").content.decode()
    assert switch_target(refused) == f"/p/{token}"
    documents = patient.sign_in().content.decode()
    assert switch_target(documents) == f"/p/{token}/documents"
    empty_reply = patient.client.post(patient.url("/reply"), {"text": ""})
    assert empty_reply.status_code == 400
    assert switch_target(empty_reply.content.decode()) == f"/p/{token}"
    left = patient.client.post(patient.url("/leave"))
    assert switch_target(left.content.decode()) == f"/p/{token}"
    assert patient.get().status_code == 200


def test_the_brand_link_never_leads_to_a_step_that_takes_only_a_post(db: None) -> None:
    """The « Pli » link at the top goes back to the page's own address. After a refused reply
    or « Leave » that address takes only a POST: a tap on it showed a blank 405 page, with
    no way on. It goes to the link instead, like the language switch."""
    _share, token = make_share(allow_reply=True)
    patient = Patient(token)

    def brand_target(html: str) -> str:
        found = re.search(r'<a class="brand" href="([^"]*)"', html)
        assert found is not None
        return found.group(1)

    documents = patient.sign_in().content.decode()
    assert brand_target(documents) == f"/p/{token}/documents"
    empty_reply = patient.client.post(patient.url("/reply"), {"text": ""})
    assert empty_reply.status_code == 400
    assert brand_target(empty_reply.content.decode()) == f"/p/{token}"
    left = patient.client.post(patient.url("/leave"))
    assert brand_target(left.content.decode()) == f"/p/{token}"
    assert patient.client.get(brand_target(left.content.decode())).status_code == 200


def test_reopening_the_link_returns_to_the_current_step(db: None) -> None:
    _share, token = make_share()
    patient = Patient(token)
    patient.birth_date()
    response = patient.get()
    assert response.status_code == 303 and response["Location"] == f"/p/{token}/code"
    run_tasks()
    patient.code(last_code())
    assert patient.get()["Location"] == f"/p/{token}/documents"


def test_the_session_key_changes_once_both_factors_pass(db: None) -> None:
    """Session fixation: a key planted in the patient's browser must open nothing."""
    _share, token = make_share()
    attacker = Patient(token)
    assert attacker.birth_date().status_code == 303
    planted = attacker.client.cookies["pli_patient"].value
    victim = Patient(token)
    victim.client.cookies["pli_patient"] = planted
    run_tasks()
    opened = victim.code(last_code())
    assert opened.status_code == 303
    assert opened.cookies["pli_patient"].value != planted
    assert victim.get("/documents").status_code == 200
    assert attacker.get("/documents").status_code != 200


def test_wrong_codes_in_all_lock_whatever_the_code(db: None) -> None:
    """Two guesses on each new code, codes spread over hours: ten wrong codes lock."""
    share, token = make_share()
    patient = Patient(token)
    assert patient.birth_date().status_code == 303
    for round_ in range(5):
        run_tasks()
        wrong = f"{(int(last_code()) + 1) % 10**6:06d}"
        assert patient.code(wrong).status_code == 400
        status = patient.code(wrong).status_code
        if round_ < 4:
            assert status == 400
            OneTimeCode.objects.filter(share=share).update(created_at=F("created_at") - datetime.timedelta(hours=2))
            assert patient.new_code().status_code == 303
    assert status == 403
    share.refresh_from_db()
    assert share.status == Status.LOCKED and share.lock_reason == "code" and share.code_failures == 10


def test_wrong_codes_stop_counting_once_the_patient_is_in(db: None) -> None:
    share, token = make_share()
    patient = Patient(token)
    patient.birth_date()
    run_tasks()
    right = last_code()
    assert patient.code(f"{(int(right) + 1) % 10**6:06d}").status_code == 400
    assert patient.code(right).status_code == 303
    share.refresh_from_db()
    assert share.code_failures == 0


def test_links_in_the_practitioners_message_are_clickable_and_nothing_else(db: None) -> None:
    _share, token = make_share(message="Plus d'informations : https://www.ameli.fr\nou www.has-sante.fr <b>")
    html = Patient(token).sign_in().content.decode()
    assert '<a href="https://www.ameli.fr" rel="noopener noreferrer nofollow" target="_blank">' in html
    assert '<a href="https://www.has-sante.fr"' in html
    assert "&lt;b&gt;" in html and "<br>" in html


def test_a_refused_step_says_so_in_the_page_title(db: None) -> None:
    # The title is what a screen reader announces first on the page that comes back.
    _share, token = make_share()
    patient = Patient(token)
    title = re.compile(r"<title>([^<]*)</title>")
    first = title.search(patient.get().content.decode())
    assert first is not None and not first.group(1).startswith("Erreur")
    refused = title.search(patient.birth_date("16/02/1984").content.decode())
    assert refused is not None and refused.group(1) == f"Erreur\u00a0: {first.group(1)}"


def test_the_attempts_left_said_after_a_wrong_code_count_the_wrong_codes_in_all(db: None) -> None:
    """Nine wrong codes in all (over several codes): the next wrong one locks, whatever the
    current code's own count, and the page must say one attempt is left, not two."""
    share, token = make_share()
    patient = Patient(token)
    assert patient.birth_date().status_code == 303
    for _round in range(4):
        run_tasks()
        wrong = f"{(int(last_code()) + 1) % 10**6:06d}"
        assert patient.code(wrong).status_code == 400
        assert patient.code(wrong).status_code == 400
        OneTimeCode.objects.filter(share=share).update(created_at=F("created_at") - datetime.timedelta(hours=2))
        assert patient.new_code().status_code == 303
    run_tasks()
    wrong = f"{(int(last_code()) + 1) % 10**6:06d}"
    response = patient.code(wrong)
    assert response.status_code == 400
    share.refresh_from_db()
    assert share.code_failures == 9
    assert "Il reste 1 essai avant le verrouillage" in response.content.decode()
    assert patient.code(wrong).status_code == 403


def test_a_code_replaced_by_a_newer_one_is_said_to_be_no_longer_valid(db: None) -> None:
    """The first SMS arrives late, after the patient asked for another code: typing it is
    not a wrong guess to correct, but an old code; the page says to use the latest one."""
    share, token = make_share()
    patient = Patient(token)
    assert patient.birth_date().status_code == 303
    run_tasks()
    first = last_code()
    assert patient.new_code(channel="email").status_code == 303
    response = patient.code(first)
    assert response.status_code == 400
    html = response.content.decode()
    assert "plus valable\u00a0: utilisez le dernier code reçu" in html
    assert "pas le bon code" not in html
    # Still counted: only the latest code opens the documents.
    share.refresh_from_db()
    assert share.code_failures == 1


def test_send_a_new_code_keeps_the_channel_the_patient_switched_to(db: None) -> None:
    """The SMS did not come, the patient had the code sent by e-mail; once that one has
    expired, "Send a new code" must send it by e-mail again, not back by SMS."""
    share, token = make_share()
    patient = Patient(token)
    assert patient.birth_date().status_code == 303
    switched = patient.new_code(channel="email")
    assert switched.status_code == 303 and switched["Location"].endswith("?sent=email")
    _age_codes(share)
    html = patient.client.get(switched["Location"]).content.decode()
    forms = re.findall(r"<form [^>]*action=\"/p/[^\"]*/code/new\"[^>]*>(.*?)</form>", html, re.S)
    again = next(form for form in forms if "Envoyer un nouveau code" in form)
    fields = dict(re.findall(r"<input type=\"hidden\" name=\"([^\"]+)\" value=\"([^\"]*)\"", again))
    fields.pop("csrfmiddlewaretoken", None)
    response = patient.client.post(patient.url("/code/new"), fields)
    assert response.status_code == 303 and response["Location"].endswith("?sent=email")
    latest = OneTimeCode.objects.filter(share=share).order_by("-created_at").first()
    assert latest is not None and latest.channel == "email"


def test_the_code_page_says_the_first_code_counts_and_that_more_locks(db: None) -> None:
    """The hour's five codes include the one sent on the birth date, and a sixth locks the
    share: "you can ask for up to 5 codes" had the patient lock it on the fifth tap."""
    share, token = make_share()
    patient = Patient(token)
    sent = patient.birth_date()
    html = patient.client.get(sent["Location"]).content.decode()
    assert "demander jusqu" not in html
    assert "Au plus 5 codes sont envoyés par heure, celui-ci compris" in html
    assert "verrouille l" in html
    # What the page says is what happens: four more codes, then the sixth locks.
    for _ in range(4):
        _age_codes(share)
        assert patient.new_code().status_code == 303
    _age_codes(share)
    assert patient.new_code().status_code == 403


def test_the_page_titles_say_the_step(db: None) -> None:
    """The title, announced first by a screen reader and shown in the tab, said "Documents
    qui vous sont transmis" on the birth date step: nothing told the patient there were two
    steps, nor which one this was."""
    _share, token = make_share()
    patient = Patient(token)
    title = re.compile(r"<title>([^<]*)</title>")

    def title_of(response: Any) -> str:
        found = title.search(response.content.decode())
        assert found is not None
        return found.group(1)

    assert title_of(patient.get()) == "Étape 1 sur 2\u00a0: votre date de naissance · Pli"
    assert patient.birth_date().status_code == 303
    assert title_of(patient.get("/code")) == "Étape 2 sur 2\u00a0: le code reçu · Pli"
    patient.client.cookies["django_language"] = "en"
    assert title_of(patient.get("/code")) == "Step 2 of 2: the code you received · Pli"


def test_the_link_opened_again_after_a_switch_to_e_mail_keeps_to_e_mail(db: None) -> None:
    """The patient asked for the code by e-mail, then tapped the link in that e-mail: the code
    page (no « ?sent= » in its address) offered a new code with no channel, which went back
    to SMS and counted towards the hour's five."""
    _share, token = make_share()
    patient = Patient(token)
    patient.birth_date()
    assert "sent=email" in patient.new_code(channel="email")["Location"]
    page = patient.get("/code").content.decode()
    assert '<input type="hidden" name="channel" value="email">' in page
    assert "L\u2019envoyer plutôt par SMS" in page


def test_the_link_with_a_slash_added_leads_to_the_link(db: None) -> None:
    """A mail client added « / » after the link: « Page introuvable », and the patient
    took the link for broken."""
    share, token = make_share()
    patient = Patient(token)
    answer = patient.get("/")
    assert answer.status_code == 302 and answer["Location"] == f"/p/{token}"
    assert patient.client.get(answer["Location"]).status_code == 200
    # A link that is no link is told so at the same place as without the « / ».
    unknown = patient.client.get("/p/" + "x" * 43 + "/", follow=True)
    assert unknown.status_code == 404 and "Lien non valable" in unknown.content.decode()
    share.refresh_from_db()
    assert share.status == Status.SENT  # nothing read or changed on the way
