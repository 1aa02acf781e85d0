"""What a dead-letter queue keeps: the ``Letter`` (a request or a call, enough to send it again)
and the ``Entry`` around it (id, why it ended, when, how often it has been replayed, state).

Values only, and the one rule about what may be kept: credentials never are. The replaying
client supplies its own (``Authorization``, ``Cookie``, ``Proxy-Authorization``, the names the
user adds, and the ``user:password@`` of a URL), so a stolen queue file holds no secret from the
original request. Headers that describe one transmission (``Host``, ``Content-Length``,
hop-by-hop fields) or that our transport writes per attempt (``Request-Timeout-Ms``, trace
context) are not kept either: the replay writes its own.

Decoding is here too, once for both stores (``row_entry`` for SQLite, ``stream_entry`` for
Redis), and it never raises: a stored entry that cannot be read back (damaged, written by
hand, over the size of anything ``request_letter`` keeps) comes back as an ``Entry`` whose
letter is ``Unreadable``, with the class of the error as its reason and none of its content,
so listing, showing, dropping and replaying go on around it. A replay parks it; an entry a
newer version wrote (Redis: its ``"v"``) is left for a replayer that reads it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, NamedTuple, TypeVar

import httpx

__all__ = [
    "CREDENTIAL_HEADERS",
    "FORMAT",
    "MAX_HEADERS",
    "MAX_TEXT",
    "NOT_KEPT_HEADERS",
    "Depth",
    "Entry",
    "Kind",
    "Letter",
    "State",
    "Unreadable",
    "call_letter",
    "request_letter",
    "row_entry",
    "secret_names",
    "stream_entry",
    "stream_record",
]

# The version of the stored form. Redis: each entry's "v" (none: 1); SQLite: the file's
# ``PRAGMA user_version`` (0: 1). Bump it when an older version would misread what is written.
FORMAT: Final = 1
# Bounds on what is kept and read back: characters in one text field (the URL, a header name
# or value, the key, a reason) and header fields in one letter. Anything larger was not written
# by ``request_letter``, which refuses to keep it.
MAX_TEXT: Final = 1 << 16
MAX_HEADERS: Final = 256
# 9999-12-31 23:59:59 UTC: the last instant a ``datetime`` can show.
_LAST_MOMENT: Final = 253_402_300_799.0

# Credentials: the replaying client brings its own. Users add names (``secret_headers=``).
CREDENTIAL_HEADERS: Final = frozenset({"authorization", "cookie", "proxy-authorization"})

# One transmission's framing, hop-by-hop fields (RFC 9110 §7.6.1), and what our transport
# writes per attempt: the replay's own client writes them again.
NOT_KEPT_HEADERS: Final = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "expect",
        "request-timeout-ms",
        "traceparent",
        "tracestate",
        "baggage",
    }
)

Kind = Literal["http", "call"]
State = Literal["ready", "parked"]


@dataclass(frozen=True, slots=True)
class Letter:
    """A request or a call to send again.

    For ``kind="http"``: ``method``, ``target`` (the URL, without credentials), ``headers`` (as
    kept) and ``body``. For ``kind="call"``: ``target`` is the handler's registered name and
    ``body`` the JSON of ``{"args": [...], "kwargs": {...}}``. ``key`` is the
    ``Idempotency-Key`` field value as sent (or the call's key); ``None`` when there was none.
    """

    kind: Kind
    target: str
    method: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    key: str | None = None

    def arguments(self) -> tuple[list[Any], dict[str, Any]]:
        """A call letter's positional and keyword arguments (``ValueError`` when its body
        holds none; a letter read from a store always does: it is checked when read)."""
        return _arguments(self.body)


@dataclass(frozen=True, slots=True)
class Unreadable:
    """Stands for a letter a store holds but this version cannot read back.

    ``reason`` says why without quoting the content: "unreadable: <class of the error>" (with
    a detail naming the field when a check of ours failed), or, with ``newer``, that a newer
    version of resilience wrote it. A replay parks an unreadable entry (it could never be
    sent) and leaves a newer one ready, for a replayer that reads it.
    """

    reason: str
    newer: bool = False


@dataclass(frozen=True, slots=True)
class Entry:
    """One letter in a queue (``letter`` is ``Unreadable`` when the store's copy cannot be
    read back: then ``why`` is "unreadable", ``reason`` says why, ``created`` is 0).

    ``why`` is a small fixed word for metrics (exhausted, in_progress, unknown, deadline,
    breaker_open, rejected, unreachable, failed) and ``reason`` the sentence for people;
    ``created`` is wall-clock time (epoch seconds); ``attempts`` how many attempts the original
    call made (0 when unknown); ``replays`` how many replays have failed so far; ``state`` is
    "ready" (waiting for a replay) or "parked" (given up on, kept for inspection, with
    ``last_error`` saying why).
    """

    id: str
    letter: Letter | Unreadable
    why: str
    reason: str
    created: float
    attempts: int = 0
    replays: int = 0
    state: State = "ready"
    last_error: str = ""


class Depth(NamedTuple):
    """How many entries wait for a replay (``ready``, leased ones included) and how many were
    given up on (``parked``)."""

    ready: int
    parked: int


def secret_names(extra: Iterable[str]) -> frozenset[str]:
    """The header names not kept: credentials plus ``extra`` (checked, lower-cased)."""
    names = set(CREDENTIAL_HEADERS)
    if isinstance(extra, str):
        raise TypeError(f"secret_headers must be a collection of names, got the string {extra!r}")
    for name in extra:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"secret_headers must hold header names, got {name!r}")
        names.add(name.strip().lower())
    return frozenset(names)


def request_letter(request: httpx.Request, secrets: frozenset[str], max_body: int) -> Letter | str:
    """The letter for ``request``, or why it cannot be kept (a sentence)."""
    stream = request.stream
    if not isinstance(stream, httpx.ByteStream):
        if isinstance(stream, httpx._multipart.MultipartStream):
            return "the body is a multipart upload (its files are not kept)"
        return "the body is a stream that was already sent"
    body = bytes(request.read())
    if len(body) > max_body:
        return f"the body has {len(body)} bytes, over max_body={max_body}"
    headers = tuple(
        (name, value)
        for name, value in (
            (raw.decode("latin-1"), value.decode("latin-1")) for raw, value in request.headers.raw
        )
        if name.lower() not in secrets and name.lower() not in NOT_KEPT_HEADERS
    )
    url = request.url
    if url.userinfo:
        url = url.copy_with(username=None, password=None)
    longest = max((len(text) for pair in headers for text in pair), default=0)
    if max(len(str(url)), longest) > MAX_TEXT or len(headers) > MAX_HEADERS:
        return f"its URL or headers are over {MAX_TEXT} characters or {MAX_HEADERS} fields"
    return Letter(
        "http",
        str(url),
        request.method,
        headers,
        body,
        request.headers.get("idempotency-key"),
    )


def call_letter(
    name: str, args: tuple[Any, ...], kwargs: dict[str, Any], key: str | None
) -> Letter | str:
    """The letter for a call, or why it cannot be kept (arguments JSON cannot hold)."""
    try:
        body = json.dumps({"args": list(args), "kwargs": kwargs}, allow_nan=False)
    except (TypeError, ValueError) as exc:
        return f"its arguments are not JSON-serialisable ({exc})"
    return Letter("call", name, body=body.encode(), key=key)


def stream_record(letter: Letter, *, why: str, reason: str, created: float, attempts: int) -> str:
    """The JSON ``RedisStreamStore`` keeps for a new entry (``stream_entry`` reads it)."""
    return json.dumps(
        {
            "v": FORMAT,
            "letter": {
                "kind": letter.kind,
                "target": letter.target,
                "method": letter.method,
                "headers": [list(pair) for pair in letter.headers],
                "body": base64.b64encode(letter.body).decode("ascii"),
                "key": letter.key,
            },
            "why": why,
            "reason": reason,
            "created": created,
            "attempts": attempts,
        }
    )


def stream_entry(entry_id: str, data: bytes | str | None, state: bytes | str | None) -> Entry:
    """The entry ``RedisStreamStore`` keeps as ``data`` (``stream_record``'s JSON; ``None``
    when it is missing) and ``state`` ("replays|state|last error"; ``None`` until the first
    replay). Never raises: what cannot be read comes back ``Unreadable``."""
    replays, current, last_error = _or(_stream_state, state, _NOT_REPLAYED)

    def read() -> Entry:
        if data is None:
            raise _Malformed("its data is missing")
        stored = _object(json.loads(data), "the entry")
        version = stored.get("v", 1)
        if type(version) is not int:
            raise _Malformed("v is not a number")
        if version > FORMAT:
            newer = Unreadable(f"written by a newer version (format {version})", newer=True)
            return _unreadable(entry_id, newer, replays, current, last_error)
        stored_letter = _object(stored["letter"], "letter")
        body = stored_letter["body"]
        if not isinstance(body, str):
            raise _Malformed("body is not base64 text")
        letter = _letter(
            stored_letter["kind"],
            stored_letter["target"],
            stored_letter["method"],
            stored_letter["headers"],
            base64.b64decode(body, validate=True),
            stored_letter["key"],
        )
        return _entry(entry_id, letter, stored, _stream_state(state))

    return _read(entry_id, read, replays, current, last_error)


def row_entry(row: Mapping[str, Any]) -> Entry:
    """The entry ``SQLiteStore`` keeps as ``row`` (column name -> value; the headers as JSON
    text, the body as bytes). Never raises: what cannot be read comes back ``Unreadable``."""
    entry_id = str(row["id"])
    replays = _or(_count, row["replays"], 0)
    current = _or(_state, row["state"], _PARKED)  # never claimed: only 'ready' rows are
    last_error = _or(_text, row["last_error"], "")

    def read() -> Entry:
        headers = row["headers"]
        if not isinstance(headers, str):
            raise _Malformed("headers are not JSON text")
        letter = _letter(
            row["kind"], row["target"], row["method"], json.loads(headers), row["body"], row["key"]
        )
        state = (_count(row["replays"]), _state(row["state"]), _text(row["last_error"]))
        return _entry(entry_id, letter, row, state)

    return _read(entry_id, read, replays, current, last_error)


class _Malformed(ValueError):
    """A stored value of the wrong shape; the message names the field, never its content."""


_NOT_REPLAYED: Final[tuple[int, State, str]] = (0, "ready", "")
_PARKED: Final[State] = "parked"
_T = TypeVar("_T")
_V = TypeVar("_V")


def _read(
    entry_id: str, read: Callable[[], Entry], replays: int, state: State, last_error: str
) -> Entry:
    """``read()``, or the entry as unreadable with the class of what it raised."""
    try:
        return read()
    except Exception as exc:  # whatever a damaged or hostile record makes the reading raise
        reason = f"unreadable: {type(exc).__name__}"
        if isinstance(exc, _Malformed):
            reason += f" ({exc})"  # our own words: a field's name, no content
        return _unreadable(entry_id, Unreadable(reason), replays, state, last_error)


def _unreadable(
    entry_id: str, letter: Unreadable, replays: int, state: State, last_error: str
) -> Entry:
    return Entry(entry_id, letter, "unreadable", letter.reason, 0.0, 0, replays, state, last_error)


def _or(check: Callable[[_V], _T], value: _V, default: _T) -> _T:
    """``check(value)``, or ``default`` when it raises (the best an unreadable entry shows)."""
    try:
        return check(value)
    except Exception:
        return default


def _entry(
    entry_id: str, letter: Letter, stored: Mapping[str, Any], state: tuple[int, State, str]
) -> Entry:
    """The entry around a checked ``letter``: ``stored`` holds why, reason, created, attempts."""
    replays, current, last_error = state
    return Entry(
        entry_id,
        letter,
        _text(stored["why"], "why"),
        _text(stored["reason"], "reason"),
        _moment(stored["created"]),
        _count(stored["attempts"], "attempts"),
        replays,
        current,
        last_error,
    )


def _letter(
    kind: object, target: object, method: object, headers: object, body: object, key: object
) -> Letter:
    """A letter from stored values, each checked for its type and size."""
    if kind not in ("http", "call"):
        raise _Malformed("kind is neither http nor call")
    if not isinstance(headers, list) or len(headers) > MAX_HEADERS:
        raise _Malformed(f"headers are not a list of at most {MAX_HEADERS} fields")
    pairs = []
    for pair in headers:
        if not isinstance(pair, list) or len(pair) != 2:
            raise _Malformed("a header is not a name and a value")
        pairs.append((_text(pair[0], "a header name"), _text(pair[1], "a header value")))
    if not isinstance(body, bytes):
        raise _Malformed("body is not bytes")
    if kind == "call":
        _arguments(body)
    return Letter(
        kind,
        _text(target, "target"),
        _text(method, "method"),
        tuple(pairs),
        body,
        None if key is None else _text(key, "key"),
    )


def _arguments(body: bytes) -> tuple[list[Any], dict[str, Any]]:
    """A call letter's arguments: the JSON ``{"args": [...], "kwargs": {...}}`` in ``body``."""
    decoded = _object(json.loads(body), "the arguments")
    args, kwargs = decoded["args"], decoded["kwargs"]
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise _Malformed("the arguments are not a list and an object")
    return args, kwargs


def _stream_state(state: bytes | str | None) -> tuple[int, State, str]:
    """Redis's "replays|state|last error" (``None``: not replayed yet)."""
    if state is None:
        return _NOT_REPLAYED
    text = state.decode() if isinstance(state, bytes) else state
    count, current, last_error = text.split("|", 2)
    if not count.isdigit() or len(count) > 18:
        raise _Malformed("replays is not a count")
    return int(count), _state(current), _text(last_error, "last error")


def _object(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Malformed(f"{what} is not a JSON object")
    return value


def _text(value: object, field: str = "a text field") -> str:
    if not isinstance(value, str):
        raise _Malformed(f"{field} is not text")
    if len(value) > MAX_TEXT:
        raise _Malformed(f"{field} is over {MAX_TEXT} characters")
    return value


def _count(value: object, field: str = "replays") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 63:
        raise _Malformed(f"{field} is not a count")
    return value


def _moment(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Malformed("created is not a time")
    if not 0 <= value <= _LAST_MOMENT:  # NaN fails too
        raise _Malformed("created is out of range")
    return float(value)


def _state(value: object) -> State:
    if value == "ready":
        return "ready"
    if value == "parked":
        return "parked"
    raise _Malformed("state is neither ready nor parked")
