"""Practitioner to practitioner in a real browser: A writes to B with a PDF and a patient
context; B signs in, sees the banner and the attachment, opens the PDF, replies; A sees the
reply in the thread and the read receipt."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.core.cache import cache

from pli.accounts.models import Mailbox, User
from pli.testing.accounts import TEST_PASSWORD, make_organisation, make_user, totp_code


def _pdf(text: str) -> bytes:
    """A small, valid one-page PDF showing ``text``."""
    stream = f"BT /F1 24 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def _sign_in(page: Any, user: User) -> None:
    page.goto("/messages/")
    page.fill("#id_login", user.email)
    page.fill("#id_password", TEST_PASSWORD)
    page.click("button[type=submit]:has-text('Se connecter')")
    page.fill("#id_code", totp_code())
    page.click("button[type=submit]:has-text('Se connecter')")
    page.wait_for_url("**/messages/**/inbox/")


@pytest.mark.browser
def test_write_read_reply_with_receipt(page: Any, browser: Any, live_server: Any) -> None:
    cache.clear()
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    org_a, org_b = make_organisation("Cabinet des Lilas"), make_organisation("Clinique du Parc")
    alice = make_user(org_a, first_name="Alice", last_name="Martin")
    bob = make_user(org_b, first_name="Bruno", last_name="Petit")
    bob_box = Mailbox.objects.get(owner=bob)

    # Alice writes to Bruno (another organisation), with a PDF and the patient's identity.
    _sign_in(page, alice)
    page.click("text=Écrire un message")
    # The chosen files' sizes are written in the page's language, then in English.
    big = {"name": "irm.dcm", "mimeType": "application/dicom", "buffer": b"\0" * 1_500_000}
    page.set_input_files("#id_attachments", files=[big])
    assert "irm.dcm (1,5\u202fMo)" in page.locator("#file-list").inner_text()
    page.click(".lang-switch button[value=en]")
    page.wait_for_selector("html[lang=en]")
    page.set_input_files("#id_attachments", files=[big])
    assert "irm.dcm (1.5 MB)" in page.locator("#file-list").inner_text()
    page.click(".lang-switch button[value=fr]")
    page.wait_for_selector("html[lang=fr]")
    page.set_input_files("#id_attachments", files=[])
    # Recipients are suggested from the directory as one types.
    page.locator("#id_to").press_sequentially("Bruno Pet", delay=30)
    option = page.locator(f'#directory-results option[value="{bob_box.address}"]')
    option.wait_for(state="attached")
    assert "Bruno" in (option.get_attribute("label") or "")
    page.fill("#id_to", bob_box.address)
    page.fill("#id_subject", "Compte rendu de consultation")
    page.fill("#id_body", "Bonjour, voici le compte rendu. Détails : https://example.org/protocole")
    page.click("summary:has-text('Patient concerné')")
    page.fill("#id_patient_family_name", "Durand")
    page.fill("#id_patient_given_names", "Élodie")
    page.fill("#id_patient_birth_date", "1984-02-15")
    page.select_option("#id_patient_sex", "F")
    page.fill("#id_patient_ins", "284029912345616")  # a typo in the key
    page.set_input_files(
        "#id_attachments",
        files=[{"name": "compte-rendu.pdf", "mimeType": "application/pdf", "buffer": _pdf("Compte rendu")}],
    )
    assert "compte-rendu.pdf" in page.locator("#file-list").inner_text()
    page.click("#send-button")
    # Refused, in French, next to the field; what was typed and the chosen file are kept.
    error = page.locator("#id_patient_ins_error")
    assert "clé de cet INS est fausse" in error.inner_text()
    assert page.get_attribute("#id_patient_ins", "aria-invalid") == "true"
    assert page.input_value("#id_subject") == "Compte rendu de consultation"
    assert page.evaluate("document.getElementById('id_attachments').files.length") == 1
    assert "compte-rendu.pdf" in page.locator("#file-list").inner_text()
    assert page.evaluate("document.activeElement.id") == "id_patient_ins"
    page.fill("#id_patient_ins", "284029912345655")
    page.click("#send-button")
    page.wait_for_url("**/messages/m/**")
    assert "Message envoyé" in page.locator(".flash").inner_text()
    assert "pas encore lu" in page.locator(".mail-receipts").inner_text()

    # Bruno, in his own browser session, finds it unread in his inbox.
    context_b = browser.new_context(base_url=live_server.url, locale="fr-FR", accept_downloads=True)
    page_b = context_b.new_page()
    page_b.set_default_timeout(15_000)
    page_b.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    try:
        _sign_in(page_b, bob)
        assert page_b.locator(".main-nav .unread-count").inner_text().startswith("1")
        row = page_b.locator(".mail-row.is-unread")
        assert "Compte rendu de consultation" in row.inner_text()
        row.locator("a").click()
        page_b.wait_for_url("**/messages/m/**")
        banner = page_b.locator(".patient-banner").inner_text()
        assert "DURAND" in banner and "Élodie" in banner and "284029912345655" in banner
        link = page_b.locator(".mail-body a")
        assert link.get_attribute("href") == "https://example.org/protocole"
        assert link.get_attribute("rel") == "noopener noreferrer nofollow"
        assert "compte-rendu.pdf" in page_b.locator(".mail-attachments").inner_text()

        # The PDF opens in the browser (inline, sandboxed), not as a download.
        with page_b.expect_popup() as popup_info:
            page_b.click(".mail-attachments a[target=_blank]")
        viewer = popup_info.value
        viewer.wait_for_load_state()
        # Shown by the browser's own PDF viewer (a sandboxed document), not downloaded.
        assert viewer.evaluate("document.contentType") == "application/pdf"
        assert "/a/" in viewer.url
        pdf = page_b.request.get(viewer.url)
        assert pdf.status == 200
        assert pdf.headers["content-type"] == "application/pdf"
        assert pdf.headers["content-disposition"].startswith("inline;")
        assert pdf.body().startswith(b"%PDF-1.4")
        viewer.close()

        # He replies.
        page_b.click(".mail-actions a:has-text('Répondre')")
        page_b.wait_for_url("**/messages/compose/**")
        assert page_b.input_value("#id_subject") == "RE : Compte rendu de consultation"
        page_b.fill("#id_body", "Merci, bien reçu. Je la vois la semaine prochaine.")
        page_b.click("#send-button")
        page_b.wait_for_url("**/messages/m/**")
    finally:
        context_b.close()

    # Alice sees the reply in the same thread, and that Bruno read her message.
    page.reload()
    messages = page.locator("article.mail-message")
    assert messages.count() == 2
    assert "Merci, bien reçu" in messages.nth(1).inner_text()
    receipts = messages.nth(0).locator(".mail-receipts")
    if receipts.get_attribute("open") is None:
        receipts.locator("summary").click()
    assert "lu" in receipts.locator(".receipt-read").inner_text()
    # The reply is unread for Alice until she opened the thread, which she just did.
    assert page.locator(".main-nav .unread-count").count() == 0
    assert [p for p in problems if "Content Security Policy" in p] == []


def _end_sessions(page: Any) -> None:
    """Every session ends on the server, and the browser forgets its cookies. Forgetting them
    alone was not an ended session: a request still under way (the directory's suggestions
    for the address just typed) came back with the session's cookie, saved on every
    request, and the form was then sent. Wait for such a request first."""
    from django.contrib.sessions.models import Session

    Session.objects.all().delete()
    page.context.clear_cookies()


@pytest.mark.browser
def test_a_message_written_as_the_session_ends_is_kept_and_sent_after_signing_in_again(
    page: Any, live_server: Any
) -> None:
    """The sign-in page used to be written over the compose page: text and files were lost."""
    from pli.messaging.models import Message

    cache.clear()
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    org = make_organisation("Cabinet des Lilas")
    alice, bob = make_user(org, first_name="Alice"), make_user(org, first_name="Bruno")
    _sign_in(page, alice)
    page.click("text=Écrire un message")
    # The address typed asks the directory for suggestions: answered before the session
    # ends (a request under way as it ends is refused, and the browser says so).
    with page.expect_response(lambda response: response.request.resource_type == "fetch"):
        page.fill("#id_to", Mailbox.objects.get(owner=bob).address)
    page.fill("#id_subject", "Avis cardiologique")
    page.fill("#id_body", "Merci de votre avis sur l'ECG joint.")
    page.set_input_files(
        "#id_attachments", files=[{"name": "ecg.pdf", "mimeType": "application/pdf", "buffer": _pdf("ECG")}]
    )
    _end_sessions(page)  # the session ends (idle too long, signed out elsewhere)
    page.click("button[type=submit]:has-text('Envoyer')")
    alert = page.locator("#compose-form-signed-out")
    alert.wait_for()
    assert "Votre session a pris fin" in alert.inner_text()
    assert page.input_value("#id_subject") == "Avis cardiologique"
    assert page.evaluate("document.getElementById('id_attachments').files.length") == 1
    assert Message.objects.count() == 0

    # Someone else signs in in this browser: what Alice wrote is not sent as theirs.
    cache.clear()  # the authenticator code just used may be given again (as 30 s later)
    other = page.context.new_page()
    _sign_in(other, bob)
    other.close()
    page.evaluate("document.getElementById('compose-form-signed-out').remove()")
    page.click("button[type=submit]:has-text('Envoyer')")
    alert.wait_for()
    assert Message.objects.count() == 0

    # Alice signs in again in another tab, then sends from this one: the form's CSRF token
    # is no longer the browser's, and the script fetches the new one.
    _end_sessions(page)
    cache.clear()
    other = page.context.new_page()
    _sign_in(other, alice)
    other.close()
    page.click("button[type=submit]:has-text('Envoyer')")
    page.wait_for_url("**/messages/m/**")
    message = Message.objects.get()
    assert message.subject == "Avis cardiologique" and message.author == alice
    assert message.attachments.count() == 1
    assert [p for p in problems if "403" not in p and "Forbidden" not in p] == []


@pytest.mark.browser
def test_back_from_a_search_result_returns_to_the_results(page: Any, live_server: Any) -> None:
    """The search is posted (its words stay out of URLs), yet its results are a page the
    browser goes back to, with neither a resubmission prompt nor the words in the address."""
    from pli.messaging import services

    cache.clear()
    org = make_organisation("Cabinet des Lilas")
    alice, bob = make_user(org, first_name="Alice", last_name="Martin"), make_user(org, first_name="Bruno")
    box = Mailbox.objects.get(owner=bob)
    services.seed_messages(Mailbox.objects.get(owner=alice), box, ["Radiographie DUPONTEL", "Autre chose"])
    page.set_default_timeout(15000)
    _sign_in(page, bob)
    page.fill("#quick-q", "dupontel")
    page.press("#quick-q", "Enter")
    page.wait_for_url("**/search/?s=*")
    assert "dupontel" not in page.url.lower()
    page.click("text=Radiographie DUPONTEL")
    page.wait_for_url("**/messages/m/**")
    page.go_back()
    page.wait_for_url("**/search/?s=*")
    assert page.locator("text=Radiographie DUPONTEL").count() == 1
    assert page.locator("text=Autre chose").count() == 0


@pytest.mark.browser
def test_a_practice_answers_the_hospital_from_its_shared_mailbox(browser: Any, page: Any, live_server: Any) -> None:
    """A GP reads the hospital's letter in the team's mailbox: it is read in her own too,
    her answer to all does not come back to her, and the secretary sees who answered."""
    from django.test import Client

    from pli.accounts.services import create_shared_mailbox
    from pli.api.services import create_token

    cache.clear()
    lilas, hospital = make_organisation("Cabinet des Lilas"), make_organisation("CHU")
    claire = make_user(lilas, first_name="Claire", last_name="Petit")
    jeanne = make_user(lilas, first_name="Jeanne", last_name="Martin")
    paul = make_user(hospital, first_name="Paul", last_name="Durand")
    team = create_shared_mailbox(lilas, "Secrétariat", [claire, jeanne])
    cardio = create_shared_mailbox(hospital, "Cardiologie", [paul])
    own = Mailbox.objects.get(owner=jeanne)
    _token, raw = create_token(paul, "test", None)
    sent = Client(HTTP_AUTHORIZATION=f"Bearer {raw}").post(
        "/api/v1/messages",
        {"sender": cardio.address, "to": [team.address, own.address], "subject": "Bilan cardiologique"},
    )
    assert sent.status_code == 201, sent.content

    _sign_in(page, jeanne)
    team_box = page.locator(".mail-box", has_text=team.address)
    team_box.locator("a:has-text('Boîte de réception')").click()
    page.locator(".mail-row a", has_text="Bilan cardiologique").click()
    page.wait_for_url("**/messages/m/**")
    # Read by her in the team's mailbox: nothing left unread in her own either.
    assert page.locator(".mail-sidebar .unread-count").count() == 0
    page.click(".mail-actions a:has-text('Répondre à tous')")
    page.wait_for_url("**/messages/compose/**")
    assert page.input_value("#id_to") == cardio.address
    assert page.input_value("#id_cc") == ""
    page.fill("#id_body", "Merci, nous la recevons jeudi.")
    page.click("#send-button")
    page.wait_for_url("**/messages/m/**")

    cache.clear()  # the authenticator code just used may be given again (as 30 s later)
    context = browser.new_context(base_url=live_server.url, locale="fr-FR")
    other = context.new_page()
    other.set_default_timeout(15_000)
    try:
        _sign_in(other, claire)
        other.goto(f"/messages/{team.pk}/inbox/")
        row = other.locator(".mail-row", has_text="Bilan cardiologique")
        assert "répondu" in row.inner_text()
        row.locator("a").click()
        other.wait_for_url("**/messages/m/**")
        team_line = other.locator(".mail-team").first.inner_text()
        assert "lu par Jeanne Martin" in team_line and "répondu par Jeanne Martin" in team_line
    finally:
        context.close()


@pytest.mark.browser
def test_ticked_letters_are_archived_at_once_and_one_marked_unread_again(page: Any, live_server: Any) -> None:
    from pli.messaging import services

    cache.clear()
    org = make_organisation("Cabinet des Lilas")
    alice, bob = make_user(org, first_name="Alice", last_name="Martin"), make_user(org, first_name="Bruno")
    box = Mailbox.objects.get(owner=bob)
    services.seed_messages(Mailbox.objects.get(owner=alice), box, ["Bilan A", "Bilan B", "Compte rendu C"])
    page.set_default_timeout(15000)
    _sign_in(page, bob)
    boxes = page.locator("input[name=message]")
    assert boxes.count() == 3
    # "Tout sélectionner" (the script's) ticks every box; unticking one leaves it half-ticked.
    select_all = page.get_by_label("Tout sélectionner")
    select_all.check()
    assert all(boxes.nth(i).is_checked() for i in range(3))
    page.get_by_label("Sélectionner «\u00a0Compte rendu C\u00a0»").uncheck()
    assert select_all.evaluate("box => box.indeterminate")
    page.click("button[name=action][value=archive]")
    page.wait_for_selector("text=2 messages archivés.")
    assert page.locator(".mail-row").count() == 1 and "Compte rendu C" in page.locator(".mail-row").inner_text()
    # Read, then marked unread from its page: back in the list, in bold again.
    page.click("text=Compte rendu C")
    page.wait_for_url("**/messages/m/**")
    page.click("button:has-text('Marquer comme non lu')")
    page.wait_for_selector("text=Marqué comme non lu.")
    assert page.locator(".mail-row.is-unread").count() == 1


@pytest.mark.browser
def test_a_letter_prints_without_the_pages_controls(page: Any, live_server: Any) -> None:
    """A letter printed for the paper record: its header and text, not the navigation, the
    mailboxes or the buttons, which mean nothing on paper."""
    from pli.messaging import services

    cache.clear()
    org = make_organisation("Cabinet des Lilas")
    alice, bob = make_user(org, first_name="Alice", last_name="Martin"), make_user(org, first_name="Bruno")
    box = Mailbox.objects.get(owner=bob)
    services.seed_messages(Mailbox.objects.get(owner=alice), box, ["Compte rendu opératoire"])
    page.set_default_timeout(15000)
    _sign_in(page, bob)
    page.click("text=Compte rendu opératoire")
    page.wait_for_url("**/messages/m/**")
    on_screen = [".site-header", ".mail-sidebar", ".mail-back", ".mail-actions"]
    assert all(page.locator(selector).first.is_visible() for selector in on_screen)
    page.emulate_media(media="print")
    assert not any(page.locator(selector).first.is_visible() for selector in on_screen)
    assert page.locator(".mail-message-head").first.is_visible() and page.locator(".mail-message").first.is_visible()
    assert "Compte rendu opératoire" in page.locator("main h1").inner_text()
    assert "Alice Martin" in page.locator(".mail-message-head").first.inner_text()
    # Chromium lays it out for paper without complaint.
    assert page.pdf()[:5] == b"%PDF-"


def apart(page: Any) -> None:
    """A confirmation's two buttons on a phone: side by side or one under the other, with
    room between them, never touching (a tap meant for « Annuler » deleting for good)."""
    delete = page.locator("form button.danger").bounding_box()
    cancel = page.locator("form a.button.secondary").bounding_box()
    below = cancel["y"] - (delete["y"] + delete["height"])
    beside = cancel["x"] - (delete["x"] + delete["width"])
    assert below >= 8 or (beside >= 8 and abs(cancel["y"] - delete["y"]) < 2), (delete, cancel)


@pytest.mark.browser
def test_ticked_letters_are_deleted_for_good_from_the_trash_on_a_phone(page: Any, live_server: Any, axe: Any) -> None:
    """On a phone (360 px) the list's buttons wait for a ticked letter, then show in a bar
    at the bottom of the screen, in a few short rows rather than a column of full-width
    buttons; « Supprimer définitivement » asks with how many are ticked, and « Vider la
    corbeille » asks too."""
    import os

    from pli.messaging import services
    from pli.messaging.models import Delivery, Folder

    cache.clear()
    org = make_organisation("Cabinet des Lilas")
    alice, bob = make_user(org, first_name="Alice", last_name="Martin"), make_user(org, first_name="Bruno")
    box = Mailbox.objects.get(owner=bob)
    services.seed_messages(
        Mailbox.objects.get(owner=alice), box, ["Bilan A", "Bilan B", "Compte rendu C", "Courrier D"]
    )
    page.set_viewport_size({"width": 360, "height": 740})
    _sign_in(page, bob)
    shots = os.environ.get("PLI_SCREENSHOTS")  # to look at them
    form = page.locator("#mail-selection")
    buttons = form.locator("button")

    def rows() -> int:
        return len({round(buttons.nth(i).bounding_box()["y"]) for i in range(buttons.count())})

    def bar_at_bottom() -> None:
        bar = form.locator(".mail-selection-actions").bounding_box()
        assert bar is not None and abs(bar["y"] + bar["height"] - 740) < 1, bar

    # Nothing ticked: no button yet, only « Tout sélectionner ».
    assert buttons.count() == 4 and not any(buttons.nth(i).is_visible() for i in range(4))
    assert form.bounding_box()["height"] < 60
    page.get_by_label("Sélectionner «\u00a0Bilan A\u00a0»").check()
    if shots:
        page.screenshot(path=f"{shots}/inbox-360.png", full_page=True)
    # The inbox's four buttons: two rows of two, in a bar at the bottom of the screen.
    assert rows() == 2
    bar_at_bottom()
    page.get_by_label("Sélectionner «\u00a0Bilan A\u00a0»").uncheck()
    assert not buttons.first.is_visible()
    Delivery.objects.filter(mailbox=box).update(folder=Folder.TRASH)
    page.goto(f"/messages/{box.pk}/trash/")
    page.locator("[data-select-all]").check()
    if shots:
        page.screenshot(path=f"{shots}/trash-360.png", full_page=True)
    assert buttons.count() == 2 and rows() == 1
    bar_at_bottom()
    page.locator("[data-select-all]").uncheck()
    axe.check(page, "trash, on a phone")
    # Without the script's dialogs (taken off here), the server asks on a page of its own.
    page.evaluate(
        "document.querySelectorAll('[data-confirm], [data-confirm-one]').forEach(e => {"
        " delete e.dataset.confirm; delete e.dataset.confirmOne; })"
    )
    page.get_by_label("Sélectionner «\u00a0Courrier D\u00a0»").check()
    page.click("button[name=action][value=delete]")
    page.wait_for_selector("text=Supprimer définitivement 1 message\u00a0? C\u2019est irréversible.")
    axe.check(page, "confirming a deletion for good, without script")
    apart(page)
    page.click("text=Annuler")
    page.wait_for_url(f"**/messages/{box.pk}/trash/")
    page.evaluate("document.querySelectorAll('[data-confirm]').forEach(e => { delete e.dataset.confirm; })")
    page.click("button:has-text('Vider la corbeille')")
    page.wait_for_selector(
        "text=Supprimer définitivement les 4 messages de la corbeille\u00a0? C\u2019est irréversible."
    )
    axe.check(page, "confirming emptying the trash, without script")
    apart(page)
    page.click("text=Annuler")
    page.wait_for_url(f"**/messages/{box.pk}/trash/")
    assert Delivery.objects.filter(mailbox=box).count() == 4
    axe.assert_clean()
    asked: list[str] = []

    def answer(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.on("dialog", answer)
    page.get_by_label("Sélectionner «\u00a0Bilan A\u00a0»").check()
    page.get_by_label("Sélectionner «\u00a0Bilan B\u00a0»").check()
    page.click("button[name=action][value=delete]")
    page.wait_for_selector("text=2 messages supprimés définitivement.")
    assert asked == ["Supprimer définitivement 2 messages\u00a0? C\u2019est irréversible."]
    assert page.locator(".mail-row").count() == 2
    page.click("button:has-text('Vider la corbeille')")
    page.wait_for_selector("text=Corbeille vidée\u00a0: 2 messages supprimés définitivement.")
    assert asked[-1].startswith("Vider la corbeille\u00a0?")
    assert not Delivery.objects.filter(mailbox=box).exists()


@pytest.mark.browser
def test_on_a_phone_the_letters_come_first(page: Any, live_server: Any, axe: Any) -> None:
    """A GP opening Pli on her phone sees her letters on the first screen: the directory and
    account links wait under « Menu », the list's actions under the thumb once a letter is
    ticked. Before, navigation, mailbox, search and four rows of buttons filled the screen.
    Ticking a letter low on the screen never leaves it under the bar that appears."""
    from pli.messaging import services

    cache.clear()
    org = make_organisation("Cabinet des Lilas")
    alice, bob = make_user(org, first_name="Alice", last_name="Martin"), make_user(org, first_name="Bruno")
    services.seed_messages(
        Mailbox.objects.get(owner=alice), Mailbox.objects.get(owner=bob), [f"Bilan {n}" for n in range(12)]
    )
    page.set_viewport_size({"width": 360, "height": 740})
    _sign_in(page, bob)
    # No « Connexion avec … réussie » above the list: she knows, she just did it.
    assert page.locator(".flash").count() == 0
    rows = page.locator(".mail-row")
    first = rows.first.bounding_box()
    assert first is not None and first["y"] + first["height"] <= 740, first
    directory = page.locator(".site-header a:has-text('Annuaire')")
    assert directory.count() == 2 and not directory.first.is_visible() and not directory.last.is_visible()
    axe.check(page, "inbox on a phone")

    # The last letter wholly on the screen, ticked: the page scrolls it above the bar.
    low = next(i for i in reversed(range(rows.count())) if rows.nth(i).bounding_box()["y"] + 70 < 740)
    rows.nth(low).locator("input[type=checkbox]").check()
    bar = page.locator(".mail-selection-actions").bounding_box()
    ticked = rows.nth(low).bounding_box()
    assert bar is not None and ticked is not None
    assert ticked["y"] + ticked["height"] <= bar["y"], (ticked, bar)
    axe.check(page, "inbox on a phone, a letter ticked")
    # Tabbing down the list, the focused letter is never hidden under the bar (WCAG 2.4.11).
    rows.nth(low).locator("a").focus()
    for _ in range(4):
        page.keyboard.press("Tab")
        focused = page.evaluate("document.activeElement.getBoundingClientRect().bottom")
        assert focused <= bar["y"] + 1, (focused, bar)
    page.click("button[name=action][value=archive]")
    page.wait_for_selector("text=1 message archivé.")
    assert rows.count() == 11
    # A slip of the thumb: « Annuler » beside the message puts it back.
    axe.check(page, "inbox on a phone, after archiving")
    page.click(".flash button:has-text('Annuler')")
    page.wait_for_selector("text=1 message remis à sa place.")
    assert rows.count() == 12
    # A letter, and the compose form, straight under the navigation: no mailbox links first.
    rows.first.locator("a").click()
    page.wait_for_url("**/messages/m/**")
    assert not page.locator(".mail-sidebar").is_visible()
    assert page.locator(".mail-main h1").bounding_box()["y"] < 350
    page.goto("/messages/compose/")
    assert not page.locator(".mail-sidebar").is_visible()
    assert page.locator("#id_to").bounding_box()["y"] < 450
    page.go_back()

    page.click(".nav-menu summary")
    assert directory.last.is_visible()
    axe.check(page, "the menu open on a phone")
    page.click(".nav-menu button:has-text('Se déconnecter')")
    page.wait_for_url("**/login/**")
    axe.assert_clean()


@pytest.mark.browser
def test_a_long_list_of_letters_to_delete_for_good_scrolls_from_the_keyboard(
    page: Any, live_server: Any, axe: Any
) -> None:
    """The confirmation lists the ticked letters in a box of half the screen's height, which
    scrolls: someone using the keyboard alone reaches it and scrolls it too (WCAG 2.1.1)."""
    from pli.messaging import services
    from pli.messaging.models import Delivery, Folder

    cache.clear()
    org = make_organisation("Cabinet des Lilas")
    alice, bob = make_user(org, first_name="Alice", last_name="Martin"), make_user(org, first_name="Bruno")
    box = Mailbox.objects.get(owner=bob)
    services.seed_messages(Mailbox.objects.get(owner=alice), box, [f"Bilan {n}" for n in range(40)])
    Delivery.objects.filter(mailbox=box).update(folder=Folder.TRASH)
    page.set_viewport_size({"width": 360, "height": 740})
    _sign_in(page, bob)
    page.goto(f"/messages/{box.pk}/trash/")
    page.evaluate("document.querySelectorAll('[data-confirm-one]').forEach(e => { delete e.dataset.confirmOne; })")
    page.locator("[data-select-all]").check()
    page.click("button[name=action][value=delete]")
    page.wait_for_selector("text=Supprimer définitivement 40 messages\u00a0? C\u2019est irréversible.")
    listed = page.locator(".mail-confirm-list")
    assert listed.evaluate("e => e.scrollHeight > e.clientHeight")
    listed.focus()
    assert listed.evaluate("e => e === document.activeElement")
    page.keyboard.press("PageDown")
    page.wait_for_timeout(300)  # (wait_for_function evaluates a string: the page's CSP refuses it)
    assert listed.evaluate("e => e.scrollTop") > 0
    axe.check(page, "confirming a long deletion for good, without script")
    axe.assert_clean()
    assert Delivery.objects.filter(mailbox=box).count() == 40


@pytest.mark.browser
def test_a_reply_starts_above_the_quote_and_a_letter_being_written_is_not_left_unasked(
    page: Any, live_server: Any
) -> None:
    """A GP interrupted mid-letter clicks elsewhere: the browser asks before the letter is
    lost; sent, it goes without a question. A reply's caret waits above the quoted text."""
    from pli.messaging import services

    cache.clear()
    org = make_organisation("Cabinet des Lilas")
    alice, bob = make_user(org, first_name="Alice", last_name="Martin"), make_user(org, first_name="Bruno")
    box = Mailbox.objects.get(owner=bob)
    services.seed_messages(Mailbox.objects.get(owner=alice), box, ["Compte rendu"], body="Chère consœur,\nMerci.")
    page.set_default_timeout(15000)
    _sign_in(page, bob)
    page.click("text=Compte rendu")
    page.wait_for_url("**/messages/m/**")
    page.click("a:has-text('Répondre')")
    page.wait_for_url("**/compose/**")
    focus = page.evaluate("[document.activeElement.id, document.activeElement.selectionStart]")
    assert focus == ["id_body", 0]
    assert "> Chère consœur," in page.input_value("#id_body")

    asked: list[str] = []

    def answer(dialog: Any) -> None:
        asked.append(dialog.type)
        dialog.dismiss()  # stay on the page

    page.on("dialog", answer)
    # Nothing typed yet: leaving asks nothing.
    page.go_back()
    page.wait_for_url("**/messages/m/**")
    assert asked == []
    page.click("a:has-text('Répondre')")
    page.wait_for_url("**/compose/**")
    page.keyboard.type("Je le préviens.")
    page.click("nav >> text=Annuaire")
    assert asked == ["beforeunload"]
    assert "/compose/" in page.url and page.input_value("#id_body").startswith("Je le préviens.")
    page.click("#send-button")
    page.wait_for_url("**/messages/m/**")
    assert asked == ["beforeunload"]
    # A new letter starts with its recipients.
    page.goto("/messages/compose/")
    assert page.evaluate("document.activeElement.id") == "id_to"


@pytest.mark.browser
def test_an_inbox_left_open_learns_of_new_letters(page: Any, live_server: Any) -> None:
    """A GP keeps her inbox open between two patients: a letter that arrives meanwhile
    shows in the counts, the tab's title and a notice, without reloading the page."""
    from django.test import Client

    from pli.api.services import create_token

    cache.clear()
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    lilas = make_organisation("Cabinet des Lilas")
    jeanne = make_user(lilas, first_name="Jeanne", last_name="Martin")
    paul = make_user(lilas, first_name="Paul", last_name="Durand")
    _sign_in(page, jeanne)
    assert page.locator(".main-nav .unread-count").count() == 0
    assert page.locator(".mail-arrivals").is_hidden()
    page.evaluate("Pli.checkActivity()")
    assert page.locator(".mail-arrivals").is_hidden()  # nothing new: nothing said

    _token, raw = create_token(paul, "test", None)
    sent = Client(HTTP_AUTHORIZATION=f"Bearer {raw}").post(
        "/api/v1/messages",
        {
            "sender": Mailbox.objects.get(owner=paul).address,
            "to": [Mailbox.objects.get(owner=jeanne).address],
            "subject": "Résultats de Mme Roux",
        },
    )
    assert sent.status_code == 201, sent.content
    page.evaluate("Pli.checkActivity()")  # what the page does every minute

    notice = page.locator(".mail-arrivals")
    assert notice.get_attribute("role") == "status"
    assert notice.inner_text().startswith("1 nouveau message est arrivé.")
    assert page.locator(".main-nav .unread-count").inner_text().startswith("1")
    assert page.locator(".mail-sidebar .unread-count").inner_text().startswith("1")
    assert page.title().startswith("(1) Boîte de réception")
    assert page.locator(".mail-row", has_text="Résultats de Mme Roux").count() == 0  # not listed behind her back
    notice.locator("a:has-text('Afficher')").click()
    page.wait_for_url("**/messages/**/inbox/")
    assert page.locator(".mail-row", has_text="Résultats de Mme Roux").count() == 1
    assert page.locator(".mail-arrivals").is_hidden()
    assert problems == []


@pytest.mark.browser
def test_the_page_warns_before_the_session_ends_and_lets_her_stay(page: Any, live_server: Any, settings: Any) -> None:
    """The session ends after its idle time: two minutes before, the page says so and
    « Rester connecté » keeps it; once it has ended, the page says that nothing more can be
    sent from it, instead of a letter lost at « Envoyer »."""
    from django.contrib.sessions.models import Session
    from django.utils import timezone

    cache.clear()
    settings.SESSION_COOKIE_AGE = 126  # the warning comes six seconds after each real request
    jeanne = make_user(make_organisation("Cabinet des Lilas"), first_name="Jeanne", last_name="Martin")
    _sign_in(page, jeanne)
    page.goto("/messages/compose/")
    page.fill("#id_subject", "Courrier en cours")
    warning = page.locator(".session-warning")
    warning.locator("text=Sans activité de votre part, votre session se fermera").wait_for(timeout=20_000)
    assert warning.get_attribute("role") == "alert"
    key = Session.objects.get().session_key
    before = Session.objects.get(session_key=key).expire_date
    # While it shows, the page's end has room below it: « Envoyer » is not behind it.
    assert page.evaluate("document.documentElement.classList.contains('has-session-warning')")
    warning.locator("button:has-text('Rester connecté')").click()
    warning.locator("text=Sans activité").wait_for(state="detached")
    assert Session.objects.get(session_key=key).expire_date > before
    assert page.input_value("#id_subject") == "Courrier en cours"  # nothing reloaded
    # The button went with the warning: the focus is back where she was typing.
    assert page.evaluate("document.activeElement.id") == "id_subject"

    Session.objects.filter(session_key=key).update(expire_date=timezone.now() - datetime.timedelta(seconds=1))
    page.evaluate("Pli.checkActivity()")
    assert "Votre session s\u2019est fermée. Reconnectez-vous dans un nouvel onglet" in warning.inner_text()
    again = warning.locator("a:has-text('Se reconnecter (nouvel onglet)')")
    assert again.get_attribute("href") == "/login/?next=%2Fmessages%2Fcompose%2F"
    assert again.get_attribute("target") == "_blank"
    # Signed in again in another tab: this page takes up the new session, and what she
    # wrote can be sent.
    other = page.context.new_page()
    cache.clear()
    _sign_in(other, jeanne)
    other.close()
    page.evaluate("Pli.checkActivity()")
    assert "fermée" not in warning.inner_text()
    assert page.input_value("#id_subject") == "Courrier en cours"


@pytest.mark.browser
def test_typing_keeps_a_short_session_alive(page: Any, live_server: Any, settings: Any) -> None:
    """With a 3-minute idle time, typing a letter every ten seconds let the session end
    mid-sentence: the page counted typing once every five minutes only."""
    cache.clear()
    settings.SESSION_COOKIE_AGE = 15  # typing counts after a third of it: 5 seconds
    jeanne = make_user(make_organisation("Cabinet des Lilas"), first_name="Jeanne", last_name="Martin")
    _sign_in(page, jeanne)
    page.goto("/messages/compose/")
    page.wait_for_timeout(6_000)
    with page.expect_response(lambda r: r.url.endswith("/account/session/stay/")) as stayed:
        page.locator("#id_body").press_sequentially("Cher confrère")
    assert stayed.value.status == 204
