"""A search's words, sealed into the link of its results page.

The results of a search must be a page the browser can go back to (a GET), yet its words
(patient names, INS) must not sit in the URL, the browser's history, the next page's Referer
or a proxy's log. So the form is posted, and answered with a redirect to a link that holds
the words encrypted (AES-256-GCM under a key of this instance, kept in the database wrapped
by the master key) and bound to the user and the mailbox: the link means nothing to anyone
who reads it, and opens nothing for another account.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import time
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pli.core import keys

PURPOSE = "search-links"
# Long enough for a working day's back-and-forth; a bookmark older than that asks again.
LIFETIME_SECONDS = 12 * 3600
_NONCE_SIZE = 12


def _aad(user_id: object, mailbox_id: object) -> bytes:
    return f"pli-search|{user_id}|{mailbox_id}".encode()


# Payloads are padded to a multiple of this, so that a link's length does not tell a
# 15-digit INS from a name.
_PAD_TO = 128


def seal(user_id: object, mailbox_id: object, fields: dict[str, str]) -> str:
    # UTF-8 as it is (not \u escapes): 200 emoji must still fit in a URL.
    text = json.dumps({"at": int(time.time()), "fields": fields}, separators=(",", ":"), ensure_ascii=False)
    payload = text.encode("utf-8")
    payload += b" " * (-len(payload) % _PAD_TO)
    nonce = os.urandom(_NONCE_SIZE)
    sealed = AESGCM(keys.purpose_key(PURPOSE)).encrypt(nonce, payload, _aad(user_id, mailbox_id))
    return base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode("ascii")


def unseal(user_id: object, mailbox_id: object, token: str) -> dict[str, str] | None:
    """The fields sealed in ``token``, or None for a link that is altered, too old, or
    another user's or mailbox's."""
    if not token or len(token) > 4096:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = AESGCM(keys.purpose_key(PURPOSE)).decrypt(
            raw[:_NONCE_SIZE], raw[_NONCE_SIZE:], _aad(user_id, mailbox_id)
        )
        data: Any = json.loads(payload)
    except (binascii.Error, ValueError, InvalidTag):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("fields"), dict):
        return None
    if not isinstance(data.get("at"), int) or time.time() - data["at"] > LIFETIME_SECONDS:
        return None
    return {str(k): str(v) for k, v in data["fields"].items()}
