"""
Log observers for ``twistd --logger``.

``twistd -n --logger superd.logs.json_stdout superd ...`` writes one JSON
object per line (every named field of every event, for log shippers and the
integration tests); ``superd.logs.text_stdout`` is a readable line per event
with the event name, for people watching a terminal.
"""

from __future__ import annotations

import json
import sys
from typing import IO, Any, Optional

from twisted.logger import (
    FileLogObserver,
    ILogObserver,
    LogEvent,
    LogLevel,
    eventAsJSON,
    formatEvent,
    formatTime,
)

from superd.observe.events import connection_events

__all__ = ["format_text", "json_line", "json_stdout", "text_stdout"]

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S%z"


def json_stdout() -> ILogObserver:
    """
    One JSON object per line on stdout (no RFC 7464 record separator).

    The structured log is for machines, so it also takes the per-connection
    events of builtins (``superd.observe.events.connection_events``), which the
    default text log leaves out: every decision is a JSON line.
    """
    connection_events.send_to_main_log()
    return FileLogObserver(sys.stdout, lambda event: json_line(event) + "\n")


#: Values JSON carries as they are (exact types: no subclass surprises).
_PLAIN_TYPES = frozenset({str, int, float, bool, type(None)})
#: Each level as twisted.logger's JSON has it, taken from twisted.logger
#: itself, so its readers (eventsFromJSONLogFile) still load our lines.
_LEVELS: dict[Any, Any] = {
    level: json.loads(eventAsJSON({"log_level": level}))["log_level"]
    for level in LogLevel.iterconstants()}
_UNPERSISTABLE: dict[str, bool] = {"unpersistable": True}


def json_line(event: LogEvent) -> str:
    """
    ``event`` as one line of JSON, the object twisted.logger's
    ``eventAsJSON`` writes.  An event whose fields are all plain values (every
    event superd emits per connection) is written directly, without the
    ``log_flattened`` copy of its fields that ``eventAsJSON`` makes for
    values JSON cannot carry: that flattening re-parses the format string
    and costs more than serving a daytime connection.
    Readers format either kind the same (``formatEvent`` uses the fields).
    """
    record: dict[str, Any] = {}
    for key, value in event.items():
        if type(value) in _PLAIN_TYPES:
            record[key] = value
        elif key == "log_logger":
            record[key] = _UNPERSISTABLE
        elif key == "log_level" and value in _LEVELS:
            record[key] = _LEVELS[value]
        else:
            return eventAsJSON(event)
    return json.dumps(record)


def format_text(event: LogEvent) -> Optional[str]:
    """``TIME LEVEL [namespace] event: message`` plus a traceback if any."""
    level = event.get("log_level")
    level_name = getattr(level, "name", "info")
    name = event.get("event")
    prefix = f"{name}: " if isinstance(name, str) else ""
    text = formatEvent(event).replace("\n", "\n\t")
    line = (f"{formatTime(event.get('log_time'), _TIME_FORMAT)} {level_name} "
            f"[{event.get('log_namespace', '-')}] {prefix}{text}\n")
    failure = event.get("log_failure")
    if failure is not None:
        line += "\t" + failure.getTraceback().replace("\n", "\n\t").rstrip("\t")
    return line


def text_stdout(out: Optional[IO[str]] = None) -> ILogObserver:
    """Readable text, one line per event, on stdout."""
    return FileLogObserver(out or sys.stdout, format_text)
