"""
Log observers for ``twistd --logger``.

``twistd -n --logger superd.logs.json_stdout superd ...`` writes one JSON
object per line (every named field of every event, for log shippers and the
integration tests); ``superd.logs.text_stdout`` is a readable line per event
with the event name, for people watching a terminal.
"""

from __future__ import annotations

import sys
from typing import IO, Optional

from twisted.logger import (
    FileLogObserver,
    ILogObserver,
    LogEvent,
    formatEvent,
    formatTime,
    jsonFileLogObserver,
)

from superd.events import connection_events

__all__ = ["format_text", "json_stdout", "text_stdout"]

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S%z"


def json_stdout() -> ILogObserver:
    """
    One JSON object per line on stdout (no RFC 7464 record separator).

    The structured log is for machines, so it also takes the per-connection
    events of builtins (``superd.events.connection_events``), which the
    default text log leaves out: every decision is a JSON line.
    """
    connection_events.send_to_main_log()
    return jsonFileLogObserver(sys.stdout, recordSeparator="")


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
