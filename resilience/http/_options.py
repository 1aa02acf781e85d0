"""The transports' options: one frozen, validated object, and the standard pipeline's numbers.

``TransportOptions`` holds every option of ``ResilientTransport`` / ``AsyncResilientTransport``
and of ``resilient_client()`` / ``resilient_async_client()``; ``TransportKwargs`` spells the
same names for type checkers (``**options: Unpack[TransportKwargs]``). Adding an option is one
field here and one line there (a test checks that the two agree).

The defaults are the **standard pipeline** (what a client gets without configuring anything),
chosen from the published anchors — Polly's ``AddStandardResilienceHandler`` (.NET), Envoy's
router and cluster defaults, Finagle's client stack; the README's table gives each number with
its source:

- a total ``deadline`` of 30 s (Polly's total request timeout) and an ``attempt_timeout`` of
  10 s (Polly's attempt timeout);
- ``Retry(3)``: 3 attempts, full-jitter exponential backoff from 0.1 s capped at 10 s,
  ``Retry-After`` honoured (capped at ``retry_after_max``, 120 s);
- a ``RetryBudget`` of 20 % of first attempts plus 10 retries/s over 10 s (Finagle's default
  budget; Envoy's ``budget_percent`` is 20 % too);
- a ``CircuitBreaker`` opening at a 50 % failure rate over the last 30 s once 20 calls were
  seen, open for 5 s, then one trial (Polly samples 30 s and breaks for 5 s; resilience4j
  opens at 50 %).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Collection, Hashable
from dataclasses import dataclass, fields
from typing import Any, TypedDict

import httpx

from resilience._bulkhead import Bulkhead
from resilience._circuit.breaker import CircuitBreaker
from resilience._clock import Clock
from resilience._concurrency import AdaptiveConcurrency
from resilience._hedge import Hedge
from resilience._retry.backoff import Backoff
from resilience._retry.budget import RetryBudget
from resilience._retry.retry import Retry
from resilience._throttle import AdaptiveThrottle
from resilience._validate import check_duration
from resilience.deadletter import DeadLetterQueue
from resilience.http._classify import (
    BREAKER_FAILURE_STATUSES,
    RETRY_ERRORS,
    RETRY_STATUSES,
    OriginKey,
)
from resilience.http._keys import KeyStyle
from resilience.http._retry_after import DEFAULT_RETRY_AFTER_MAX

__all__ = [
    "DEADLINE_HEADER",
    "STANDARD_ATTEMPT_TIMEOUT",
    "STANDARD_BREAKER",
    "STANDARD_DEADLINE",
    "STANDARD_RETRY",
    "TransportKwargs",
    "TransportOptions",
    "origin_of_text",
    "transport_options",
]

# The time left for this attempt, in integer milliseconds at the moment it is sent, so the
# service receiving it can bound its own work and pass the remainder on.
DEADLINE_HEADER = "Request-Timeout-Ms"

STANDARD_DEADLINE = 30.0  # Polly standard handler: total request timeout 30 s
STANDARD_ATTEMPT_TIMEOUT = 10.0  # Polly standard handler: attempt timeout 10 s
# Templates, copied per origin (each copy gets the origin in its name and the transport's clock).
STANDARD_RETRY = Retry(
    3,  # AWS SDK standard mode and urllib3's Retry.DEFAULT; Polly 4, Envoy 2
    backoff=Backoff(initial=0.1, maximum=10.0, jitter="full"),
    budget=RetryBudget(ratio=0.2, min_retries_per_second=10.0, window=10.0, name="http"),
    name="http",
)
STANDARD_BREAKER = CircuitBreaker(
    "http", failure_rate=0.5, minimum_calls=20, window=30.0, open_for=5.0, half_open_calls=1
)


class TransportKwargs(TypedDict, total=False):
    """The keyword arguments of the transports and the client factories (see
    ``TransportOptions`` for what each means)."""

    retry: Retry | None
    breaker: CircuitBreaker | None
    bulkhead: Bulkhead | None
    limiter: AdaptiveConcurrency | None
    throttle: AdaptiveThrottle | None
    attempt_timeout: float | None
    deadline: float | None
    hedge: Hedge | None
    idempotency_keys: bool
    origins_honour_keys: bool | Collection[str]
    key_style: KeyStyle
    derive_keys: bool
    retry_statuses: Collection[int]
    breaker_statuses: Collection[int]
    retry_errors: tuple[type[BaseException], ...]
    policy_key: Callable[[httpx.Request], Hashable] | None
    retry_after_max: float
    deadline_header: str | None
    clock: Clock | None
    tracing: bool
    tracer_provider: object
    meter_provider: object
    dead_letter: DeadLetterQueue | None


@dataclass(frozen=True, slots=True)
class TransportOptions:
    """Every option of the HTTP transports, validated at construction and frozen.

    - ``retry``, ``breaker``, ``bulkhead``, ``hedge``: templates, copied per policy key (by
      default the origin: scheme, host, port); ``None`` switches the part off.
    - ``limiter`` (an ``AdaptiveConcurrency``) and ``throttle`` (an ``AdaptiveThrottle``):
      templates too, off by default; each attempt passes them (throttle, then limiter) before
      the breaker. The limiter counts timeouts and 429/503 answers as drops; the throttle counts
      transport errors and 429/503 answers as not accepted. Their refusals
      (``ThrottledError``, ``ConcurrencyLimitedError``) are final: never retried.
    - ``attempt_timeout``: seconds per attempt; ``deadline``: seconds for the whole call,
      retries and waits included (``None``: no limit of ours).
    - ``idempotency_keys``: add an ``Idempotency-Key`` to POST and PATCH (``key_style``:
      ``"sf-string"`` or ``"token"``; ``derive_keys``: derive it from the key of the request
      being served, when there is one).
    - ``origins_honour_keys``: ``True`` when every server this client calls honours
      ``Idempotency-Key``, or the origins (``"https://host[:port]"``) that do. Only then is a
      keyed POST/PATCH resent after a failure that leaves open whether the server acted.
    - ``retry_statuses`` (default 408, 429, 500, 502, 503, 504), ``breaker_statuses`` (every
      5xx), ``retry_errors`` (httpx timeouts, network, remote-protocol and proxy errors): what
      is worth another attempt and what counts against the breaker.
    - ``policy_key``: a function of the request naming the policies it goes through (default:
      its origin), e.g. for a breaker per route.
    - ``retry_after_max``, ``deadline_header``, ``clock``, ``tracing``, ``tracer_provider``,
      ``meter_provider``: as documented on ``ResilientTransport``.
    - ``dead_letter``: a ``resilience.deadletter.DeadLetterQueue`` that keeps the keyed calls
      ending without an answer (retries, budget or deadline spent, breaker open, 409, a lost
      response), for a later replay with the same key (``None``: off). Against an origin not
      declared in ``origins_honour_keys`` only calls that were never sent are kept.
    """

    retry: Retry | None = STANDARD_RETRY
    breaker: CircuitBreaker | None = STANDARD_BREAKER
    bulkhead: Bulkhead | None = None
    limiter: AdaptiveConcurrency | None = None
    throttle: AdaptiveThrottle | None = None
    attempt_timeout: float | None = STANDARD_ATTEMPT_TIMEOUT
    deadline: float | None = STANDARD_DEADLINE
    hedge: Hedge | None = None
    idempotency_keys: bool = True
    origins_honour_keys: bool | Collection[str] = False
    key_style: KeyStyle = "sf-string"
    derive_keys: bool = True
    retry_statuses: Collection[int] = RETRY_STATUSES
    breaker_statuses: Collection[int] = BREAKER_FAILURE_STATUSES
    retry_errors: tuple[type[BaseException], ...] = RETRY_ERRORS
    policy_key: Callable[[httpx.Request], Hashable] | None = None
    retry_after_max: float = DEFAULT_RETRY_AFTER_MAX
    deadline_header: str | None = DEADLINE_HEADER
    clock: Clock | None = None
    tracing: bool = True
    tracer_provider: object = None
    meter_provider: object = None
    dead_letter: DeadLetterQueue | None = None

    def __post_init__(self) -> None:
        _of_type(self.retry, Retry, "retry")
        _of_type(self.breaker, CircuitBreaker, "breaker")
        _of_type(self.bulkhead, Bulkhead, "bulkhead")
        _of_type(self.limiter, AdaptiveConcurrency, "limiter")
        _of_type(self.throttle, AdaptiveThrottle, "throttle")
        _of_type(self.hedge, Hedge, "hedge")
        _of_type(self.dead_letter, DeadLetterQueue, "dead_letter")
        check_duration(self.attempt_timeout, "attempt_timeout", allow_zero=False)
        check_duration(self.deadline, "deadline", allow_zero=False)
        check_duration(self.retry_after_max, "retry_after_max")
        for name in ("idempotency_keys", "derive_keys", "tracing"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.key_style not in ("sf-string", "token"):
            raise ValueError(f"key_style must be 'sf-string' or 'token', got {self.key_style!r}")
        object.__setattr__(self, "retry_statuses", _statuses(self.retry_statuses, "retry_statuses"))
        object.__setattr__(
            self, "breaker_statuses", _statuses(self.breaker_statuses, "breaker_statuses")
        )
        errors = self.retry_errors
        if not isinstance(errors, tuple) or not all(
            isinstance(t, type) and issubclass(t, BaseException) for t in errors
        ):
            raise TypeError(f"retry_errors must be a tuple of exception classes, got {errors!r}")
        honour = self.origins_honour_keys
        if not isinstance(honour, bool):
            if isinstance(honour, (str, bytes)) or not isinstance(honour, Collection):
                raise TypeError(
                    "origins_honour_keys must be True, False or a collection of origins "
                    f'like "https://api.example.com", got {honour!r}'
                )
            object.__setattr__(self, "origins_honour_keys", frozenset(honour))
            for text in honour:
                origin_of_text(text)  # raises, naming the parameter
        if self.policy_key is not None and not callable(self.policy_key):
            raise TypeError(
                f"policy_key must be a function of the request or None, got {self.policy_key!r}"
            )
        header = self.deadline_header
        if header is not None and (not isinstance(header, str) or not _is_token(header)):
            raise ValueError(f"deadline_header must be a header name or None, got {header!r}")

    def replace(self, **changes: Any) -> TransportOptions:
        """New options with these bar ``changes`` (any constructor keyword), checked as at
        construction; an unknown keyword is a ``TypeError`` naming it."""
        unknown = sorted(set(changes) - _NAMES)
        if unknown:
            close = difflib.get_close_matches(unknown[0], _NAMES, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise TypeError(f"unknown transport option(s): {', '.join(unknown)}{hint}")
        return dataclasses.replace(self, **changes)

    def honouring_origins(self) -> frozenset[OriginKey]:
        """The origins declared key-honouring, as policy keys (empty when ``True`` or
        ``False``: see ``origins_honour_keys``)."""
        honour = self.origins_honour_keys
        if isinstance(honour, bool):
            return frozenset()
        return frozenset(origin_of_text(text) for text in honour)


def origin_of_text(text: object) -> OriginKey:
    """``"https://host[:port]"`` as an origin key (scheme, host, port); a clear error else."""
    try:
        if not isinstance(text, str):
            raise TypeError
        url = httpx.URL(text)
    except (TypeError, httpx.InvalidURL):
        url = None
    if (
        url is None
        or url.scheme not in ("http", "https")
        or not url.host
        or url.path not in ("", "/")
        or url.query
    ):
        raise ValueError(
            "origins_honour_keys must name origins like "
            f'"https://api.example.com:8443", got {text!r}'
        )
    return (url.raw_scheme, url.raw_host, url.port)


def transport_options(options: dict[str, Any]) -> TransportOptions:
    """``TransportOptions(**options)``, with a clear error for a misspelt option."""
    unknown = set(options) - _NAMES
    if unknown:
        raise TypeError(f"unknown transport option(s): {', '.join(sorted(unknown))}")
    return TransportOptions(**options)


_NAMES = frozenset(field.name for field in fields(TransportOptions))


def _of_type(value: object, kind: type, name: str) -> None:
    if value is not None and not isinstance(value, kind):
        raise TypeError(f"{name} must be a {kind.__name__} or None, got {value!r}")


def _statuses(value: object, name: str) -> frozenset[int]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Collection):
        raise TypeError(f"{name} must be a collection of HTTP status codes, got {value!r}")
    for status in value:
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise ValueError(f"{name} must hold status codes in [100, 599], got {status!r}")
    return frozenset(value)


def _is_token(name: str) -> bool:
    """An HTTP field name (RFC 9110 §5.1: a token)."""
    allowed = "!#$%&'*+-.^_`|~"
    return bool(name) and name.isascii() and all(c.isalnum() or c in allowed for c in name)
