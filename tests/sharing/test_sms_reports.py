"""Twilio's delivery reports: asked for with each SMS once Pli is reachable on https, checked
by their signature, and turned into the share's events (delivered to the phone, or never)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from pli.audit.models import AuditEvent
from pli.notify import sms
from pli.sharing import services
from pli.sharing.models import Channel, PatientShare, ShareNotification
from sharing.helpers import MOBILE, Patient, make_share, run_tasks
from sharing.test_sms import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio

PUBLIC_URL = "https://pli.example.fr"
CALLBACK = f"{PUBLIC_URL}/hooks/sms/twilio"


@pytest.fixture
def twilio(settings: Any) -> Iterator[FakeTwilio]:
    fake = FakeTwilio()
    fake.thread.start()
    settings.PLI_SMS_URL = fake.url()
    settings.PUBLIC_URL = PUBLIC_URL
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "pli.example.fr"]
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def signature(params: dict[str, str], url: str = CALLBACK, token: str = AUTH_TOKEN) -> str:
    """As Twilio signs: the URL, then each parameter's name and value sorted by name,
    HMAC-SHA1 keyed with the Auth Token, in base64."""
    data = url + "".join(f"{name}{params[name]}" for name in sorted(params))
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def report(sid: str, status: str, error: str = "", **overrides: Any) -> dict[str, str]:
    params = {
        "AccountSid": ACCOUNT_SID,
        "ApiVersion": "2010-04-01",
        "From": "Pli",
        "MessageSid": sid,
        "MessageStatus": status,
        "SmsSid": sid,
        "SmsStatus": status,
        "To": MOBILE,
    }
    if error:
        params["ErrorCode"] = error
    params.update(overrides)
    return params


def post(params: dict[str, str], sig: str | None = None) -> Any:
    headers = {} if sig == "" else {"HTTP_X_TWILIO_SIGNATURE": sig or signature(params)}
    return Client().post("/hooks/sms/twilio", params, HTTP_HOST="pli.example.fr", secure=True, **headers)


def sent_link(**fields: Any) -> tuple[PatientShare, ShareNotification]:
    share, _token = make_share(**fields)
    run_tasks()
    notification = share.notifications.get(channel=Channel.SMS)
    assert notification.state == ShareNotification.State.SENT and notification.provider_id
    return share, notification


def event_types(share: PatientShare) -> list[str]:
    return [e.type for e in services.events(share)]


def test_the_signature_is_checked_as_twilio_documents_it() -> None:
    # The worked example of Twilio's "Secure webhooks" guide (Auth Token 12345).
    backend = sms.TwilioBackend(username=ACCOUNT_SID, password="x", account_sid=ACCOUNT_SID, signing_key="12345")
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = [
        ("To", "+18005551212"),
        ("CallSid", "CA1234567890ABCDE"),
        ("Digits", "1234"),
        ("From", "+12349013030"),
        ("Caller", "+12349013030"),
    ]
    published = "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    assert backend.signed_by_twilio(url, params, published)
    assert not backend.signed_by_twilio(url, [*params[:2], ("Digits", "9999"), *params[3:]], published)
    assert not backend.signed_by_twilio(url.replace("foo=1", "foo=2"), params, published)
    assert not backend.signed_by_twilio(url, params, "")
    # Twilio signs the URL with its port or without it, not always alike (its own libraries
    # accept either); another port is another URL.
    assert backend.signed_by_twilio("https://mycompany.com:443/myapp.php?foo=1&bar=2", params, published)
    port_signed = base64.b64encode(
        hmac.new(
            b"12345",
            (url.replace(".com/", ".com:443/") + "".join(n + v for n, v in sorted(params))).encode(),
            hashlib.sha1,
        ).digest()
    ).decode()
    assert backend.signed_by_twilio(url, params, port_signed)
    assert not backend.signed_by_twilio(url.replace(".com/", ".com:8443/"), params, published)
    unsigned = sms.TwilioBackend(username="SK1", password="x", account_sid=ACCOUNT_SID)
    assert not unsigned.signed_by_twilio(url, params, published)


def test_each_sms_asks_for_reports_once_pli_is_public(db: None, twilio: FakeTwilio, settings: Any) -> None:
    assert reverse("sharing:twilio_status") == sms.TWILIO_STATUS_PATH
    _share, notification = sent_link(email=None)
    # Naming its notification: a report that comes before the worker has recorded the
    # message's id still finds it.
    assert twilio.requests[0]["form"]["StatusCallback"] == [f"{CALLBACK}?n={notification.pk}"]
    # Not reachable by Twilio (a development instance): none asked for.
    settings.PUBLIC_URL = "http://127.0.0.1:8000"
    sent_link(email=None)
    assert "StatusCallback" not in twilio.requests[1]["form"]
    # An API key without the Auth Token: reports could not be checked, so none are asked for.
    api_key = f"twilio://SK1:keysecret@api.twilio.com?account_sid={ACCOUNT_SID}&from=Pli"
    settings.PUBLIC_URL = PUBLIC_URL
    settings.PLI_SMS_URL = f"{api_key}&endpoint=http://127.0.0.1:{twilio.port}"
    sent_link(email=None)
    assert "StatusCallback" not in twilio.requests[2]["form"]
    settings.PLI_SMS_URL = f"{api_key}&auth_token={AUTH_TOKEN}&endpoint=http://127.0.0.1:{twilio.port}"
    _share, notification = sent_link(email=None)
    assert twilio.requests[3]["form"]["StatusCallback"] == [f"{CALLBACK}?n={notification.pk}"]
    assert AUTH_TOKEN not in repr(sms.get_backend())


def test_a_delivered_sms_is_an_event_of_the_share_once(db: None, twilio: FakeTwilio) -> None:
    share, notification = sent_link(email=None)
    sent = report(notification.provider_id, "sent")
    assert post(sent).status_code == 204
    # Signed over the URL with its port, as Twilio sometimes does: Twilio's all the same.
    assert post(sent, signature(sent, url=CALLBACK.replace(".fr/", ".fr:443/"))).status_code == 204
    assert "notification_delivered" not in event_types(share)
    assert post(report(notification.provider_id, "delivered")).status_code == 204
    assert post(report(notification.provider_id, "delivered")).status_code == 204  # Twilio may repeat it
    assert event_types(share).count("notification_delivered") == 1
    notification.refresh_from_db()
    assert notification.delivered_at is not None and notification.state == ShareNotification.State.SENT
    # The practitioner sees it on the share's page, and an integrator in its events.
    practitioner = Client()
    practitioner.force_login(share.created_by)
    page = practitioner.get(f"/shares/{share.pk}", HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert "SMS remis sur le téléphone du patient" in page
    from pli.api.services import create_token

    _record, token = create_token(share.created_by, "test")
    data = Client().get(f"/api/v1/shares/{share.pk}", HTTP_AUTHORIZATION=f"Bearer {token}").json()
    (delivered,) = [e for e in data["events"] if e["type"] == "notification_delivered"]
    assert delivered["channel"] == "sms"
    # A failure reported after the delivery is not believed: the phone had it.
    assert post(report(notification.provider_id, "undelivered", "30003")).status_code == 204
    notification.refresh_from_db()
    assert notification.state == ShareNotification.State.SENT
    assert "notification_failed" not in event_types(share)


def test_an_undelivered_link_tells_the_practitioner_the_patient_was_not_notified(db: None, twilio: FakeTwilio) -> None:
    """Twilio accepts a message, then learns that the number reaches no handset: the SMS
    never arrives. The share said "sent" for ever; the practitioner now learns it."""
    share, notification = sent_link(email=None)
    assert services.undelivered([share.pk]) == {}
    assert post(report(notification.provider_id, "undelivered", "30005")).status_code == 204
    notification.refresh_from_db()
    assert notification.state == ShareNotification.State.FAILED
    assert notification.last_error == "sms:undelivered:30005"
    assert services.undelivered([share.pk]) == {share.pk: "failed"}
    (failed,) = [e for e in services.events(share) if e.type == "notification_failed"]
    assert failed.details["final"] is True and failed.failure == "number_refused"
    assert MOBILE not in str(failed.details) and MOBILE[3:] not in str(failed.details)
    practitioner = Client()
    practitioner.force_login(share.created_by)
    page = practitioner.get(f"/shares/{share.pk}", HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert "SMS non remis sur le téléphone du patient" in page and 'data-failure="number_refused"' in page


@pytest.mark.parametrize(
    ("error", "category"),
    [
        ("30003", "number_refused"),
        # Refused for its number after Twilio accepted it (a Messaging Service checks the
        # number afterwards): the patient answered STOP, or the number is no mobile.
        ("21610", "number_refused"),
        ("21614", "number_refused"),
        ("30007", "message_refused"),
        ("30008", "provider_unavailable"),
        ("", "provider_unavailable"),
    ],
)
def test_undelivered_reports_say_why_by_category(db: None, twilio: FakeTwilio, error: str, category: str) -> None:
    share, notification = sent_link(email=None)
    assert post(report(notification.provider_id, "failed", error)).status_code == 204
    (failed,) = [e for e in services.events(share) if e.type == "notification_failed"]
    assert failed.failure == category and failed.details["reported"] is True


def code_sms_undelivered() -> tuple[PatientShare, Patient, ShareNotification]:
    """A share with both contacts, the link sent by e-mail, the patient past the birth date,
    and the code's SMS then reported undelivered (the phone switched off: 30003)."""
    share, token = make_share()
    run_tasks()  # the link, by e-mail
    patient = Patient(token)
    assert patient.birth_date()["Location"].endswith("?sent=sms")
    run_tasks()
    code_sms = share.notifications.get(channel=Channel.SMS, kind=ShareNotification.Kind.CODE)
    assert post(report(code_sms.provider_id, "undelivered", "30003")).status_code == 204
    return share, patient, code_sms


def test_after_an_undelivered_code_the_next_one_goes_by_email(db: None, twilio: FakeTwilio, smtp_server: Any) -> None:
    _share, patient, _code_sms = code_sms_undelivered()
    response = patient.birth_date()
    assert response.status_code == 303 and response["Location"].endswith("?sent=email")


@pytest.mark.parametrize(
    "forged",
    [
        pytest.param(lambda p: (p, ""), id="unsigned"),
        # Anyone can send any header: one that is no base64 at all is refused, not a crash.
        pytest.param(lambda p: (p, "\u00e9t\u00e9"), id="non-ascii"),
        pytest.param(lambda p: (p, signature(p, token="another-token")), id="another-key"),
        pytest.param(lambda p: (p, signature(p, url="https://evil.example/hooks/sms/twilio")), id="another-url"),
        pytest.param(lambda p: ({**p, "MessageStatus": "undelivered"}, signature(p)), id="altered"),
        pytest.param(
            lambda p: ({**p, "AccountSid": "AC" + "f" * 32}, signature({**p, "AccountSid": "AC" + "f" * 32})),
            id="another-account",
        ),
    ],
)
def test_forged_reports_are_refused_and_change_nothing(db: None, twilio: FakeTwilio, forged: Any) -> None:
    _share, notification = sent_link(email=None)
    before = AuditEvent.objects.count()
    params, sig = forged(report(notification.provider_id, "failed", "30005"))
    assert post(params, sig).status_code == 403
    notification.refresh_from_db()
    assert notification.state == ShareNotification.State.SENT and notification.delivered_at is None
    assert AuditEvent.objects.count() == before


def test_reports_pli_did_not_ask_for_are_not_looked_at(db: None, twilio: FakeTwilio, settings: Any) -> None:
    _share, notification = sent_link(email=None)
    settings.PUBLIC_URL = "http://127.0.0.1:8000"
    params = report(notification.provider_id, "undelivered", "30005")
    response = Client().post("/hooks/sms/twilio", params, HTTP_X_TWILIO_SIGNATURE=signature(params))
    assert response.status_code == 404
    notification.refresh_from_db()
    assert notification.state == ShareNotification.State.SENT
    assert Client().get("/hooks/sms/twilio", HTTP_HOST="pli.example.fr", secure=True).status_code == 405


def test_reports_about_unknown_messages_are_acknowledged_and_ignored(
    db: None, twilio: FakeTwilio, caplog: pytest.LogCaptureFixture
) -> None:
    before = AuditEvent.objects.count()
    with caplog.at_level(logging.DEBUG):
        assert post(report("SM" + "9" * 32, "undelivered", "30005")).status_code == 204
        assert post(report("", "delivered")).status_code == 204
    assert AuditEvent.objects.count() == before
    # A report names the patient's number: it is never logged.
    assert MOBILE not in caplog.text and MOBILE[3:] not in caplog.text


def test_a_late_report_about_the_former_number_does_not_speak_for_the_new_one(db: None, twilio: FakeTwilio) -> None:
    """The practitioner corrected the number; the new link's SMS was refused at once (not a
    mobile). A late report about the first SMS, to the former number, must not replace why
    the new one failed on the share's page."""
    share, first = sent_link(email=None)
    practitioner = Client()
    practitioner.force_login(share.created_by)
    twilio.replies.append((400, {"code": 21614, "message": "not a mobile number", "status": 400}))
    corrected = practitioner.post(
        f"/shares/{share.pk}/resend", {"contacts": "1", "patient_mobile": "06 98 76 54 32", "patient_email": ""}
    )
    assert corrected.status_code == 303
    run_tasks()
    assert share.notifications.filter(state=ShareNotification.State.FAILED).count() == 1
    assert post(report(first.provider_id, "failed", "30008")).status_code == 204
    page = practitioner.get(f"/shares/{share.pk}", HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert 'data-failure="number_refused"' in page and 'data-failure="provider_unavailable"' not in page


def test_once_an_sms_is_delivered_again_the_codes_go_by_sms_again(
    db: None, twilio: FakeTwilio, smtp_server: Any
) -> None:
    """A code SMS reported undelivered (the phone switched off: 30003) sent the next codes by
    e-mail; once an SMS to that number is reported delivered, the number works again."""
    from sharing.test_patient_flow import _age_codes

    share, patient, first = code_sms_undelivered()
    _age_codes(share)
    assert patient.new_code()["Location"].endswith("?sent=email")
    run_tasks()
    # The patient asks for the SMS all the same; this one reaches the phone.
    _age_codes(share)
    assert patient.new_code("sms")["Location"].endswith("?sent=sms")
    run_tasks()
    second = share.notifications.filter(channel=Channel.SMS, kind=ShareNotification.Kind.CODE).latest("created_at")
    assert second.pk != first.pk
    assert post(report(second.provider_id, "delivered")).status_code == 204
    _age_codes(share)
    assert patient.new_code()["Location"].endswith("?sent=sms")


def test_a_reminder_not_delivered_after_the_link_was_does_not_say_the_number_is_refused(
    db: None, twilio: FakeTwilio
) -> None:
    """The link's SMS reached the patient's phone; five days later the reminder's did not
    (the phone switched off: 30003). The number works: the page must not tell the
    practitioner it was refused, nor that the patient was never notified."""
    import datetime

    from django.utils import timezone

    share, link = sent_link(email=None)
    assert post(report(link.provider_id, "delivered")).status_code == 204
    assert services.send_due_reminders(timezone.now() + datetime.timedelta(days=5, minutes=1)) == 1
    run_tasks()
    reminder = share.notifications.get(kind=ShareNotification.Kind.REMINDER)
    assert reminder.channel == Channel.SMS and reminder.provider_id
    assert post(report(reminder.provider_id, "undelivered", "30003")).status_code == 204
    assert services.undelivered([share.pk]) == {}
    practitioner = Client()
    practitioner.force_login(share.created_by)
    page = practitioner.get(f"/shares/{share.pk}", HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert 'data-failure="number_refused"' not in page
    assert 'data-failure="reminder_undelivered"' in page
    assert "le rappel n\u2019a pas atteint le téléphone du patient" in page


@pytest.mark.parametrize(("status", "error"), [("delivered", ""), ("undelivered", "30005")])
def test_a_report_that_comes_before_the_worker_recorded_the_message_is_not_lost(
    db: None, twilio: FakeTwilio, monkeypatch: pytest.MonkeyPatch, status: str, error: str
) -> None:
    """Twilio may report on a message before the worker, which has just been given the
    message's id, has recorded it: the report is about a notification the hook cannot yet
    find by that id. Each SMS's report URL names its notification, so it still can."""
    from pli.sharing import notifications

    reports: list[Any] = []
    send = notifications._send

    def send_then_report(notification: ShareNotification) -> str:
        sid = send(notification)
        callback = twilio.requests[-1]["form"]["StatusCallback"][0]
        assert callback == f"{CALLBACK}?n={notification.pk}"
        params = report(sid, status, error)
        reports.append(
            Client().post(
                callback.removeprefix(PUBLIC_URL),
                params,
                HTTP_HOST="pli.example.fr",
                secure=True,
                HTTP_X_TWILIO_SIGNATURE=signature(params, url=callback),
            )
        )
        return sid

    monkeypatch.setattr(notifications, "_send", send_then_report)
    share, _token = make_share(email=None)
    run_tasks()
    assert [r.status_code for r in reports] == [204]
    notification = share.notifications.get(channel=Channel.SMS)
    if status == "delivered":
        assert notification.state == ShareNotification.State.SENT and notification.delivered_at is not None
        assert event_types(share).count("notification_delivered") == 1
        assert services.undelivered([share.pk]) == {}
    else:
        assert notification.state == ShareNotification.State.FAILED
        assert notification.last_error == "sms:undelivered:30005"
        assert services.undelivered([share.pk]) == {share.pk: "failed"}
        (failed,) = [e for e in services.events(share) if e.type == "notification_failed"]
        assert failed.failure == "number_refused" and failed.details["reported"] is True
    # The payload is shredded all the same.
    assert notification.data_key_id is None and notification.text is None
    # A report whose URL was not Twilio's (a signature over another URL) is refused.
    params = report("SM" + "8" * 32, "undelivered", "30005")
    forged = f"{CALLBACK}?n={notification.pk}"
    response = Client().post(
        forged.removeprefix(PUBLIC_URL),
        params,
        HTTP_HOST="pli.example.fr",
        secure=True,
        HTTP_X_TWILIO_SIGNATURE=signature(params, url=CALLBACK),
    )
    assert response.status_code == 403
