"""Retry-After parsing: seconds and all three HTTP-date forms; malformed values never raise."""

from __future__ import annotations

import email.utils

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resilience.http._retry_after import parse_http_date, parse_retry_after

# Sun, 06 Nov 1994 08:49:37 GMT, the RFC 9110 example, as a POSIX time.
EXAMPLE = 784111777.0


@pytest.mark.parametrize(
    "value",
    [
        "Sun, 06 Nov 1994 08:49:37 GMT",  # IMF-fixdate
        "Sunday, 06-Nov-94 08:49:37 GMT",  # obsolete RFC 850
        "Sun Nov  6 08:49:37 1994",  # asctime
    ],
)
def test_all_three_http_date_forms_parse_to_the_same_instant(value: str) -> None:
    """RFC 9110 §5.6.7: recipients accept IMF-fixdate, RFC 850 and asctime, all in UTC."""
    assert parse_http_date(value) == EXAMPLE


@pytest.mark.parametrize(
    "value", ["Sun, 06 Nov 1994 25:49:37 GMT", "Sun, 40 Nov 1994 08:49:37 GMT"]
)
def test_impossible_dates_are_rejected(value: str) -> None:
    """The lenient stdlib parser's impossible dates are refused rather than wrapped around."""
    assert parse_http_date(value) is None


def test_delay_seconds() -> None:
    """delay-seconds is an integer count of seconds."""
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(" 120 ") == 120.0
    assert parse_retry_after("0") == 0.0


def test_date_measured_against_the_response_date_header() -> None:
    """A date is measured against the server's own Date header, so client skew cannot matter."""
    assert (
        parse_retry_after(
            "Sun, 06 Nov 1994 08:49:47 GMT",
            date="Sun, 06 Nov 1994 08:49:37 GMT",
            wall_clock=lambda: 0.0,
        )
        == 10.0
    )


def test_date_measured_against_the_wall_clock_without_a_date_header() -> None:
    """Without a valid Date header the local wall clock is the reference."""
    later = email.utils.formatdate(EXAMPLE + 30, usegmt=True)
    assert parse_retry_after(later, wall_clock=lambda: EXAMPLE) == 30.0
    assert parse_retry_after(later, date="garbage", wall_clock=lambda: EXAMPLE) == 30.0


def test_past_date_means_zero() -> None:
    """A date in the past asks for no wait at all."""
    assert parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", wall_clock=lambda: EXAMPLE + 5) == 0.0


def test_values_are_capped() -> None:
    """Seconds and dates beyond the cap are clamped to it."""
    assert parse_retry_after("999999", maximum=60.0) == 60.0
    assert parse_retry_after("9" * 400, maximum=60.0) == 60.0
    far = email.utils.formatdate(EXAMPLE + 86400, usegmt=True)
    assert parse_retry_after(far, maximum=60.0, wall_clock=lambda: EXAMPLE) == 60.0


@pytest.mark.parametrize(
    "value", [None, "", "   ", "-5", "1.5", "soon", "٣", "Sun, 06 Nov", "0x10", "2 seconds"]
)
def test_malformed_values_are_ignored(value: str | None) -> None:
    """Negative, fractional, non-ASCII-digit or garbled values give None (fall back to backoff)."""
    assert parse_retry_after(value) is None


@given(st.text(max_size=60))
def test_never_raises(value: str) -> None:
    """Any header text at all: a number of seconds within the cap, or None; never an exception."""
    parsed = parse_retry_after(value, date=value, maximum=30.0)
    assert parsed is None or 0.0 <= parsed <= 30.0
