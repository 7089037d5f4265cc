"""Multipart bodies that Django's parser would quietly mishandle: each is refused with the
field named and nothing saved, never sent with a file missing, cut short or garbled."""

from __future__ import annotations

import base64
import io
import itertools
import os
from typing import Any

import pytest
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart
from hypothesis import given
from hypothesis import strategies as st

from messaging.conftest import assert_nothing_saved, temp_files
from messaging.factories import api_client, personal_mailbox, practitioner, web_client
from pli.accounts.models import User
from pli.messaging.models import Attachment, Delivery, Message
from pli.messaging.uploads import TailRecorder, UploadRejected

CRLF = b"\r\n"


@pytest.fixture
def pair(db: None) -> tuple[User, User]:
    return practitioner(), practitioner()


def _text_parts(sender: User, recipient: User) -> list[tuple[bytes, bytes]]:
    return [
        (b'Content-Disposition: form-data; name="sender"', personal_mailbox(sender).address.encode()),
        (b'Content-Disposition: form-data; name="to"', personal_mailbox(recipient).address.encode()),
        (b'Content-Disposition: form-data; name="subject"', "Résultats".encode()),
        (b'Content-Disposition: form-data; name="body"', b"Bonjour"),
    ]


def _with_body(sender: User, recipient: User, headers: bytes, value: bytes) -> list[tuple[bytes, bytes]]:
    return [*_text_parts(sender, recipient)[:3], (b'Content-Disposition: form-data; name="body"' + headers, value)]


def _file_part(name: bytes, content: bytes, field: bytes = b"attachments") -> tuple[bytes, bytes]:
    return (b'Content-Disposition: form-data; name="' + field + b'"; filename="' + name + b'"', content)


def _body(parts: list[tuple[bytes, bytes]], newline: bytes = CRLF, boundary: str = BOUNDARY) -> bytes:
    dash = b"--" + boundary.encode()
    out = b"".join(dash + newline + headers + newline + newline + value + newline for headers, value in parts)
    return out + dash + b"--" + newline


def _share_parts() -> list[tuple[bytes, bytes]]:
    fields = {
        "patient_given_name": "Jeanne",
        "patient_family_name": "Durand",
        "patient_birth_date": "1980-01-31",
        "patient_email": "jeanne.durand@example.org",
    }
    return [(f'Content-Disposition: form-data; name="{k}"'.encode(), v.encode()) for k, v in fields.items()]


def _post(user: User, body: bytes, url: str = "/api/v1/messages", content_type: str = MULTIPART_CONTENT) -> Any:
    client = api_client(user) if url.startswith("/api/") else web_client(user)
    return client.generic("POST", url, body, content_type=content_type)


PDF = b"%PDF-1.4 compte rendu"

# Parts Django's parser skips without a word: the message used to go out without them.
SKIPPED_PARTS = {
    "no field name": (b'Content-Disposition: form-data; filename="cr.pdf"', PDF),
    "no content-disposition": (b"Content-Type: application/pdf", PDF),
    "disposition without a colon": (b'Content-Disposition form-data; name="attachments"; filename="cr.pdf"', PDF),
    "unknown charset in filename*": (
        b"Content-Disposition: form-data; name=\"attachments\"; filename*=x-unknown''cr%20final.pdf",
        PDF,
    ),
    "folded header line": (b'Content-Disposition: form-data; name="attachments";\r\n filename="cr.pdf"', PDF),
    "disposition given twice": (
        b'Content-Disposition: form-data; name="attachments"; filename="cr.pdf"\r\n'
        b'Content-Disposition: form-data; name="body"',
        PDF,
    ),
}


@pytest.mark.parametrize("part", SKIPPED_PARTS.values(), ids=SKIPPED_PARTS.keys())
def test_a_part_the_parser_would_skip_is_refused(pair: tuple[User, User], part: tuple[bytes, bytes]) -> None:
    alice, bob = pair
    response = _post(alice, _body([*_text_parts(alice, bob), _file_part(b"autre.pdf", PDF), part]))
    assert response.status_code == 400, response.content
    (field,) = response.json()
    assert field in {"attachments", "detail"}
    assert_nothing_saved()


@pytest.mark.parametrize("name", [b"..", b".", b"dossier/", b"C:\\docs\\", b"bilan&#47;", b"\x07\x08", b"   "])
def test_a_file_name_that_cleans_to_nothing_is_refused(pair: tuple[User, User], name: bytes) -> None:
    alice, bob = pair
    response = _post(alice, _body([*_text_parts(alice, bob), _file_part(name, PDF)]))
    assert response.status_code == 400, response.content
    assert "nom" in response.json()["attachments"][0]
    assert_nothing_saved()


@pytest.mark.parametrize(
    "name", ["ordonnance&section2.pdf", "CR&copy_final.pdf", "Bilan&notes &amp; suite.pdf", "é&#233;.pdf"]
)
def test_file_names_are_kept_as_sent(pair: tuple[User, User], name: str) -> None:
    """Django decodes HTML entities in file names (``&sect`` → ``§``); they are kept as sent."""
    alice, bob = pair
    response = _post(alice, _body([*_text_parts(alice, bob), _file_part(name.encode(), PDF)]))
    assert response.status_code == 201, response.content
    assert [item["name"] for item in response.json()["attachments"]] == [name]
    assert Attachment.objects.get().name == name


def test_a_quote_escaped_as_browsers_do_is_a_quote(pair: tuple[User, User]) -> None:
    """Browsers, curl and urllib3 send ``"`` as ``%22`` (WHATWG): it reached the patient as
    ``CR %22IRM%22.pdf``. The request as requests/urllib3 builds it."""
    import urllib3

    alice, bob = pair
    fields = [
        (name, (None, value))
        for name, value in (
            ("sender", personal_mailbox(alice).address),
            ("to", personal_mailbox(bob).address),
            ("subject", "IRM"),
        )
    ]
    fields.append(("attachments", ('CR "IRM" été.pdf', PDF, "application/pdf")))
    body, content_type = urllib3.encode_multipart_formdata(fields)
    assert b'filename="CR %22IRM%22 \xc3\xa9t\xc3\xa9.pdf"' in body
    response = _post(alice, body, content_type=content_type)
    assert response.status_code == 201, response.content
    assert Attachment.objects.get().name == 'CR "IRM" été.pdf'


def test_the_web_form_keeps_file_names_as_sent(pair: tuple[User, User]) -> None:
    alice, bob = pair
    handle = io.BytesIO(PDF)
    handle.name = "ordonnance&section2.pdf"
    payload = {
        "sender": personal_mailbox(alice).address,
        "to": personal_mailbox(bob).address,
        "subject": "x",
        "body": "x",
        "attachments": [handle],
    }
    response = web_client(alice).post("/messages/compose/", payload)
    assert response.status_code == 303, response.content[:500]
    assert Attachment.objects.get().name == "ordonnance&section2.pdf"


def test_the_boundary_inside_a_file_is_refused_not_cut_short(pair: tuple[User, User]) -> None:
    """Django splits at the boundary wherever it appears: the file was stored truncated."""
    alice, bob = pair
    content = b"%PDF-1.4 abc--" + BOUNDARY.encode() + b"xyz tail"
    response = _post(alice, _body([*_text_parts(alice, bob), _file_part(b"a.pdf", content)]))
    assert response.status_code == 400, response.content
    assert "CRLF" in response.json()["attachments"][0]
    assert_nothing_saved()


def test_the_boundary_after_a_line_break_inside_a_file_is_refused(pair: tuple[User, User]) -> None:
    alice, bob = pair
    content = b"From: x\r\n--" + BOUNDARY.encode() + b"-inner\r\nrest"
    response = _post(alice, _body([*_text_parts(alice, bob), _file_part(b"a.eml", content)]))
    assert response.status_code == 400, response.content
    assert "attachments" in response.json()
    assert_nothing_saved()


@pytest.mark.parametrize("size", [10, 5000])
def test_a_body_with_bare_lf_line_breaks_is_refused_as_such(pair: tuple[User, User], size: int) -> None:
    alice, bob = pair
    body = _body([*_text_parts(alice, bob), _file_part(b"a.bin", b"a" * size)], newline=b"\n")
    response = _post(alice, body)
    assert response.status_code == 400, response.content
    ((field, message),) = response.json().items()  # the body as a whole: one text
    assert field == "detail" and "LF" in message
    assert_nothing_saved()


def test_one_part_with_bare_lf_among_crlf_parts_is_refused(pair: tuple[User, User]) -> None:
    alice, bob = pair
    dash = b"--" + BOUNDARY.encode()
    lf_part = dash + b"\n" + _file_part(b"small.pdf", PDF)[0] + b"\n\n" + PDF + b"\n"
    body = lf_part + _body([*_text_parts(alice, bob), _file_part(b"big.bin", os.urandom(50_000))])
    response = _post(alice, body)
    assert response.status_code == 400, response.content
    assert_nothing_saved()


def test_text_not_in_utf8_is_refused_naming_its_field(pair: tuple[User, User]) -> None:
    """Django would store "R�sultats : h�moglobine" for text sent in Windows-1252."""
    alice, bob = pair
    response = _post(alice, _body(_with_body(alice, bob, b"", "Résultats : hémoglobine".encode("cp1252"))))
    assert response.status_code == 400, response.content
    assert "UTF-8" in response.json()["body"][0]
    assert_nothing_saved()


@pytest.mark.parametrize("charset", ["windows-1252", "ISO-8859-1"])
def test_text_in_the_charset_its_part_names_is_read_in_it(pair: tuple[User, User], charset: str) -> None:
    """As Java's HttpClient sends text by default (RFC 7578 allows a part its own charset)."""
    alice, bob = pair
    headers = f"\r\nContent-Type: text/plain; charset={charset}".encode()
    parts = _with_body(alice, bob, headers, "Résultats : hémoglobine".encode(charset))
    response = _post(alice, _body(parts))
    assert response.status_code == 201, response.content
    read = api_client(bob).get(f"/api/v1/messages/{response.json()['id']}")
    assert read.json()["body"] == "Résultats : hémoglobine"
    assert read.json()["subject"] == "Résultats"


@pytest.mark.parametrize("charset", ["utf-7", "utf-16", "x-unknown"])
def test_a_part_charset_outside_the_supported_ones_is_refused(pair: tuple[User, User], charset: str) -> None:
    """UTF-7 text decoded to a lone surrogate, which encryption could not encode: a 500,
    on messages and shares alike."""
    from pli.sharing.models import PatientShare

    alice, bob = pair
    headers = f"\r\nContent-Type: text/plain; charset={charset}".encode()
    response = _post(alice, _body(_with_body(alice, bob, headers, b"+2AA-")))
    assert response.status_code == 400, response.content
    assert "UTF-8" in response.json()["body"][0]
    share_parts = [*_share_parts(), (b'Content-Disposition: form-data; name="message"' + headers, b"+2AA-")]
    response = _post(alice, _body([*share_parts, _file_part(b"cr.pdf", PDF, b"documents")]), "/api/v1/shares")
    assert response.status_code == 400, response.content
    assert "UTF-8" in response.json()["message"][0]
    assert_nothing_saved()
    assert PatientShare.objects.count() == 0


def test_text_in_the_encoding_the_request_names_is_read_in_it(pair: tuple[User, User]) -> None:
    alice, bob = pair
    parts = _with_body(alice, bob, b"", "Résultats : hémoglobine".encode("cp1252"))
    content_type = f"{MULTIPART_CONTENT}; charset=windows-1252"
    response = _post(alice, _body(parts), content_type=content_type)
    assert response.status_code == 201, response.content
    assert Message.objects.count() == 1
    read = api_client(bob).get(f"/api/v1/messages/{response.json()['id']}")
    assert read.json()["body"] == "Résultats : hémoglobine"


def test_base64_text_is_checked_once_decoded(pair: tuple[User, User]) -> None:
    alice, bob = pair
    parts = _with_body(
        alice, bob, b"\r\nContent-Transfer-Encoding: base64", base64.b64encode("hémoglobine".encode("cp1252"))
    )
    assert _post(alice, _body(parts)).status_code == 400
    parts[-1] = (parts[-1][0], base64.b64encode("hémoglobine".encode()))
    response = _post(alice, _body(parts))
    assert response.status_code == 201, response.content
    assert api_client(bob).get(f"/api/v1/messages/{response.json()['id']}").json()["body"] == "hémoglobine"


def test_a_transfer_encoding_the_parser_ignores_is_refused(pair: tuple[User, User]) -> None:
    """Django decodes base64 only: quoted-printable content would be stored as it came."""
    alice, bob = pair
    part = (_file_part(b"a.txt", b"")[0] + b"\r\nContent-Transfer-Encoding: quoted-printable", b"h=C3=A9")
    response = _post(alice, _body([*_text_parts(alice, bob), part]))
    assert response.status_code == 400, response.content
    assert "base64" in response.json()["attachments"][0]
    assert_nothing_saved()


def test_the_web_form_shows_a_malformed_body_in_french(pair: tuple[User, User]) -> None:
    alice, bob = pair
    content = b"%PDF-1.4 --" + BOUNDARY.encode() + b" x"
    response = _post(alice, _body([*_text_parts(alice, bob), _file_part(b"a.pdf", content)]), "/messages/compose/")
    assert response.status_code == 400
    assert "Le corps multipart est mal formé" in response.content.decode()
    assert_nothing_saved()


def test_a_share_document_the_parser_would_skip_is_refused(pair: tuple[User, User]) -> None:
    """The shares' uploads go through the same checks."""
    from pli.sharing.models import PatientShare

    alice, _bob = pair
    parts = _share_parts()
    parts += [_file_part(b"cr.pdf", PDF, b"documents"), _file_part(b"..", PDF, b"documents")]
    response = _post(alice, _body(parts), "/api/v1/shares")
    assert response.status_code == 400, response.content
    assert "documents" in response.json()
    assert PatientShare.objects.count() == 0
    assert temp_files() == []


# --- the stream wrapper on its own, whatever the reads' sizes -----------------------------


def _refused(body: bytes, sizes: list[int], encoding: str = "utf-8") -> str | None:
    recorder = TailRecorder(io.BytesIO(body), BOUNDARY.encode(), "attachments", encoding, "detail")
    reads = itertools.cycle(sizes)
    try:
        while recorder.read(next(reads)):
            pass
        recorder.check_end()
    except UploadRejected as exc:
        return exc.field
    return None


_TEXT = encode_multipart(BOUNDARY, {"subject": "é" * 300, "body": "Ça va ? 😀" * 50})
_WITH_FILE = encode_multipart(BOUNDARY, {"subject": "x", "attachments": [io.BytesIO(os.urandom(3000))]})


@given(st.lists(st.integers(min_value=1, max_value=4000), min_size=1, max_size=30))
def test_the_checks_do_not_depend_on_where_reads_cut(sizes: list[int]) -> None:
    assert _refused(_TEXT, sizes) is None
    assert _refused(_WITH_FILE, sizes) is None
    # The same text, in Windows-1252: refused in UTF-8, read in the encoding the request names.
    latin = encode_multipart(BOUNDARY, {"subject": "é" * 300}).replace("é".encode(), "é".encode("cp1252"))
    assert _refused(latin, sizes) == "subject"
    assert _refused(latin, sizes, "windows-1252") is None
    # The boundary string inside the file's data, cut anywhere by the reads.
    inside = _WITH_FILE.replace(b'filename="', b'filename="x').replace(
        b"\r\n--" + BOUNDARY.encode() + b"--", b"--" + BOUNDARY.encode() + b"\r\n--" + BOUNDARY.encode() + b"--"
    )
    assert _refused(inside, sizes) == "attachments"
    assert _refused(_TEXT.replace(b"\r\n", b"\n"), sizes) == "detail"


@pytest.mark.parametrize("field", ["sender", "subject", "body", "patient_ins"])
def test_a_single_value_field_given_twice_is_refused(pair: tuple[User, User], field: str) -> None:
    """Django keeps the last value and drops the other without a word."""
    alice, bob = pair
    parts = [*_text_parts(alice, bob), *[(f'Content-Disposition: form-data; name="{field}"'.encode(), b"autre")] * 2]
    response = _post(alice, _body(parts))
    assert response.status_code == 400, response.content
    assert response.json()[field] == ["Ce champ est donné plusieurs fois\u00a0: envoyez-le une seule fois."]
    assert_nothing_saved()


def test_recipients_and_files_may_repeat(pair: tuple[User, User]) -> None:
    alice, bob = pair
    carol = practitioner()
    parts = [
        *_text_parts(alice, bob),
        (b'Content-Disposition: form-data; name="to"', personal_mailbox(carol).address.encode()),
        _file_part(b"a.pdf", PDF),
        _file_part(b"b.pdf", PDF),
    ]
    response = _post(alice, _body(parts))
    assert response.status_code == 201, response.content
    assert len(response.json()["attachments"]) == 2
    assert Delivery.objects.filter(role="to").count() == 2


@pytest.mark.parametrize(
    ("field", "values"), [("allow_reply", [b"true", b"false"]), ("expires_in_days", [b"5", b"60"])]
)
def test_a_share_field_given_twice_is_refused(pair: tuple[User, User], field: str, values: list[bytes]) -> None:
    from pli.sharing.models import PatientShare

    alice, _bob = pair
    parts = _share_parts()
    parts += [(f'Content-Disposition: form-data; name="{field}"'.encode(), value) for value in values]
    parts.append(_file_part(b"cr.pdf", PDF, b"documents"))
    response = _post(alice, _body(parts), "/api/v1/shares")
    assert response.status_code == 400, response.content
    assert list(response.json()) == [field]
    assert PatientShare.objects.count() == 0


def test_a_file_the_parser_and_the_check_disagree_on_is_refused(db: None) -> None:
    """Names as sent are matched to the parser's files by order: should the two ever see
    different parts, a file must not get another's name."""
    from django.test import RequestFactory

    from pli.messaging.uploads import EncryptingUploadHandler, UploadSession, attachment_rules

    with UploadSession() as session:
        handler = EncryptingUploadHandler(RequestFactory().post("/"), session, attachment_rules(session.store))
        recorder = TailRecorder(io.BytesIO(b""), BOUNDARY.encode(), "attachments")
        recorder.file_names.append(("a.pdf", "a.pdf"))
        handler._recorder = recorder
        with pytest.raises(UploadRejected):
            handler.new_file("attachments", "b.pdf", "application/pdf", 10)
        recorder.file_names.append(("ordonnance§ion2.pdf", "ordonnance&section2.pdf"))
        handler.new_file("attachments", "ordonnance§ion2.pdf", "application/pdf", 10)
        assert handler.file_name == "ordonnance&section2.pdf"
        handler.upload_interrupted()


@pytest.mark.parametrize(
    "headers",
    [
        b'Content-Disposition: form-data; name="attachments"; filename="scan--' + BOUNDARY.encode() + b'.pdf"',
        b'Content-Disposition: form-data; name="body"; x="--' + BOUNDARY.encode() + b'"',
    ],
    ids=["in a file name", "in a parameter"],
)
def test_the_boundary_inside_a_parts_headers_is_refused(pair: tuple[User, User], headers: bytes) -> None:
    """Django splits the headers there: the part lost them and was skipped (201, no file)."""
    alice, bob = pair
    response = _post(alice, _body([*_text_parts(alice, bob)[:3], (headers, PDF)]))
    assert response.status_code == 400, response.content
    assert_nothing_saved()


def test_a_boundary_right_after_the_closing_one_is_refused(pair: tuple[User, User]) -> None:
    """Django reads "--B--B" as two boundaries: what follows is a part it parses."""
    alice, bob = pair
    dash = b"--" + BOUNDARY.encode()
    latin = b'Content-Disposition: form-data; name="body"\r\n\r\n' + "résultats".encode("latin-1") + b"\r\n"
    start = _body(_text_parts(alice, bob)[:3]).removesuffix(b"--\r\n")
    body = start + dash + b"\r\n" + latin + dash + b"--\r\n"  # "--B--B": its "--" begins a boundary
    response = _post(alice, body)
    assert response.status_code == 400, response.content
    assert_nothing_saved()


def test_a_preamble_holding_a_part_is_refused(pair: tuple[User, User]) -> None:
    """Django reads what precedes the first boundary as a part: here, an unchecked copy."""
    alice, bob = pair
    carol = personal_mailbox(practitioner()).address.encode()
    preamble = b'Content-Disposition: form-data; name="cc"\r\n\r\n' + carol + b"\r\n"
    response = _post(alice, preamble + _body(_text_parts(alice, bob)))
    assert response.status_code == 400, response.content
    assert_nothing_saved()


def test_line_breaks_before_the_first_boundary_are_accepted(pair: tuple[User, User]) -> None:
    alice, bob = pair
    response = _post(alice, b"\r\n\r\n" + _body([*_text_parts(alice, bob), _file_part(b"a.pdf", PDF)]))
    assert response.status_code == 201, response.content


def test_a_part_after_the_closing_boundary_is_refused(pair: tuple[User, User]) -> None:
    """Django parses what follows "--B--" up to a blank line as one more part's headers."""
    alice, bob = pair
    epilogue = b'Content-Disposition: form-data; name="body"\r\n\r\n' + "lésion".encode("cp1252") + b"\r\n"
    response = _post(alice, _body(_text_parts(alice, bob)[:3]) + epilogue)
    assert response.status_code == 400, response.content
    assert_nothing_saved()


def test_base64_files_are_refused_and_bad_base64_text_too(pair: tuple[User, User]) -> None:
    """Django decodes leniently: joined padded pieces left a file (or a text) cut short."""
    alice, bob = pair
    data = b"%PDF-1.4\n" + os.urandom(2990)
    pieces = b"".join(base64.b64encode(data[i : i + 1000]) for i in range(0, len(data), 1000))
    part = (_file_part(b"c.pdf", b"")[0] + b"\r\nContent-Transfer-Encoding: base64", pieces)
    response = _post(alice, _body([*_text_parts(alice, bob), part]))
    assert response.status_code == 400, response.content
    assert "base64" in response.json()["attachments"][0]
    joined = base64.b64encode(b"Patient stable. ") + base64.b64encode("Allergie pénicilline".encode())
    text = _with_body(alice, bob, b"\r\nContent-Transfer-Encoding: base64", joined)
    response = _post(alice, _body(text))
    assert response.status_code == 400, response.content
    assert "base64" in response.json()["body"][0]
    assert_nothing_saved()


def test_a_boundary_that_reads_as_a_header_line_is_refused(pair: tuple[User, User]) -> None:
    """With a boundary "a:b", a delimiter line inside a part's headers parses as a header."""
    alice, bob = pair
    lost = (
        b'--a:b\r\nContent-Disposition: form-data; name="attachments"; filename="lost.pdf"\r\n'
        b"--a:b\r\nContent-Type: application/pdf\r\n\r\nDATA\r\n"
    )
    body = _body(_text_parts(alice, bob), boundary="a:b").removesuffix(b"--a:b--\r\n") + lost + b"--a:b--\r\n"
    response = _post(alice, body, content_type='multipart/form-data; boundary="a:b"')
    assert response.status_code == 400, response.content
    assert_nothing_saved()
