"""The upload handler: attachments are encrypted as they stream in; limits apply while the
bytes arrive; a cut-off upload saves nothing."""

from __future__ import annotations

import io
import itertools
import os
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart
from hypothesis import given
from hypothesis import strategies as st

from messaging.conftest import assert_nothing_saved, stored_blobs, temp_files
from messaging.factories import api_client, personal_mailbox, practitioner, unique_marker, web_client
from pli.accounts.models import User
from pli.messaging.models import Attachment
from pli.messaging.uploads import TailRecorder, UploadRejected, blob_store

MB = 2**20


def _file(name: str, content: bytes) -> io.BytesIO:
    handle = io.BytesIO(content)
    handle.name = name
    return handle


@pytest.fixture
def pair(db: None) -> tuple[User, User]:
    return practitioner(), practitioner()


def _payload(sender: User, recipient: User, **extra: Any) -> dict[str, Any]:
    return {
        "sender": personal_mailbox(sender).address,
        "to": [personal_mailbox(recipient).address],
        "subject": "Résultats",
        "body": "Bonjour",
        **extra,
    }


@pytest.mark.parametrize("via", ["api", "web"])
def test_large_upload_never_touches_disk_in_plaintext(
    pair: tuple[User, User], settings: Any, tmp_path: Path, via: str
) -> None:
    """3 MB is above Django's in-memory threshold: its default handler would write a
    plaintext temporary file. Ours writes only ciphertext, into the blob store."""
    spool = tmp_path / "django-tmp"
    spool.mkdir()
    settings.FILE_UPLOAD_TEMP_DIR = str(spool)
    alice, bob = pair
    marker = unique_marker("UPLOADMARK").encode()
    content = (marker + os.urandom(1000)) * 3000
    client = api_client(alice) if via == "api" else web_client(alice)
    url = "/api/v1/messages" if via == "api" else "/messages/compose/"
    response = client.post(url, _payload(alice, bob, attachments=[_file("scan.bin", content)]))
    assert response.status_code in (201, 303), response.content[:2000]
    assert list(spool.iterdir()) == []
    (blob_id,) = stored_blobs()
    raw = blob_store().path_for(blob_id).read_bytes()
    assert marker not in raw
    attachment = Attachment.objects.get()
    assert attachment.size == len(content)
    with blob_store().open(blob_id, attachment.data_encryption_key(), attachment.blob_aad("content")) as reader:
        assert b"".join(reader) == content
    assert temp_files() == []


def test_too_many_attachments_is_refused_naming_the_field(pair: tuple[User, User], settings: Any) -> None:
    settings.PLI_MAX_ATTACHMENTS = 3
    alice, bob = pair
    files = [_file(f"f{i}.txt", b"x") for i in range(4)]
    response = api_client(alice).post("/api/v1/messages", _payload(alice, bob, attachments=files))
    assert response.status_code == 400
    assert "3" in response.json()["attachments"][0]
    assert_nothing_saved()


def test_too_large_is_refused_while_streaming(pair: tuple[User, User], settings: Any) -> None:
    settings.PLI_MAX_MESSAGE_BYTES = 100_000
    alice, bob = pair
    files = [_file("a.bin", b"a" * 60_000), _file("b.bin", b"b" * 60_000)]
    response = api_client(alice).post("/api/v1/messages", _payload(alice, bob, attachments=files))
    assert response.status_code == 413
    assert "attachments" in response.json()
    assert_nothing_saved()


def test_a_body_announcing_too_much_is_refused_before_reading(pair: tuple[User, User], settings: Any) -> None:
    settings.PLI_MAX_MESSAGE_BYTES = 1000
    alice, bob = pair
    big = _file("big.bin", b"z" * (5 * MB))
    response = api_client(alice).post("/api/v1/messages", _payload(alice, bob, attachments=[big]))
    assert response.status_code == 413
    assert list(response.json()) == ["attachments"]
    assert_nothing_saved()


def test_web_form_shows_the_limit_next_to_the_attachments(pair: tuple[User, User], settings: Any) -> None:
    settings.PLI_MAX_ATTACHMENTS = 1
    alice, bob = pair
    files = [_file("a.txt", b"a"), _file("b.txt", b"b")]
    response = web_client(alice).post("/messages/compose/", _payload(alice, bob, attachments=files))
    assert response.status_code == 400
    html = response.content.decode()
    assert 'id="id_attachments_error"' in html and "au plus 1 pièce jointe" in html
    assert_nothing_saved()


@pytest.mark.parametrize("cut", [0.3, 0.6, 0.95, -3])
def test_truncated_multipart_saves_nothing(pair: tuple[User, User], cut: float) -> None:
    alice, bob = pair
    body = encode_multipart(BOUNDARY, _payload(alice, bob, attachments=[_file("a.bin", os.urandom(300_000))]))
    end = int(len(body) * cut) if cut > 0 else len(body) + int(cut)
    client = api_client(alice)
    response = client.generic("POST", "/api/v1/messages", body[:end], content_type=MULTIPART_CONTENT)
    assert response.status_code == 400, response.content
    assert set(response.json()) <= {"attachments", "detail", "sender", "to", "body", "subject"}
    assert_nothing_saved()


def test_truncated_multipart_in_the_web_form(pair: tuple[User, User]) -> None:
    alice, bob = pair
    body = encode_multipart(BOUNDARY, _payload(alice, bob, attachments=[_file("a.bin", os.urandom(200_000))]))
    response = web_client(alice).generic("POST", "/messages/compose/", body[:-200], content_type=MULTIPART_CONTENT)
    assert response.status_code == 400
    assert_nothing_saved()


def test_files_only_in_the_attachments_field(pair: tuple[User, User]) -> None:
    alice, bob = pair
    response = api_client(alice).post("/api/v1/messages", _payload(alice, bob, body=_file("x.txt", b"x")))
    assert response.status_code == 400
    assert "body" in response.json()
    assert_nothing_saved()


def test_rejected_form_discards_the_uploaded_blobs(pair: tuple[User, User]) -> None:
    alice, bob = pair
    payload = _payload(alice, bob, attachments=[_file("a.pdf", b"%PDF-1.4 x")])
    payload["to"] = ["nobody@pli.localhost"]
    response = api_client(alice).post("/api/v1/messages", payload)
    assert response.status_code == 400
    assert "to" in response.json()
    assert_nothing_saved()


def test_declared_type_must_match_the_content_to_be_shown_inline(pair: tuple[User, User]) -> None:
    alice, bob = pair
    fake = _file("fake.pdf", b"<html><script>alert(1)</script></html>")
    real = _file("real.png", b"\x89PNG\r\n\x1a\n" + b"0" * 20)
    response = api_client(alice).post("/api/v1/messages", _payload(alice, bob, attachments=[fake, real]))
    assert response.status_code == 201
    types = [a["content_type"] for a in response.json()["attachments"]]
    assert types == ["application/octet-stream", "image/png"]


def test_empty_file_is_a_valid_attachment(pair: tuple[User, User]) -> None:
    alice, bob = pair
    response = api_client(alice).post("/api/v1/messages", _payload(alice, bob, attachments=[_file("empty.txt", b"")]))
    assert response.status_code == 201
    (attachment,) = response.json()["attachments"]
    assert attachment["size"] == 0
    assert attachment["sha256"] == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_anonymous_upload_is_refused_before_parsing(db: None) -> None:
    response = Client().post("/api/v1/messages", {"attachments": [_file("a.txt", b"a")]})
    assert response.status_code == 401
    assert stored_blobs() == []


def _latin1_named(body: bytes, name: str) -> bytes:
    """``body`` with the file name ``name`` written in Latin-1, as some older clients do."""
    encoded = f'filename="{name}"'.encode()
    assert encoded in body
    return body.replace(encoded, f'filename="{name}"'.encode("latin-1"))


@pytest.mark.parametrize("via", ["api", "web"])
def test_a_file_name_not_in_utf8_is_refused_not_dropped(pair: tuple[User, User], via: str) -> None:
    """Django skips a part whose header is not UTF-8: the file would silently go missing
    from a message that is then sent."""
    alice, bob = pair
    payload = _payload(
        alice, bob, attachments=[_file("compte-rendu-échographie.pdf", b"%PDF-1.4"), _file("b.txt", b"b")]
    )
    body = _latin1_named(encode_multipart(BOUNDARY, payload), "compte-rendu-échographie.pdf")
    if via == "api":
        response = api_client(alice).generic("POST", "/api/v1/messages", body, content_type=MULTIPART_CONTENT)
        assert response.status_code == 400, response.content
        assert "UTF-8" in response.json()["attachments"][0]
    else:
        response = web_client(alice).generic("POST", "/messages/compose/", body, content_type=MULTIPART_CONTENT)
        assert response.status_code == 400
        assert 'id="id_attachments_error"' in response.content.decode()
    assert_nothing_saved()


def test_text_in_the_attachments_field_is_refused(pair: tuple[User, User]) -> None:
    alice, bob = pair
    response = api_client(alice).post("/api/v1/messages", _payload(alice, bob, attachments="notafile"))
    assert response.status_code == 400
    assert "fichiers" in response.json()["attachments"][0]
    assert_nothing_saved()


def _refused_field(body: bytes, read_size: int | list[int]) -> str | None:
    """The field the stream wrapper refuses while ``body`` is read ``read_size`` bytes at a
    time (or reads of the given sizes, in turn), or None."""
    recorder = TailRecorder(io.BytesIO(body), BOUNDARY.encode(), "attachments")
    sizes = itertools.cycle(read_size if isinstance(read_size, list) else [read_size])
    try:
        while recorder.read(next(sizes)):
            pass
    except UploadRejected as exc:
        return exc.field
    return None


_MIXED = encode_multipart(
    BOUNDARY, {"subject": "x", "attachments": [_file("a.bin", os.urandom(5000)), _file("é.bin", b"\r\n--x")]}
)


# Django reads on after the closing delimiter: so must the check.
_AFTER_CLOSE = (
    _MIXED
    + f'\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name="late"; filename="'.encode()
    + "é.bin".encode("latin-1")
    + f'"\r\n\r\nxx\r\n--{BOUNDARY}--\r\n'.encode()
)


@given(st.lists(st.integers(min_value=1, max_value=6000), min_size=1, max_size=40))
def test_part_headers_are_read_across_random_splits(sizes: list[int]) -> None:
    assert _refused_field(_MIXED, sizes) is None
    assert _refused_field(_latin1_named(_MIXED, "é.bin"), sizes) == "attachments"
    assert _refused_field(_AFTER_CLOSE, sizes) == "late"


def test_an_empty_file_name_is_a_text_field_as_django_reads_it() -> None:
    body = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="subject"; filename=""\r\n\r\n'.encode()
        + b"x" * 1_200_000
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    assert _refused_field(body, 1 << 20) == "subject"


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 1000, 1 << 20])
def test_part_headers_are_read_across_any_split_of_the_body(size: int) -> None:
    """The headers' check must not depend on where the stream's reads happen to cut."""
    fields = {"subject": "é" * 50, "attachments": [_file("é.bin", os.urandom(3000)), _file("b.bin", b"--")]}
    body = encode_multipart(BOUNDARY, fields)
    assert _refused_field(body, size) is None
    latin = _latin1_named(body, "é.bin")
    assert _refused_field(latin, size) == "attachments"
    # The first part has no line break before its delimiter; its name is not UTF-8 either.
    first = latin.replace(b'name="subject"', b'name="sujet\xe9"')
    assert _refused_field(first, size) == "sujet\ufffd"
    long = encode_multipart(BOUNDARY, {"attachments": [_file("a" * 990 + ".pdf", b"%PDF")]})
    assert _refused_field(long, size) == "attachments"


def test_a_part_with_headers_too_long_is_refused_as_such(pair: tuple[User, User]) -> None:
    """A text field with a 200 kB header line was refused as « file name too long »."""
    alice, _bob = pair
    boundary = "XyZbound"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="sender"\r\nX-Pad: {"a" * 200_000}\r\n\r\n'
        f"{personal_mailbox(alice).address}\r\n--{boundary}--\r\n"
    ).encode()
    response = api_client(alice).generic(
        "POST", "/api/v1/messages", body, content_type=f"multipart/form-data; boundary={boundary}"
    )
    assert response.status_code == 400
    assert response.json()["sender"] == [
        "Les en-têtes de cette partie de l\u2019envoi sont trop longs\u00a0; rien n\u2019a été enregistré."
    ]
    assert_nothing_saved()


def test_a_file_name_too_long_for_the_parser_is_refused_naming_the_field(pair: tuple[User, User]) -> None:
    alice, bob = pair
    payload = _payload(alice, bob, attachments=[_file("compte-rendu-" + "x" * 2000 + ".pdf", b"%PDF-1.4")])
    response = api_client(alice).post("/api/v1/messages", payload)
    assert response.status_code == 400
    assert "Le nom du fichier est trop long" in response.json()["attachments"][0]
    assert_nothing_saved()


@pytest.mark.parametrize("field", ["to", "cc"])
def test_an_address_list_too_long_to_read_is_blamed_on_its_own_field(pair: tuple[User, User], field: str) -> None:
    """It used to be reported under sender, to and cc alike: an integrator was told the
    sender was wrong."""
    alice, bob = pair
    payload = _payload(alice, bob)
    payload[field] = "x@pli.localhost, " * 3000
    response = api_client(alice).post("/api/v1/messages", payload)
    assert response.status_code == 400
    assert list(response.json()) == [field]
    assert_nothing_saved()


@pytest.mark.parametrize("field", ["subject", "to", "patient_family_name"])
def test_a_text_field_far_too_long_is_named(pair: tuple[User, User], field: str) -> None:
    """Django refuses text fields past 2.5 MB in all without saying which one."""
    alice, bob = pair
    payload = _payload(alice, bob, attachments=[_file("a.pdf", b"%PDF-1.4")])
    payload[field] = "x" * 3_000_000
    response = api_client(alice).post("/api/v1/messages", payload)
    assert response.status_code == 400
    assert list(response.json()) == [field]
    assert_nothing_saved()


def test_a_malformed_multipart_body_is_refused_in_french(pair: tuple[User, User]) -> None:
    alice, _bob = pair
    response = api_client(alice).generic(
        "POST", "/api/v1/messages", b"--x\r\nnot a part", content_type="multipart/form-data; boundary="
    )
    assert response.status_code == 400
    assert response.json()["detail"].startswith("Le corps multipart est illisible")
    assert_nothing_saved()


def test_text_too_large_in_all_is_not_blamed_on_the_body(pair: tuple[User, User]) -> None:
    """Fields the API does not know, each under the per-field limit, past Django's total."""
    alice, bob = pair
    payload = _payload(alice, bob, **{f"extra{i}": "x" * 900_000 for i in range(3)})
    response = api_client(alice).post("/api/v1/messages", payload)
    assert response.status_code == 400
    assert list(response.json()) == ["detail"]
    assert_nothing_saved()
