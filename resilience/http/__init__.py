"""httpx integration: transports that apply the policies per origin, with HTTP semantics.

``ResilientTransport`` (for ``httpx.Client``) and ``AsyncResilientTransport`` (for
``httpx.AsyncClient``); ``resilient_client()`` / ``resilient_async_client()`` build a client
all of whose transports are resilient, in one call. Without options they run the standard
pipeline (``TransportOptions`` lists every option and its default). The HTTP rules are public
data, and the defaults of the options that change them: ``IDEMPOTENT_METHODS``,
``KEYED_METHODS``, ``RETRY_STATUSES``, ``KEYED_RETRY_STATUSES``, ``UNPROCESSED_STATUSES``,
``BREAKER_FAILURE_STATUSES``, ``RETRY_ERRORS``, ``NEVER_SENT_ERRORS``.
"""

from resilience._public import publish as _publish
from resilience.http._classify import (
    BREAKER_FAILURE_STATUSES,
    IDEMPOTENT_METHODS,
    KEYED_METHODS,
    KEYED_RETRY_STATUSES,
    NEVER_SENT_ERRORS,
    RETRY_ERRORS,
    RETRY_STATUSES,
    UNPROCESSED_STATUSES,
)
from resilience.http._client import resilient_async_client, resilient_client
from resilience.http._errors import HTTPDeadlineExceededError
from resilience.http._keys import IDEMPOTENCY_KEY, new_idempotency_key
from resilience.http._options import DEADLINE_HEADER, TransportOptions
from resilience.http._retry_after import parse_retry_after
from resilience.http._transport import AsyncResilientTransport, ResilientTransport

__all__ = [
    "BREAKER_FAILURE_STATUSES",
    "DEADLINE_HEADER",
    "IDEMPOTENCY_KEY",
    "IDEMPOTENT_METHODS",
    "KEYED_METHODS",
    "KEYED_RETRY_STATUSES",
    "NEVER_SENT_ERRORS",
    "RETRY_ERRORS",
    "RETRY_STATUSES",
    "UNPROCESSED_STATUSES",
    "AsyncResilientTransport",
    "HTTPDeadlineExceededError",
    "ResilientTransport",
    "TransportOptions",
    "new_idempotency_key",
    "parse_retry_after",
    "resilient_async_client",
    "resilient_client",
]

_publish(__name__, globals(), __all__)
