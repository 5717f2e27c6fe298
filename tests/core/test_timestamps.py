"""Tests for superd.core.timestamps: RFC 3339 times in UTC."""

from __future__ import annotations

import importlib
import math
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from superd.core.timestamps import parse_rfc3339, rfc3339, rfc3339_or_none


def test_rfc3339_is_utc_with_microseconds_and_z() -> None:
    """A time is written in UTC with six fraction digits and ``Z``."""
    assert rfc3339(1796611700.3393736) == "2026-12-07T02:48:20.339374Z"
    assert rfc3339(0.0) == "1970-01-01T00:00:00.000000Z"


def test_whole_seconds_for_tables() -> None:
    """``whole`` drops the fraction (truncating) and keeps the zone."""
    assert rfc3339(1796611700.9, whole=True) == "2026-12-07T02:48:20Z"


def test_rounding_to_the_next_second_carries() -> None:
    """A fraction that rounds to a whole microsecond million is the next second."""
    assert rfc3339(1.9999999) == "1970-01-01T00:00:02.000000Z"


def test_before_1970() -> None:
    """A negative time is the second before, plus a positive fraction."""
    assert rfc3339(-0.25) == "1969-12-31T23:59:59.750000Z"


def test_the_first_time_formatted_may_be_any_second() -> None:
    """The cache of the last second is right from the start: in a fresh
    module, the first time formatted is 1969's last second."""
    fresh = importlib.reload(importlib.import_module("superd.core.timestamps"))
    assert fresh.rfc3339(-0.25) == "1969-12-31T23:59:59.750000Z"
    assert fresh.rfc3339(0.5) == "1970-01-01T00:00:00.500000Z"


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_time_that_is_not_finite_is_refused(bad: float) -> None:
    """NaN and the infinities are not points in time."""
    with pytest.raises(ValueError, match="not a point in time"):
        rfc3339(bad)


@pytest.mark.parametrize(("value", "expected"), [
    (None, None), (math.inf, None), (math.nan, None), (86400.0, "1970-01-02T00:00:00Z")])
def test_or_none(value: float | None, expected: str | None) -> None:
    """None and times that are not finite (forever, unknown) are None."""
    assert rfc3339_or_none(value, whole=True) == expected


@given(st.floats(min_value=0, max_value=4e9, allow_nan=False))
def test_written_times_read_back_and_agree_with_datetime(seconds: float) -> None:
    """Reading a written time back gives it to the microsecond, and the text
    is what ``datetime`` writes for it in UTC (one second cached or not)."""
    text = rfc3339(seconds)
    assert abs(parse_rfc3339(text) - seconds) <= 1e-6 + 1e-9 * seconds
    expected = datetime.fromtimestamp(parse_rfc3339(text), UTC)
    assert text == expected.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_parse_accepts_an_offset_and_refuses_no_zone() -> None:
    """Any RFC 3339 zone is read; a time without one is refused."""
    assert parse_rfc3339("1970-01-01T01:00:00+01:00") == 0.0
    with pytest.raises(ValueError, match="no time zone"):
        parse_rfc3339("1970-01-01T00:00:00")
