"""
The one way superd writes a point in time: RFC 3339, in UTC, with ``Z``.

The main log (JSON and text), ``superd status`` and ``superd bans`` (tables
and JSON) all use ``rfc3339``, so a time read in one can be searched for in
the others and sorts as text.  Logs keep microseconds; tables for people
keep whole seconds (``seconds=True``), the same format without a fraction.
"""

from __future__ import annotations

import math
import time
from datetime import datetime
from typing import Optional, Tuple

__all__ = ["parse_rfc3339", "rfc3339", "rfc3339_or_none"]


# The text of the last whole second formatted, as one tuple replaced whole
# (a thread reading it never sees one second's number with another's
# text): a log writes many events per second, and strftime costs more than
# the rest of a timestamp.  It starts as a true pair, not a sentinel: any
# int is a second someone may format (-1 is the last second of 1969).
_last_second: Tuple[int, str] = (0, "1970-01-01T00:00:00")


def rfc3339(seconds: float, *, whole: bool = False) -> str:
    """
    ``seconds`` since the epoch as ``2026-12-07T01:12:36.123456Z`` (UTC,
    microseconds); ``2026-12-07T01:12:36Z`` with ``whole`` (truncated, for
    tables).  Raises ``ValueError`` for a time that is not finite.
    """
    global _last_second
    try:
        second = int(seconds)
    except (OverflowError, ValueError):
        raise ValueError(f"not a point in time: {seconds!r}") from None
    if seconds < second:  # before 1970: int() rounded up
        second -= 1
    micro = int((seconds - second) * 1_000_000 + 0.5)
    if micro >= 1_000_000:  # rounding reached the next second
        second, micro = second + 1, micro - 1_000_000
    cached, prefix = _last_second
    if cached != second:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _last_second = (second, prefix)
    return f"{prefix}Z" if whole else f"{prefix}.{micro:06d}Z"


def rfc3339_or_none(seconds: Optional[float], *, whole: bool = False) -> Optional[str]:
    """``rfc3339(seconds)``, or None for None or a time that is not finite
    (JSON ``null``: "forever" or "unknown", as the field says)."""
    if seconds is None or not math.isfinite(seconds):
        return None
    return rfc3339(seconds, whole=whole)


def parse_rfc3339(text: str) -> float:
    """Seconds since the epoch of an RFC 3339 time with a zone (``Z`` or
    ``+HH:MM``); raises ``ValueError`` for other text."""
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError(f"no time zone in {text!r}")
    return parsed.timestamp()
