"""Idempotency keys for unsafe requests (draft-ietf-httpapi-idempotency-key-header).

One key per logical call, generated before the first attempt and sent unchanged on every
attempt, so the server can tell a resend from a new request. The draft makes the field an
RFC 8941 Item whose value is a String, i.e. a quoted sf-string; many APIs (Stripe among them)
use a bare token instead, so both styles are offered. A caller's own key always wins.
"""

from __future__ import annotations

import os
from typing import Literal

from resilience._context import uuid_text

__all__ = ["IDEMPOTENCY_KEY", "KeyStyle", "new_idempotency_key", "styled"]

IDEMPOTENCY_KEY = "Idempotency-Key"

KeyStyle = Literal["sf-string", "token"]


def new_idempotency_key(style: KeyStyle = "sf-string") -> str:
    """A fresh UUID4 key: ``"8e03978e-..."`` (quoted sf-string) or ``8e03978e-...`` (token).

    122 random bits from ``os.urandom`` (unguessable: a guessed key could read another
    client's stored response), formatted as ``str(uuid.uuid4())`` would.
    """
    return styled(uuid_text(os.urandom(16), 4), style)


def styled(key: str, style: KeyStyle) -> str:
    """``key`` as the field value: quoted (sf-string) or bare (token)."""
    return f'"{key}"' if style == "sf-string" else key
