"""The server side of idempotency keys: turn a retried POST into one effect.

draft-ietf-httpapi-idempotency-key-header (-06 §2.6-2.7), with Stripe's and Brandur Leach's
practice where the draft is silent. For a request carrying ``Idempotency-Key``, in the record
of (policy, caller, key):

- first time (record unknown): claim it with a lease and an owner token, run the handler
  (renewing the lease while it runs), store its response for ``ttl`` seconds -> **claimed**,
  then **completed**;
- the same key and the same payload again, after completion: answer the stored response
  (with ``Idempotent-Replayed: true``) without running the handler -> **replayed**;
- the same key while the first is still running: **409 Conflict** with ``Retry-After``;
- the same key with a different payload (method, path, query or body): **422**;
- a malformed key, two key fields, a missing one where keys are ``required``, or no caller
  identity: **400**; the store unavailable: **503** (unless ``fail_open``).

A handler that raises, or answers a status saying "not processed" or "not done" (401, 403,
407, 408, 425, 429, any 5xx — a 504 is also what ``DeadlineMiddleware`` answers when the time
runs out), releases the claim, so the retry runs afresh; its downstream calls repeat their
derived keys. A claim whose owner died expires after ``lease`` seconds.

``rules`` is the sans-IO part (keys, callers, record names, fingerprints, what is stored);
``policy`` holds the options and the store (``Idempotency``); the ASGI and WSGI shells
(``resilience.asgi``, ``resilience.wsgi``) only move bytes.
"""

from resilience._idempotency.rules import (
    NOT_STORED_HEADERS,
    REDUCED_CAPACITY,
    REPLAYED_HEADER,
    StoredResponse,
    fingerprint,
    parse_key,
    problem,
    record_name,
)

__all__ = [
    "NOT_STORED_HEADERS",
    "REDUCED_CAPACITY",
    "REPLAYED_HEADER",
    "StoredResponse",
    "fingerprint",
    "parse_key",
    "problem",
    "record_name",
]
