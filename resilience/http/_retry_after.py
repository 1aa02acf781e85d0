"""Parse ``Retry-After`` (RFC 9110 §10.2.3) without ever raising.

``Retry-After = HTTP-date / delay-seconds``. All three HTTP-date forms are accepted (IMF-fixdate,
the obsolete RFC 850 form and asctime, all UTC). A date is measured against the response's own
``Date`` header when it has a valid one — both stamps then come from the server's clock, so
client clock skew does not matter — and against the local wall clock otherwise. A past date
means 0. Anything malformed is logged at DEBUG and ignored (``None``): the caller falls back to
its backoff.
"""

from __future__ import annotations

import calendar
import datetime
import email.utils
import logging
import time
from collections.abc import Callable

__all__ = ["DEFAULT_RETRY_AFTER_MAX", "parse_http_date", "parse_retry_after"]

_log = logging.getLogger("resilience")

# urllib3 caps Retry-After at 6 h; a caller-facing client rarely wants more than a minute or
# two, so the transports default lower (their ``retry_after_max``).
DEFAULT_RETRY_AFTER_MAX = 120.0


def parse_http_date(value: str) -> float | None:
    """Return the POSIX time of an HTTP-date in any of its three forms, or ``None``."""
    try:
        parts = email.utils.parsedate_tz(value)
        if parts is None:
            return None
        year, month, day, hour, minute, second = parts[:6]
        # parsedate_tz is lenient (hour 25, day 40): let datetime reject impossible dates.
        datetime.datetime(year, month, day, hour, minute, second)
        offset = parts[9] or 0  # asctime carries no zone: HTTP dates are UTC
        return calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)) - offset
    except (ValueError, TypeError, OverflowError, IndexError):
        return None


def parse_retry_after(
    value: str | None,
    *,
    date: str | None = None,
    maximum: float = DEFAULT_RETRY_AFTER_MAX,
    wall_clock: Callable[[], float] = time.time,
) -> float | None:
    """Return the seconds a ``Retry-After`` value asks to wait, capped at ``maximum``.

    ``date`` is the response's ``Date`` header, if any. ``None`` when the value is absent or
    malformed. Never raises.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        _malformed(value)
        return None
    if text.isascii() and text.isdigit():
        # More than 15 digits is past any cap (and would overflow a float): clamp it.
        seconds = float(int(text)) if len(text) <= 15 else maximum
    else:
        when = parse_http_date(text)
        if when is None:
            _malformed(value)
            return None
        now = parse_http_date(date) if date else None
        if now is None:
            now = wall_clock()
        seconds = max(0.0, when - now)
    return seconds if seconds < maximum else maximum


def _malformed(value: str) -> None:
    _log.debug("ignoring malformed Retry-After header %r", value)
