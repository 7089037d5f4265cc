"""How an event is hashed: canonical JSON of every field plus the previous hash."""

from __future__ import annotations

import datetime
import hashlib
import json
from typing import Any

# The chain starts from a fixed, documented value so that an empty trail has a head too.
GENESIS_HASH = hashlib.sha256(b"pli audit trail v1").hexdigest()


def event_hash(
    *,
    seq: int,
    at: datetime.datetime,
    actor_type: str,
    actor_id: str,
    action: str,
    target_type: str,
    target_id: str,
    ip: str | None,
    outcome: str,
    details: dict[str, Any],
    prev_hash: str,
) -> str:
    canonical = json.dumps(
        [
            1,
            seq,
            at.astimezone(datetime.UTC).isoformat(timespec="microseconds"),
            actor_type,
            actor_id,
            action,
            target_type,
            target_id,
            ip or "",
            outcome,
            details,
            prev_hash,
        ],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()
