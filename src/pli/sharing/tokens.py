"""Link tokens, one-time codes and patient-session keys: random secrets kept as keyed hashes.

Each kind has its own instance-wide HMAC key (``pli.core.keys.purpose_key``), so a hash of
one kind can never be replayed as another, and a copy of the database without the master
key cannot even test a guess.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid

from pli.core.keys import purpose_key

# 256 random bits, twice the required minimum: 43 URL-safe characters.
TOKEN_BYTES = 32
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")
CODE_DIGITS = 6


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def plausible_token(token: str) -> bool:
    """Whether ``token`` has the shape of one we issue (checked before any database query)."""
    return _TOKEN_SHAPE.fullmatch(token) is not None


def token_hash(token: str) -> str:
    return hmac.new(purpose_key("share-token"), token.encode("ascii", "replace"), hashlib.sha256).hexdigest()


def new_code() -> str:
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def code_hash(share_id: uuid.UUID, code: str) -> str:
    # Bound to the share: a code sent for another share never matches.
    message = f"{share_id}:{code}".encode("ascii", "replace")
    return hmac.new(purpose_key("share-code"), message, hashlib.sha256).hexdigest()


def new_session_key() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def plausible_session_key(key: str) -> bool:
    """Whether ``key`` has the shape of a session key we issue (the same as a link token's)."""
    return _TOKEN_SHAPE.fullmatch(key) is not None


def session_key_hash(key: str) -> str:
    return hmac.new(purpose_key("patient-session"), key.encode("ascii", "replace"), hashlib.sha256).hexdigest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
