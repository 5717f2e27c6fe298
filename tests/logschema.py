"""
What every line of superd's JSON log must be (docs/logging.rst, "The JSON
schema"), as a check a test can run on any line: the integration harness
runs it on every line every daemon writes.
"""

from __future__ import annotations

import json
import re
from typing import Any

from superd.core.timestamps import parse_rfc3339
from superd.observe import events

__all__ = ["EVENT_NAMES", "LEVELS", "SCHEMA_KEYS", "TIME", "parse_line", "parse_time",
           "problems"]

#: The keys each line starts with, in this order.
SCHEMA_KEYS = ("time", "level", "logger", "event", "message")
LEVELS = frozenset({"debug", "info", "warn", "error", "critical"})
#: RFC 3339, UTC, microseconds.
TIME = re.compile(r"\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z\Z")
#: Every ``event`` a line may have: superd's names, and ``twisted`` for the rest.
EVENT_NAMES = frozenset({*(value for key, value in vars(events).items()
                           if key.startswith("EV_") and isinstance(value, str)), "twisted"})
#: What twisted.logger's own JSON had and superd's must not.
_TWISTED_JSON = ("__class_uuid__", "unpersistable", "log_flattened")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_line(line: str) -> dict[str, Any]:
    """``line`` read by a strict JSON parser (no NaN or Infinity); must be an object."""
    value = json.loads(line, parse_constant=_refuse_constant)
    if not isinstance(value, dict):
        raise ValueError(f"not a JSON object: {line!r}")
    return value


def problems(line: str) -> list[str]:
    """What is wrong with one line of the JSON log (nothing: an empty list)."""
    try:
        record = parse_line(line)
    except ValueError as e:
        return [f"not a JSON object: {e}"]
    found = []
    if tuple(record)[:5] != SCHEMA_KEYS:
        found.append(f"starts with {tuple(record)[:5]}, not {SCHEMA_KEYS}")
    if not (isinstance(record.get("time"), str) and TIME.match(record["time"])):
        found.append(f"time {record.get('time')!r} is not RFC 3339 UTC with microseconds")
    if record.get("level") not in LEVELS:
        found.append(f"level {record.get('level')!r}")
    if not isinstance(record.get("logger"), str) or not record.get("logger"):
        found.append(f"logger {record.get('logger')!r}")
    if record.get("event") not in EVENT_NAMES:
        found.append(f"event {record.get('event')!r} is not a known name")
    if not isinstance(record.get("message"), str):
        found.append(f"message {record.get('message')!r} is not text")
    found += [f"key {key!r}" for key in record if key.startswith("log_")]
    found += [f"contains {marker}" for marker in _TWISTED_JSON if marker in line]
    return found


def parse_time(text: str) -> float:
    """A line's ``time``, in seconds since the epoch."""
    return parse_rfc3339(text)
