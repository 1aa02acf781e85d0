"""Idempotency keys for unsafe requests (draft-ietf-httpapi-idempotency-key-header).

One key per logical call, generated before the first attempt and sent unchanged on every
attempt, so the server can tell a resend from a new request. The draft makes the field an
RFC 8941 Item whose value is a String, i.e. a quoted sf-string; many APIs (Stripe among them)
use a bare token instead, so both styles are offered. A caller's own key always wins.
"""

from __future__ import annotations

import uuid
from typing import Literal

__all__ = ["IDEMPOTENCY_KEY", "KeyStyle", "new_idempotency_key"]

IDEMPOTENCY_KEY = "Idempotency-Key"

KeyStyle = Literal["sf-string", "token"]


def new_idempotency_key(style: KeyStyle = "sf-string") -> str:
    """A fresh UUID4 key: ``"8e03978e-..."`` (quoted sf-string) or ``8e03978e-...`` (token)."""
    key = str(uuid.uuid4())
    return f'"{key}"' if style == "sf-string" else key
