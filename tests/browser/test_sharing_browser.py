"""A patient share end to end in Debian's Chromium: the practitioner creates a share with a
PDF; the test reads the e-mail from a real SMTP server on loopback and the code from the SMS
file; the "patient", in a fresh browser context, opens the link, gives the birth date and
the code, views the PDF and downloads it; the practitioner then sees "downloaded"."""

from __future__ import annotations

import datetime
import re
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone, translation

from messaging.factories import api_client, personal_mailbox
from pli.sharing.models import PatientSession, PatientShare, ShareDocument, ShareReply
from pli.sharing.uploads import document_rules, empty_file_message
from pli.testing.accounts import TEST_PASSWORD, make_organisation, make_user, totp_code
from sharing.helpers import Patient, last_code, link_token, make_share, pdf_bytes, run_tasks


def watch(page: Any) -> tuple[list[str], list[str]]:
    problems: list[str] = []
    external: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on(
        "request",
        lambda req: (
            external.append(req.url) if not req.url.startswith(("http://localhost", "http://127.0.0.1")) else None
        ),
    )
    return problems, external


@pytest.mark.browser
def test_share_a_pdf_with_a_patient(
    page: Any, browser: Any, live_server: Any, smtp_server: Any, settings: Any, tmp_path: Path
) -> None:
    cache.clear()
    settings.PLI_BLOB_DIR = tmp_path / "blobs"
    settings.PLI_SMS_URL = f"file://{tmp_path / 'sms'}"
    doctor = make_user(make_organisation("Cabinet des Lilas"), first_name="Jeanne", last_name="Martin")
    pdf = pdf_bytes("Compte rendu")
    problems, external = watch(page)

    # The practitioner signs in (password + authenticator code) and creates the share.
    page.goto("/shares/new")
    page.fill("#id_login", doctor.email)
    page.fill("#id_password", TEST_PASSWORD)
    page.click("button[type=submit]:has-text('Se connecter')")
    page.fill("#id_code", totp_code())
    page.click("button[type=submit]:has-text('Se connecter')")
    page.wait_for_url("**/shares/new")
    page.get_by_label("Nom de famille").fill("Durand")
    page.get_by_label("Prénom(s)").fill("Élodie")
    page.get_by_label("Date de naissance").fill("15/02/1984")
    # A landline by mistake: refused, with the focus on that field and the PDF still chosen.
    page.get_by_label("Téléphone mobile").fill("01 45 67 89 01")
    page.get_by_label("Adresse e-mail").fill("elodie.durand@example.org")
    page.get_by_label("Message au patient (facultatif)").fill("Voici le compte rendu de votre examen.")
    page.set_input_files(
        "#id_documents", files=[{"name": "compte-rendu.pdf", "mimeType": "application/pdf", "buffer": pdf}]
    )
    page.click("#share-submit")
    page.wait_for_selector("#id_patient_mobile_error")
    assert page.evaluate("document.activeElement.id") == "id_patient_mobile"
    assert page.evaluate("document.getElementById('id_documents').files.length") == 1
    assert problems == ["Failed to load resource: the server responded with a status of 400 (Bad Request)"]
    problems.clear()
    page.get_by_label("Téléphone mobile").fill("06 12 34 56 78")
    page.click("#share-submit")
    page.wait_for_url("**/shares/*")
    assert page.locator(".share-status").first.get_attribute("data-status") == "sent"

    # The worker delivers the link by e-mail (real SMTP); the code will come by SMS (file),
    # the other channel.
    run_tasks()
    (mail,) = smtp_server.wait_for(1)
    assert mail.recipients == ["elodie.durand@example.org"]
    assert "Durand" not in mail.body and "compte-rendu" not in mail.body
    token = link_token(mail.body)
    assert list((tmp_path / "sms").glob("*.json")) == []

    # The patient, in a browser of their own.
    context = browser.new_context(base_url=live_server.url, locale="fr-FR", accept_downloads=True)
    patient = context.new_page()
    patient.set_default_timeout(15_000)
    patient_problems, patient_external = watch(patient)
    viewed: list[Any] = []
    context.on("response", lambda r: viewed.append(r) if r.url.endswith("/view") else None)
    patient.goto(f"/p/{token}")
    assert "Jeanne Martin" in patient.content()
    patient.get_by_label("Votre date de naissance").fill("15/02/1984")
    patient.click("button[type=submit]:has-text('Continuer')")
    patient.wait_for_url(f"**/p/{token}/code**")
    run_tasks()
    patient.get_by_label("Code reçu").fill(last_code())
    patient.click("button[type=submit]:has-text('Ouvrir mes documents')")
    patient.wait_for_url(f"**/p/{token}/documents")
    assert "Voici le compte rendu de votre examen." in patient.content()
    assert "compte-rendu.pdf" in patient.content()

    # View the PDF in the browser's viewer (a sandboxed response), then download it.
    with context.expect_page() as opened:
        patient.get_by_role("link", name="Afficher compte-rendu.pdf").click()
    viewer = opened.value
    # A sandboxed document never fires "load" in Chromium's PDF viewer: wait for the commit.
    viewer.wait_for_load_state("commit")
    assert viewer.url.endswith("/view")
    (shown,) = viewed
    headers = shown.all_headers()  # .headers leaves out security headers
    assert shown.status == 200 and headers["content-type"] == "application/pdf"
    assert headers["content-security-policy"].startswith("sandbox")
    assert headers["content-disposition"].startswith("inline")
    viewer.close()
    with patient.expect_download() as download_info:
        patient.get_by_role("link", name="Télécharger compte-rendu.pdf").click()
    download = download_info.value
    assert download.suggested_filename == "compte-rendu.pdf"
    assert Path(download.path()).read_bytes() == pdf
    patient.reload()
    assert patient.locator(".share-history li").count() >= 3  # opened, viewed, downloaded
    # Printed, the page keeps the message and the documents' names, not the buttons.
    patient.emulate_media(media="print")
    assert patient.locator(".patient-documents").is_visible() and patient.locator(".patient-message").is_visible()
    assert not patient.locator(".document-actions").first.is_visible()
    assert not patient.locator(".site-header").is_visible()
    context.close()

    # Back to the practitioner.
    page.reload()
    assert page.locator(".share-status").first.get_attribute("data-status") == "downloaded"

    # Revoking asks first (it cannot be undone): dismissed, nothing happens; accepted, done.
    asked: list[str] = []

    def answer(accept: bool) -> Any:
        def handle(dialog: Any) -> None:
            asked.append(dialog.message)
            dialog.accept() if accept else dialog.dismiss()

        return handle

    page.once("dialog", answer(False))
    page.get_by_role("button", name="Révoquer le lien").click()
    assert asked and "ne pourra plus ouvrir" in asked[0]
    assert PatientShare.objects.get().status == "downloaded"
    page.once("dialog", answer(True))
    with page.expect_navigation():
        page.get_by_role("button", name="Révoquer le lien").click()
    assert PatientShare.objects.get().status == "revoked"
    assert problems == [] and patient_problems == []
    assert external == [] and patient_external == []


def _idle_for(share: PatientShare, minutes: float) -> None:
    """Time passes on the server: the patient's sessions were last seen ``minutes`` ago."""
    seen = timezone.now() - datetime.timedelta(minutes=minutes)
    PatientSession.objects.filter(share=share).update(last_seen_at=seen)


def _signed_in_phone(browser: Any, live_server: Any, token: str) -> tuple[Any, Any]:
    """A phone's browser context, and a page in it, where the patient of ``token`` has
    already confirmed who they are (the session's cookie comes from the test client)."""
    signed_in = Patient(token)
    assert signed_in.sign_in().status_code == 200
    context = browser.new_context(
        base_url=live_server.url, locale="fr-FR", viewport={"width": 360, "height": 640}, is_mobile=True, has_touch=True
    )
    cookie = signed_in.client.cookies["pli_patient"].value
    context.add_cookies([{"name": "pli_patient", "value": cookie, "url": f"{live_server.url}/p/"}])
    page = context.new_page()
    page.set_default_timeout(15_000)
    return context, page


@pytest.mark.browser
def test_a_reply_written_for_twenty_minutes_is_not_lost(
    browser: Any, live_server: Any, settings: Any, tmp_path: Path, axe: Any
) -> None:
    """The session ends after 15 idle minutes; writing is activity. The page's clock and the
    server's sessions are moved forward together."""
    cache.clear()
    settings.PLI_BLOB_DIR = tmp_path / "blobs"
    settings.PLI_SMS_URL = f"file://{tmp_path / 'sms'}"
    share, token = make_share(allow_reply=True)
    context, page = _signed_in_phone(browser, live_server, token)
    problems, external = watch(page)
    page.clock.install()

    def keeps_alive() -> Any:
        return page.expect_response(lambda r: r.url.endswith("/alive"))

    try:
        page.goto(f"/p/{token}/documents")
        box = page.locator("#id_text")
        for minute in range(4):  # twenty minutes of writing
            _idle_for(share, 5)
            page.clock.fast_forward("05:00")
            with keeps_alive() as answer:
                box.press_sequentially(f"Ligne {minute}. ")
            assert answer.value.status == 204
        assert page.locator("#reply-session").count() == 0

        # A pause: two minutes before the end the page says so, without taking the focus
        # from the text; « Rester connecté » keeps the session.
        _idle_for(share, 12.5)
        page.clock.fast_forward("12:30")
        warning = page.locator("#reply-session[role=alert]")
        assert "se terminera dans 2 minutes" in warning.inner_text()
        assert page.evaluate("document.activeElement.id") == "id_text"
        axe.check(page, "reply, session ending")
        stay = page.get_by_role("button", name="Rester connecté").bounding_box()
        assert stay is not None and stay["height"] >= 44
        with keeps_alive() as answer:
            page.get_by_role("button", name="Rester connecté").click()
        assert answer.value.status == 204
        assert page.locator("#reply-session").count() == 0
        # The button went with the warning: the focus is back in the text, not at the top.
        assert page.evaluate("document.activeElement.id") == "id_text"

        _idle_for(share, 5)
        page.clock.fast_forward("05:00")
        page.click("form[action$='/reply'] button[type=submit]")
        page.wait_for_url("**/documents?replied=1")
        assert ShareReply.objects.filter(share=share).count() == 1

        # Pli cannot answer for a moment (a 503 while its database restarts): that says
        # nothing of the session, which the page must not declare ended.
        page.route("**/alive", lambda route: route.fulfill(status=503, body=""))
        page.clock.fast_forward("01:10")
        with keeps_alive() as answer:
            page.locator("#id_text").press_sequentially("x")
        assert answer.value.status == 503
        page.wait_for_timeout(300)
        assert page.locator("#reply-session").count() == 0
        page.unroute("**/alive")
        # The browser logs the 503 it was given; that one is this test's own doing.
        problems[:] = [problem for problem in problems if "status of 503" not in problem]

        # Away for twenty minutes: the session has ended. Sending is held back, the text
        # stays on the screen to be copied, and the page says why.
        box = page.locator("#id_text")
        box.fill("Une réponse écrite trop tard")
        _idle_for(share, 20)
        page.clock.fast_forward("20:00")
        page.click("form[action$='/reply'] button[type=submit]")
        ended = page.locator("#reply-session[role=alert]")
        ended.wait_for()
        page.wait_for_function("() => document.activeElement.id === 'reply-session'")
        assert "n\u2019a pas été envoyée" in ended.inner_text()
        assert page.url.endswith("/documents?replied=1")
        assert box.input_value() == "Une réponse écrite trop tard"
        assert ShareReply.objects.filter(share=share).count() == 1
        axe.check(page, "reply, session ended")
    finally:
        context.close()
    assert problems == [] and external == []
    axe.assert_clean()


@pytest.mark.browser
def test_a_link_withdrawn_while_the_patient_writes_is_not_called_inactivity(
    browser: Any, live_server: Any, settings: Any, tmp_path: Path
) -> None:
    """The practitioner revokes the link while the patient writes: the page said « Votre
    session a pris fin (15 minutes sans activité) » and to open the link again, which only
    says « Lien retiré »."""
    from pli.sharing import services

    cache.clear()
    settings.PLI_BLOB_DIR = tmp_path / "blobs"
    share, token = make_share(allow_reply=True)
    context, page = _signed_in_phone(browser, live_server, token)
    page.clock.install()
    try:
        page.goto(f"/p/{token}/documents")
        services.revoke(share.created_by, share.pk)
        page.clock.fast_forward("05:00")
        with page.expect_response(lambda r: r.url.endswith("/alive")) as answer:
            page.locator("#id_text").press_sequentially("Bonjour")
        assert answer.value.status == 410
        notice = page.locator("#reply-session[role=alert]")
        notice.wait_for()
        assert "Cette page ne peut plus être utilisée" in notice.inner_text()
        assert "sans activité" not in notice.inner_text()
        assert page.locator("#id_text").input_value() == "Bonjour"
    finally:
        context.close()


@pytest.mark.browser
def test_an_empty_reply_refused_is_settled_by_a_file_chosen(
    browser: Any, live_server: Any, settings: Any, tmp_path: Path
) -> None:
    """After « Écrivez un message ou ajoutez un fichier. », choosing a photo left the refusal
    on screen and the box marked invalid: the reply still looked wrong."""
    cache.clear()
    settings.PLI_BLOB_DIR = tmp_path / "blobs"
    _share, token = make_share(allow_reply=True)
    context, page = _signed_in_phone(browser, live_server, token)
    try:
        page.goto(f"/p/{token}/documents")
        page.click("form[action$='/reply'] button[type=submit]")
        refusal = page.locator("#reply-error")
        refusal.wait_for()
        assert "Écrivez un message ou ajoutez un fichier." in refusal.inner_text()
        assert page.locator("#id_text").get_attribute("aria-invalid") == "true"
        page.set_input_files(
            "#id_files", files=[{"name": "photo.pdf", "mimeType": "application/pdf", "buffer": pdf_bytes("p")}]
        )
        refusal.wait_for(state="detached")
        assert page.locator("#id_text").get_attribute("aria-invalid") is None
        assert page.locator("#id_text").get_attribute("aria-describedby") == "id_text_helptext"
    finally:
        context.close()


@pytest.mark.browser
def test_reply_files_are_checked_as_soon_as_they_are_chosen(
    browser: Any, live_server: Any, settings: Any, tmp_path: Path, axe: Any
) -> None:
    """A photo over the limit, one file too many or a file of another kind is refused on the
    phone, before anything is sent (over a weak connection a 15 MB photo took a minute to
    upload, only to be refused), in the server's words, beside the field."""
    cache.clear()
    settings.PLI_BLOB_DIR = tmp_path / "blobs"
    share, token = make_share(allow_reply=True)
    context, page = _signed_in_phone(browser, live_server, token)
    problems, external = watch(page)
    posted: list[str] = []
    page.on("request", lambda r: posted.append(r.url) if r.method == "POST" and r.url.endswith("/reply") else None)
    photo = b"\xff\xd8\xff\xe0" + b"\0" * 1000
    error = page.locator("#reply-files-error[role=alert]")
    files = page.locator("#id_files")
    try:
        page.goto(f"/p/{token}/documents")
        page.locator("#id_text").fill("Voici la photo demandée.")

        files.set_input_files([{"name": "plaie.jpg", "mimeType": "image/jpeg", "buffer": photo + b"\0" * 10**7}])
        assert error.inner_text() == "Chaque fichier peut faire au plus 10 Mo."
        assert files.get_attribute("aria-invalid") == "true"
        assert "reply-files-error" in (files.get_attribute("aria-describedby") or "").split()
        axe.check(page, "reply, file too large")
        page.click("form[action$='/reply'] button[type=submit]")
        assert page.evaluate("document.activeElement.id") == "id_files"

        too_many = [{"name": f"photo-{n}.jpg", "mimeType": "image/jpeg", "buffer": photo} for n in range(6)]
        files.set_input_files(too_many)
        assert error.inner_text() == "Au plus 5 fichiers peuvent être envoyés à la fois."

        files.set_input_files([{"name": "notes.docx", "mimeType": "application/msword", "buffer": b"PK\x03\x04"}])
        assert "«\u00a0notes.docx\u00a0» ne peut pas être envoyé" in error.inner_text()
        page.click("form[action$='/reply'] button[type=submit]")
        assert posted == []
        assert ShareReply.objects.filter(share=share).count() == 0

        # Chosen again, right: the refusal goes, and the reply leaves with the text typed.
        files.set_input_files([{"name": "plaie.jpg", "mimeType": "image/jpeg", "buffer": photo}])
        assert error.count() == 0
        assert files.get_attribute("aria-invalid") is None
        assert files.get_attribute("aria-describedby") == "id_files_helptext"
        page.click("form[action$='/reply'] button[type=submit]")
        page.wait_for_url("**/documents?replied=1")
        assert len(posted) == 1
        assert ShareReply.objects.filter(share=share).count() == 1
    finally:
        context.close()
    assert problems == [] and external == []
    axe.assert_clean()


@pytest.mark.browser
def test_share_documents_are_checked_as_soon_as_they_are_chosen(
    page: Any, live_server: Any, settings: Any, tmp_path: Path, axe: Any
) -> None:
    """Too many documents, one too large, too much in all (the attachments ticked from the
    message the share starts from included) or an empty file: said beside the field as soon
    as they are chosen, in the server's words, and nothing is sent until it is put right."""
    cache.clear()
    settings.PLI_BLOB_DIR = tmp_path / "blobs"
    settings.PLI_SMS_URL = f"file://{tmp_path / 'sms'}"
    settings.PLI_SHARE_MAX_DOCUMENTS = 2
    settings.PLI_SHARE_MAX_DOCUMENT_BYTES = 2000
    settings.PLI_SHARE_MAX_BYTES = 3000
    organisation = make_organisation("Cabinet des Lilas")
    doctor = make_user(organisation, first_name="Jeanne", last_name="Martin")
    colleague = make_user(organisation, first_name="Paul", last_name="Durand")
    sent = api_client(colleague).post(
        "/api/v1/messages",
        {
            "sender": personal_mailbox(colleague).address,
            "to": [personal_mailbox(doctor).address],
            "subject": "Bilan",
            "body": "Pour la patiente.",
            "attachments": [SimpleUploadedFile("bilan.pdf", pdf_bytes("Bilan").ljust(1500, b" "))],
        },
    )
    assert sent.status_code == 201, sent.content
    rules = document_rules()
    with translation.override("fr"):
        too_many, too_large = rules.too_many(rules), rules.too_large(rules, False)
        too_large_total, empty = rules.too_large(rules, True), empty_file_message() % {"name": "vide.pdf"}
    problems, external = watch(page)
    posted: list[str] = []
    page.on("request", lambda r: posted.append(r.url) if r.method == "POST" and "/shares/new" in r.url else None)

    page.goto(f"/shares/new?message={sent.json()['id']}")
    page.fill("#id_login", doctor.email)
    page.fill("#id_password", TEST_PASSWORD)
    page.click("button[type=submit]:has-text('Se connecter')")
    page.fill("#id_code", totp_code())
    page.click("button[type=submit]:has-text('Se connecter')")
    page.wait_for_url("**/shares/new**")
    page.get_by_label("Nom de famille").fill("Durand")
    page.get_by_label("Prénom(s)").fill("Élodie")
    page.get_by_label("Date de naissance").fill("15/02/1984")
    page.get_by_label("Téléphone mobile").fill("06 12 34 56 78")
    attachment = page.get_by_label("bilan.pdf")
    assert attachment.is_checked()  # 1,500 bytes, counted with the files
    documents = page.locator("#id_documents")
    error = page.locator("#id_documents_error[role=alert]")

    def pdf(name: str, size: int) -> dict[str, Any]:
        return {"name": name, "mimeType": "application/pdf", "buffer": pdf_bytes(name).ljust(size, b" ")}

    documents.set_input_files([pdf("scanner.pdf", 2500)])
    assert error.inner_text() == too_large
    assert documents.get_attribute("aria-invalid") == "true"
    assert documents.get_attribute("aria-describedby") == "id_documents_helptext id_documents_error"
    axe.check(page, "share form, document too large")
    page.click("#share-submit")
    assert page.evaluate("document.activeElement.id") == "id_documents"

    documents.set_input_files([pdf("a.pdf", 500), pdf("b.pdf", 500)])
    assert error.inner_text() == too_many  # two files and the ticked attachment
    attachment.uncheck()
    assert error.count() == 0 and documents.get_attribute("aria-invalid") is None
    attachment.check()
    assert error.inner_text() == too_many

    documents.set_input_files([pdf("compte-rendu.pdf", 1600)])
    assert error.inner_text() == too_large_total  # 1,600 + 1,500 bytes
    documents.set_input_files([{"name": "vide.pdf", "mimeType": "application/pdf", "buffer": b""}])
    assert error.inner_text() == empty
    page.click("#share-submit")
    assert posted == [] and PatientShare.objects.count() == 0

    # Put right: the refusal goes, and the share leaves with the file and the attachment.
    documents.set_input_files([pdf("compte-rendu.pdf", 1000)])
    assert error.count() == 0
    assert documents.get_attribute("aria-describedby") == "id_documents_helptext"
    page.click("#share-submit")
    page.wait_for_url(re.compile(r"/shares/[0-9a-f-]{36}$"))
    assert len(posted) == 1
    share = PatientShare.objects.get()
    assert sorted(str(document.name) for document in ShareDocument.objects.filter(share=share)) == [
        "bilan.pdf",
        "compte-rendu.pdf",
    ]
    assert problems == [] and external == []
    axe.assert_clean()
