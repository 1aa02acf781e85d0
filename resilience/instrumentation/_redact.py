"""What spans keep of a URL: ``url.full`` without credentials or signed-URL secrets.

The semantic conventions ask to redact userinfo and the values of query parameters that carry
credentials, and call their list a minimum "subject to change". Ours adds the SigV4
presigned-URL parameters (an S3 download link's signature, access key id and session token)
and is one process-wide setting (``set_redacted_query_params``), since every observer (the
default one and those on explicit providers) writes the same attribute. Names match without
regard to case: a server that accepts ``x-amz-signature`` is just as exposed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

__all__ = ["REDACTED_QUERY_PARAMS", "redact_url", "set_redacted_query_params"]

REDACTED_QUERY_PARAMS: Final = frozenset(
    {
        # OpenTelemetry semantic conventions (url.full)
        "AWSAccessKeyId",
        "Signature",
        "sig",
        "X-Goog-Signature",
        # AWS Signature Version 4, query-string (presigned) form
        "X-Amz-Signature",
        "X-Amz-Credential",
        "X-Amz-Security-Token",
    }
)
"""The query parameters whose values spans redact by default (matched in any case)."""

_redacted: frozenset[str] = frozenset(name.lower() for name in REDACTED_QUERY_PARAMS)


def set_redacted_query_params(names: Iterable[str] = REDACTED_QUERY_PARAMS) -> None:
    """Redact the values of these query parameters in every span's ``url.full`` from now on.

    The set replaces the current one (extend the default with
    ``{*REDACTED_QUERY_PARAMS, "token"}``); with no argument, restore the default. Names match
    case-insensitively. Process-wide; safe to call from any thread (one reference swap).
    """
    global _redacted
    if isinstance(names, (str, bytes)):
        raise TypeError(f"names must be a collection of parameter names, got {names!r}")
    chosen = list(names)
    if not all(isinstance(name, str) and name for name in chosen):
        raise TypeError(f"names must be non-empty strings, got {chosen!r}")
    _redacted = frozenset(name.lower() for name in chosen)


def redact_url(url: Any) -> str:
    """``url`` (an ``httpx.URL``) as a string with credentials and secret query values
    replaced by REDACTED; the parameters' names stay."""
    if url.userinfo:
        url = url.copy_with(username="REDACTED", password="REDACTED" if url.password else None)
    if url.query:
        redacted = _redacted
        params = url.params.multi_items()
        if any(key.lower() in redacted for key, _ in params):
            url = url.copy_with(
                params=[
                    (key, "REDACTED" if key.lower() in redacted else value) for key, value in params
                ]
            )
    return str(url)
