"""Structured health formats recognised in attachments (CDA R2, HPRIM Santé, HL7 v2, IHE XDM),
so that the recipient's software can import them: from the content, not the declared type."""

from __future__ import annotations

import io
import zipfile

from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection

from messaging.factories import api_client, personal_mailbox, practitioner, web_client
from pli.messaging.models import Attachment
from pli.messaging.structured import detect

CDA = (
    b'\xef\xbb\xbf<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<?xml-stylesheet type="text/xsl" href="CDA.xsl"?>\n<!-- Compte rendu -->\n'
    b'<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n'
    b'<typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/></ClinicalDocument>\n'
)
HPRIM = b"H|^~\\&|RESULTATS.HPR|||LABO^Laboratoire|||||ORU|P|H2.2^C|20261130\rP|1||123||DURAND^ELODIE\r"
HPRIM_NET = (
    b"1234567\r\nDURAND\r\nELODIE\r\n12 RUE DES LILAS\r\n\r\n75011 PARIS\r\n15/02/1984\r\n\r\n\r\n"
    b"30/11/2026\r\nDR MARTIN\r\n\r\n****LAB****\r\nRES|GLYCEMIE|GLY|N|5.2|mmol/l|3.9|5.8|N|F\r\n"
    b"****FIN****\r\n****FINFICHIER****\r\n"
)
HL7V2 = b"MSH|^~\\&|LAB|HOSP|PLI|CAB|20261130||ORU^R01|1|P|2.5\r"


def _zip(first: str, *others: str) -> bytes:
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as archive:
        for name in (first, *others):
            archive.writestr(name, b"<x/>")
    return data.getvalue()


class _Unseekable(io.BytesIO):
    """A pipe: zipfile then writes each entry's sizes after its data (a data descriptor)."""

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        raise OSError("not seekable")


def test_formats_are_told_by_their_content() -> None:
    assert detect("cr.xml", CDA) == "cda"
    assert (
        detect("cr.xml", CDA.replace(b"<ClinicalDocument", b"<hl7:ClinicalDocument").replace(b"xmlns=", b"xmlns:hl7="))
        == "cda"
    )
    assert detect("RESULTAT.HPR", HPRIM) == "hprim"
    assert detect("resultats.txt", HPRIM_NET) == "hprim_net"
    assert detect("resultats.txt", HPRIM_NET.replace(b"\r\n", b"\n")) == "hprim_net"
    assert detect("message.hl7", HL7V2) == "hl7v2"
    assert detect("IHE_XDM.zip", _zip("INDEX.HTM", "README.TXT")) == "xdm"
    assert detect("envoi.zip", _zip("IHE_XDM/SUBSET01/METADATA.XML")) == "xdm"
    # Not these: other XML, a CDA's namespace without its root, any zip, a PDF, text.
    assert detect("a.xml", b'<?xml version="1.0"?><note xmlns="urn:hl7-org:v3"/>') == ""
    assert detect("a.xml", b"<ClinicalDocument><title/></ClinicalDocument>") == ""
    assert detect("photos.zip", _zip("photo.jpg")) == ""
    assert detect("cr.pdf", b"%PDF-1.7\n") == ""
    assert detect("notes.txt", b"Hello|world") == ""
    assert detect("notes.txt", b"Voir la section ****LAB**** du compte rendu.\n") == ""


def test_real_world_variants_are_recognised() -> None:
    # A CDA saved in UTF-16 by Windows software, with its byte order mark.
    utf16 = CDA.removeprefix(b"\xef\xbb\xbf").decode().replace("UTF-8", "UTF-16")
    assert detect("cr.xml", b"\xff\xfe" + utf16.encode("utf-16-le")) == "cda"
    assert detect("cr.xml", b"\xfe\xff" + utf16.encode("utf-16-be")) == "cda"
    # HPRIM after a blank line, with Unix line ends.
    assert detect("RESULTAT.HPR", b"\r\n" + HPRIM.replace(b"\r", b"\n")) == "hprim"
    # An HL7 v2 batch file: its file and batch headers come before the first MSH.
    assert detect("lot.hl7", b"FHS|^~\\&|LAB|HOSP\rBHS|^~\\&|LAB|HOSP\r" + HL7V2) == "hl7v2"
    assert detect("lot.hl7", b"BHS|^~\\&|LAB|HOSP\r" + HL7V2) == "hl7v2"
    # An XDM package under another name: its INDEX.HTM and README.TXT come first.
    package = _zip("INDEX.HTM", "README.TXT", "IHE_XDM/SUBSET01/METADATA.XML")
    assert detect("envoi-mssante.zip", package) == "xdm"
    assert detect("photos.zip", _zip("README.TXT", "photo.jpg")) == ""
    # Written as a stream (Java's ZipOutputStream): each entry's size comes after its data.
    streamed = _Unseekable()
    with zipfile.ZipFile(streamed, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in ("INDEX.HTM", "README.TXT", "IHE_XDM/SUBSET01/METADATA.XML"):
            with archive.open(name, "w") as entry:
                entry.write(b"<html>Paquet XDM</html>" * 20)
    assert detect("envoi-mssante.zip", streamed.getvalue()) == "xdm"


def test_an_integrator_is_told_the_format_and_the_reader_sees_it(db: None) -> None:
    alice, bob = practitioner(), practitioner()
    files = [
        SimpleUploadedFile("compte-rendu.xml", CDA, "application/octet-stream"),
        SimpleUploadedFile("RESULTAT.HPR", HPRIM, "application/octet-stream"),
        SimpleUploadedFile("IHE_XDM.zip", _zip("INDEX.HTM", "IHE_XDM/SUBSET01/DOC0001.XML"), "application/zip"),
        SimpleUploadedFile("lettre.pdf", b"%PDF-1.7\n%%EOF\n", "application/pdf"),
    ]
    sent = api_client(alice).post(
        "/api/v1/messages",
        {
            "sender": personal_mailbox(alice).address,
            "to": [personal_mailbox(bob).address],
            "subject": "Résultats",
            "attachments": files,
        },
    )
    assert sent.status_code == 201, sent.content
    message = api_client(bob).get(f"/api/v1/messages/{sent.json()['id']}").json()
    found = [(a["name"], a["format"], a["content_type"]) for a in message["attachments"]]
    assert found == [
        ("compte-rendu.xml", "cda", "application/xml"),  # its name said XML
        ("RESULTAT.HPR", "hprim", "text/plain"),
        ("IHE_XDM.zip", "xdm", "application/zip"),
        ("lettre.pdf", None, "application/pdf"),
    ]
    page = web_client(bob).get(f"/messages/m/{sent.json()['id']}/", HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert "document structuré (CDA R2)" in page and "résultats de laboratoire (HPRIM Santé)" in page
    assert "paquet IHE XDM" in page
    # Sealed like the type: the kind of document is not readable at rest.
    with connection.cursor() as cursor:
        cursor.execute("SELECT format FROM pli_attachment")
        stored = [bytes(row[0]) for row in cursor.fetchall() if row[0] is not None]
    assert len(stored) == 3 and not any(b"cda" in value or b"hprim" in value for value in stored)
    assert [a.format for a in Attachment.objects.order_by("position")] == ["cda", "hprim", "xdm", None]


def test_a_forwarded_attachment_keeps_its_format(db: None) -> None:
    alice, bob, carol = practitioner(), practitioner(), practitioner()
    a_box, b_box, c_box = (personal_mailbox(u) for u in (alice, bob, carol))
    first = (
        api_client(alice)
        .post(
            "/api/v1/messages",
            {
                "sender": a_box.address,
                "to": [b_box.address],
                "subject": "CR",
                "attachments": [SimpleUploadedFile("cr.xml", CDA)],
            },
        )
        .json()
    )
    forwarded = api_client(bob).post(
        "/api/v1/messages",
        {
            "sender": b_box.address,
            "to": [c_box.address],
            "subject": "TR: CR",
            "forward_of": first["id"],
            "forward_attachments": [first["attachments"][0]["id"]],
        },
    )
    assert forwarded.status_code == 201, forwarded.content
    assert [a["format"] for a in forwarded.json()["attachments"]] == ["cda"]
