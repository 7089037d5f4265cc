"""An organisation's settings page (its name and policies: how long a new patient link is
valid, how long messages and ended patient shares are kept), and the retention jobs that
apply the policy: old messages to the trash, ended shares deleted."""

from __future__ import annotations

import datetime
from typing import Any

from django.test import Client
from django.utils import timezone

from messaging.factories import api_client
from pli.accounts import journal
from pli.accounts.models import Organisation
from pli.audit.models import AuditEvent
from pli.core.models import DataKey
from pli.messaging import services as messaging
from pli.messaging.models import Delivery, Folder, Message
from pli.sharing import services as sharing
from pli.sharing.models import PatientShare
from pli.testing.accounts import make_organisation, make_user
from sharing.helpers import make_share

DAY = datetime.timedelta(days=1)


def browser(user: Any) -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE="fr")
    client.force_login(user)
    return client


def settings_url(organisation: Organisation) -> str:
    return f"/organisations/{organisation.slug}/settings/"


def test_an_admin_sets_the_name_and_the_policies(db: None) -> None:
    organisation = make_organisation("Cabinet des Lilas")
    admin = make_user(organisation, role="admin")
    practitioner = make_user(organisation)
    client = browser(admin)
    page = client.get(settings_url(organisation)).content.decode()
    assert "Réglages" in page and "Validité des liens patient (jours)" in page and 'value="30"' in page
    response = client.post(
        settings_url(organisation),
        {"name": "  Maison de santé   des Lilas ", "share_expiry_days": "14", "retention_days": "365"},
        follow=True,
    )
    assert "Réglages enregistrés." in response.content.decode()
    organisation.refresh_from_db()
    assert organisation.name == "Maison de santé des Lilas"
    assert (organisation.share_expiry_days, organisation.retention_days) == (14, 365)
    # New shares take the policy by default.
    assert sharing.default_expiry_days(practitioner) == 14
    event = AuditEvent.objects.get(action="organisation.settings_changed")
    assert event.actor_id == str(admin.pk) and event.target_id == str(organisation.pk)
    assert event.details == {
        "changed": "name,share_expiry_days,retention_days",
        "share_expiry_days": 14,
        "retention_days": 365,
    }
    # Saved again unchanged: nothing recorded. Emptied: everything is kept again.
    client.post(
        settings_url(organisation), {"name": organisation.name, "share_expiry_days": "14", "retention_days": "365"}
    )
    assert AuditEvent.objects.filter(action="organisation.settings_changed").count() == 1
    client.post(
        settings_url(organisation), {"name": organisation.name, "share_expiry_days": "14", "retention_days": ""}
    )
    organisation.refresh_from_db()
    assert organisation.retention_days is None
    # The access journal lists the change.
    assert (
        "Réglages de l\u2019organisation modifiés"
        in client.get(f"/organisations/{organisation.slug}/audit/").content.decode()
    )


def test_bad_values_are_refused_next_to_their_field_and_change_nothing(db: None) -> None:
    organisation = make_organisation("Cabinet des Lilas")
    client = browser(make_user(organisation, role="admin"))
    for field, value in (
        ("share_expiry_days", "0"),
        ("share_expiry_days", "91"),
        ("share_expiry_days", "deux"),
        ("retention_days", "7"),
        ("retention_days", "40000"),
        ("name", "   "),
        ("phone", "12"),
        ("phone", "06 12 34"),
        ("phone", "+1 555"),
    ):
        data = {"name": "Cabinet", "share_expiry_days": "30", "retention_days": "", field: value}
        response = client.post(settings_url(organisation), data)
        assert response.status_code == 400, (field, value)
        assert f'id="id_{field}_error"' in response.content.decode(), (field, value)
    organisation.refresh_from_db()
    assert (organisation.name, organisation.share_expiry_days, organisation.retention_days) == (
        "Cabinet des Lilas",
        30,
        None,
    )
    assert not AuditEvent.objects.filter(action="organisation.settings_changed").exists()


def test_the_telephone_number_patients_are_given(db: None) -> None:
    """Typed as the French write it, stored in E.164, shown back the same way, and given to
    patients on their pages (a locked link says whom to call), never in their notifications."""
    organisation = make_organisation("Cabinet des Lilas")
    client = browser(make_user(organisation, role="admin"))
    fields = {"name": "Cabinet des Lilas", "share_expiry_days": "30", "retention_days": ""}
    response = client.post(settings_url(organisation), {**fields, "phone": " 04.78.12.34.56 "})
    assert response.status_code == 302
    organisation.refresh_from_db()
    assert organisation.phone == "+33478123456"
    assert 'value="04 78 12 34 56"' in client.get(settings_url(organisation)).content.decode()
    event = AuditEvent.objects.get(action="organisation.settings_changed")
    assert event.details["changed"] == "phone" and "478" not in str(event.details)
    # Overseas numbers are written with a 0 too.
    client.post(settings_url(organisation), {**fields, "phone": "0590 12 34 56"})
    organisation.refresh_from_db()
    assert organisation.phone == "+590590123456"
    # Refused beside the field, in French.
    refused = client.post(settings_url(organisation), {**fields, "phone": "01 23"}).content.decode()
    assert "Saisissez un numéro de téléphone valide, par exemple 04 78 12 34 56." in refused
    organisation.refresh_from_db()
    assert organisation.phone == "+590590123456"
    # Emptied: none.
    client.post(settings_url(organisation), {**fields, "phone": ""})
    organisation.refresh_from_db()
    assert organisation.phone == ""


def test_only_the_organisations_admins_reach_its_settings(db: None) -> None:
    organisation = make_organisation("Cabinet des Lilas")
    fields = {"name": "Autre nom", "share_expiry_days": "5", "retention_days": "30"}
    assert browser(make_user(organisation)).post(settings_url(organisation), fields).status_code == 403
    other_admin = make_user(make_organisation("Autre cabinet"), role="admin")
    assert browser(other_admin).post(settings_url(organisation), fields).status_code == 404
    assert Client().get(settings_url(organisation)).status_code == 302  # to the sign-in page
    organisation.refresh_from_db()
    assert organisation.name == "Cabinet des Lilas" and organisation.retention_days is None


def with_retention(organisation: Organisation, days: int) -> Organisation:
    Organisation.objects.filter(pk=organisation.pk).update(retention_days=days)
    organisation.refresh_from_db()
    return organisation


def _age(message_id: Any, days: int) -> None:
    sent = timezone.now() - days * DAY
    Message.objects.filter(pk=message_id).update(sent_at=sent)
    Delivery.objects.filter(message_id=message_id).update(sent_at=sent)


def test_messages_past_the_retention_go_to_the_trash_then_away(db: None, settings: Any) -> None:
    lilas = with_retention(make_organisation("Cabinet des Lilas"), 90)
    other = make_organisation("Clinique du Parc")
    alice, bob = make_user(lilas), make_user(other)
    client = api_client(alice)
    old, recent = (
        client.post(
            "/api/v1/messages",
            {"sender": alice.personal_mailbox.address, "to": [bob.personal_mailbox.address], "subject": subject},
        ).json()["id"]
        for subject in ("Ancien", "Récent")
    )
    _age(old, 91)
    _age(recent, 89)
    now = timezone.now()
    assert messaging.apply_retention(now) == 1
    # Only the organisation's own copy: the correspondent's organisation keeps its own.
    mine = Delivery.objects.get(message_id=old, mailbox=alice.personal_mailbox)
    assert (mine.folder, mine.trashed_at) == (Folder.TRASH, now)
    assert Delivery.objects.get(message_id=old, mailbox=bob.personal_mailbox).folder == Folder.INBOX
    assert Delivery.objects.get(message_id=recent, mailbox=alice.personal_mailbox).folder == Folder.SENT
    event = AuditEvent.objects.get(action="message.move")
    assert event.details == {"folder": "trash", "copies": 1, "reason": "retention", "organisation": lilas.pk}
    assert event.actor_id == ""
    # Done once; then the trash deletes it after its own delay.
    assert messaging.apply_retention(now) == 0
    assert messaging.purge_old_trash(now + settings.PLI_TRASH_DAYS * DAY + DAY) == 1
    assert not Delivery.objects.filter(message_id=old, mailbox=alice.personal_mailbox).exists()
    # A period under a month, set outside the settings page, is ignored.
    Organisation.objects.filter(pk=lilas.pk).update(retention_days=1)
    assert messaging.apply_retention(now) == 0


def test_the_retention_jobs_stay_in_the_organisations_access_journal(db: None, settings: Any) -> None:
    """Once the trash had deleted the last copy and the message was shredded, the retention's
    move and the trash's deletion were no longer in the organisation's access journal: it
    found them only through the copies and the message, now gone."""
    lilas = with_retention(make_organisation("Cabinet des Lilas"), 90)
    other = make_organisation("Clinique du Parc")
    alice, bob = make_user(lilas), make_user(other)
    sent = (
        api_client(bob)
        .post(
            "/api/v1/messages",
            {"sender": bob.personal_mailbox.address, "to": [alice.personal_mailbox.address], "subject": "Ancien"},
        )
        .json()["id"]
    )
    _age(sent, 91)
    now = timezone.now()
    assert messaging.apply_retention(now) == 1
    messaging.move_message(bob, sent, "trash")
    messaging.delete_message(bob, sent)
    assert messaging.purge_old_trash(now + settings.PLI_TRASH_DAYS * DAY + DAY) == 1
    assert not Message.objects.filter(pk=sent).exists()
    found = journal.events(lilas, journal.Filters()).filter(target_id=sent)
    assert {(e.action, e.details.get("reason")) for e in found if not e.actor_id} >= {
        ("message.move", "retention"),
        ("message.delete", "trash_retention"),
    }
    # Not in the correspondent's journal, which has Bob's own deletion.
    theirs = journal.events(other, journal.Filters()).filter(target_id=sent)
    assert theirs.filter(action="message.delete", actor_id=str(bob.pk)).exists()
    assert not theirs.filter(actor_id="", details__reason__in=["retention", "trash_retention"]).exists()
    # Copies of both organisations emptied from the trash at once: one deletion each.
    both = (
        api_client(bob)
        .post(
            "/api/v1/messages",
            {"sender": bob.personal_mailbox.address, "to": [alice.personal_mailbox.address], "subject": "Autre"},
        )
        .json()["id"]
    )
    _age(both, 91)
    assert messaging.apply_retention(now) == 1
    messaging.move_message(bob, both, "trash")
    assert messaging.purge_old_trash(now + settings.PLI_TRASH_DAYS * DAY + DAY) == 2
    deletions = AuditEvent.objects.filter(action="message.delete", target_id=both)
    assert sorted((e.details["organisation"], e.details["copies"]) for e in deletions) == sorted(
        [(lilas.pk, 1), (other.pk, 1)]
    )


def test_ended_shares_past_the_retention_are_deleted_with_their_keys(db: None) -> None:
    lilas = with_retention(make_organisation("Cabinet des Lilas"), 60)
    doctor = make_user(lilas)
    now = timezone.now()
    expired, _t = make_share(doctor, now=now - 200 * DAY)  # expired 170 days ago
    revoked, _t = make_share(doctor, now=now - 110 * DAY, expires_in_days=90)
    sharing.revoke(doctor, revoked.pk, now=now - 100 * DAY)
    kept, _t = make_share(doctor, now=now - 70 * DAY)  # expired 40 days ago: kept 20 more
    active, _t = make_share(doctor)
    keys = DataKey.objects.count()
    result = sharing.run_periodic(now)
    # Its documents went first (30 days after its end), then the share itself.
    assert result["shares"] == 2
    assert set(PatientShare.objects.values_list("pk", flat=True)) == {kept.pk, active.pk}
    for gone in (expired, revoked):
        assert gone.data_key_id is not None and not DataKey.objects.filter(pk=gone.data_key_id).exists()
    assert DataKey.objects.count() < keys
    events = AuditEvent.objects.filter(action="share.deleted")
    assert [e.details for e in events] == [{"reason": "retention", "organisation": lilas.pk}] * 2
    # Its history stays in the organisation's access journal.
    found = journal.events(lilas, journal.Filters()).filter(target_id=str(revoked.pk))
    assert found.filter(action="share.created").exists() and found.filter(action="share.deleted").exists()
    # Without a retention policy, ended shares stay.
    Organisation.objects.filter(pk=lilas.pk).update(retention_days=None)
    assert sharing.run_periodic(now + 100 * DAY)["shares"] == 0


def test_the_page_does_not_promise_a_trash_the_instance_never_empties(db: None, settings: Any) -> None:
    """With PLI_TRASH_DAYS=0 the trash is never emptied: messages past the retention period
    stay there. The page said they went to a trash « vidée après son propre délai »."""
    organisation = make_organisation("Cabinet des Lilas")
    client = browser(make_user(organisation, role="admin"))
    settings.PLI_TRASH_DAYS = 30
    page = client.get(settings_url(organisation)).content.decode()
    assert "La corbeille est vidée après 30 jours." in page
    settings.PLI_TRASH_DAYS = 0
    page = client.get(settings_url(organisation)).content.decode()
    assert "vidée" not in page
    assert "Sur cette instance, la corbeille ne se vide pas d\u2019elle-même" in page


def test_a_shorter_retention_says_what_goes_to_the_trash_and_waits_for_a_confirmation(db: None, settings: Any) -> None:
    """Set to 30 days in one click, it sent every older letter to the trash that night."""
    lilas = with_retention(make_organisation("Cabinet des Lilas"), 365)
    admin, bob = make_user(lilas, role="admin"), make_user(make_organisation("Clinique du Parc"))
    sent = api_client(admin).post(
        "/api/v1/messages",
        {"sender": admin.personal_mailbox.address, "to": [bob.personal_mailbox.address], "subject": "Ancien"},
    )
    _age(sent.json()["id"], 100)
    client = browser(admin)
    shorter = {"name": lilas.name, "share_expiry_days": "30", "retention_days": "90"}
    asked = client.post(settings_url(lilas), shorter)
    page = asked.content.decode()
    assert asked.status_code == 400
    assert (
        "1 message de plus de 90 jours ira à la corbeille dans les minutes qui viennent, et sera supprimé "
        f"définitivement {settings.PLI_TRASH_DAYS} jours plus tard. Enregistrez à nouveau pour confirmer." in page
    )
    lilas.refresh_from_db()
    assert lilas.retention_days == 365
    assert '<input type="hidden" name="confirm_retention" value="90"' in page
    # Another period typed on that page is asked about again (the confirmation was for 90).
    assert (
        client.post(settings_url(lilas), {**shorter, "retention_days": "60", "confirm_retention": "90"}).status_code
        == 400
    )
    lilas.refresh_from_db()
    assert lilas.retention_days == 365
    # Saved again as the page stands: done.
    assert client.post(settings_url(lilas), {**shorter, "confirm_retention": "90"}).status_code == 302
    lilas.refresh_from_db()
    assert lilas.retention_days == 90
    # Longer, or with nothing that old, nothing to confirm.
    assert client.post(settings_url(lilas), {**shorter, "retention_days": "400"}).status_code == 302
