"""httpx integration: transports that apply the policies per origin, with HTTP semantics.

``ResilientTransport`` (for ``httpx.Client``) and ``AsyncResilientTransport`` (for
``httpx.AsyncClient``); ``resilient_client()`` / ``resilient_async_client()`` build a configured
client in one call. The classification rules are public data: ``IDEMPOTENT_METHODS``,
``RETRY_STATUSES``, ``KEYED_RETRY_STATUSES``.
"""

from resilience._public import publish as _publish
from resilience.http._classify import (
    IDEMPOTENT_METHODS,
    KEYED_METHODS,
    KEYED_RETRY_STATUSES,
    RETRY_STATUSES,
)
from resilience.http._client import resilient_async_client, resilient_client
from resilience.http._keys import IDEMPOTENCY_KEY, new_idempotency_key
from resilience.http._retry_after import parse_retry_after
from resilience.http._transport import (
    DEADLINE_HEADER,
    AsyncResilientTransport,
    ResilientTransport,
)

__all__ = [
    "DEADLINE_HEADER",
    "IDEMPOTENCY_KEY",
    "IDEMPOTENT_METHODS",
    "KEYED_METHODS",
    "KEYED_RETRY_STATUSES",
    "RETRY_STATUSES",
    "AsyncResilientTransport",
    "ResilientTransport",
    "new_idempotency_key",
    "parse_retry_after",
    "resilient_async_client",
    "resilient_client",
]

_publish(__name__, globals(), __all__)
