"""Objects that carry health data or a secret through a request show none of it in their
``repr`` (a traceback, a debug page, a log line), as ``ShareInput`` and ``MasterKey`` do."""

from __future__ import annotations

import datetime

from django.conf import settings

from pli.accounts.models import Mailbox
from pli.api.idempotency import Claim
from pli.api.models import IdempotencyKey
from pli.messaging.services import Draft, SearchQuery

MARKER = "Zqxmarker"


def test_a_draft_shows_no_subject_body_or_patient() -> None:
    draft = Draft(
        sender=Mailbox(name="Dr A", address="a@pli.test"),
        to=[Mailbox(name="Dr B", address="b@pli.test")],
        subject=f"Biopsie {MARKER}",
        body=f"Résultat {MARKER}",
        patient={"family_name": MARKER, "ins": "284022A00408875"},
    )
    shown = repr(draft)
    assert MARKER not in shown and "284022A00408875" not in shown


def test_a_search_query_shows_no_words() -> None:
    query = SearchQuery(text=f"lefèvre {MARKER}", sender=MARKER, date_from=datetime.date(2026, 1, 1))
    assert MARKER not in repr(query)


def test_an_idempotency_claim_shows_no_secret_key() -> None:
    claim = Claim(IdempotencyKey(), used=False, secret=settings.SECRET_KEY)
    assert settings.SECRET_KEY not in repr(claim)
