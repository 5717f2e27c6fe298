"""
Log observers for ``twistd --logger``: the main log, as JSON or as text.

``twistd -n --logger superd.logs.json_stdout superd ...`` (``superd run
--json-log``) writes one JSON object per line, in the schema documented in
``docs/logging.rst``::

    {"time": "2026-12-07T01:12:36.123456Z", "level": "info",
     "logger": "superd", "event": "refuse",
     "message": "FAIL echo address from=192.0.2.7 ", "service_id": "echo", ...}

``time`` (RFC 3339, UTC, microseconds), ``level`` (``debug``, ``info``,
``warn``, ``error``, ``critical``), ``logger`` (the event's namespace),
``event`` (superd's event name, ``superd.observe.events``; ``twisted`` for
an event that has none: Twisted's own, a user protocol's) and ``message``
(the rendered text) come first; ``traceback`` follows when the event carries
a failure; then every field of the event itself, as it was logged.

``superd.logs.text_stdout`` (``superd run`` without ``--json-log``) writes
``TIME LEVEL [logger] event: message`` for people watching a terminal.

Both leave out Twisted's own lines about ports and factories ("Factory
starting on 7", "(TCP Port 7 Closed)"): superd logs ``listening`` and
``not_listening`` with the service and the address instead.
"""

from __future__ import annotations

import enum
import json
import os
import string
import sys
import time
from typing import IO, Any, Dict, Optional

from twisted.logger import FileLogObserver, ILogObserver, LogEvent, LogLevel, formatEvent
from twisted.python.failure import Failure
from twisted.python.reflect import safe_repr

from superd.core.timestamps import rfc3339
from superd.core.twistedprivate import is_port_chatter
from superd.observe.events import connection_events

__all__ = ["RENAMED_PREFIX", "SCHEMA_KEYS", "UNNAMED_EVENT", "format_text", "json_line",
           "json_record", "json_stdout", "render_message", "text_stdout"]

#: The keys every JSON line starts with, in this order.
SCHEMA_KEYS = ("time", "level", "logger", "event", "message")
#: The ``event`` of a line whose event has no superd event name.
UNNAMED_EVENT = "twisted"
#: An event's own field named like a schema key (or ``traceback``) is
#: written under this prefix instead: the schema's keys always mean the same.
RENAMED_PREFIX = "field_"

_RESERVED = frozenset((*SCHEMA_KEYS, "traceback"))
# twisted.python.log's bookkeeping in a legacy event: the schema's keys say
# the same (its ``system`` stays: the connection a legacy line came from).
_LEGACY_KEYS = frozenset({"message", "time", "isError", "format", "failure", "why",
                          "logLevel"})


def json_stdout() -> ILogObserver:
    """
    One JSON object per line on stdout (no RFC 7464 record separator).

    The structured log is for machines, so it also takes the per-connection
    events of builtins (``superd.observe.events.connection_events``), which the
    default text log leaves out: every decision is a JSON line.
    """
    connection_events.send_to_main_log()
    return FileLogObserver(sys.stdout, _json_text)


def text_stdout(out: Optional[IO[str]] = None) -> ILogObserver:
    """Readable text, one line per event, on stdout."""
    return FileLogObserver(out or sys.stdout, format_text)


# -- the message --------------------------------------------------------------

_formatter = string.Formatter()
#: Format string -> whether ``str.format_map`` renders it as Twisted would
#: (named fields only: no attribute, index or call syntax).
_simple_formats: Dict[str, bool] = {}
_MAX_FORMATS = 4096


def _is_simple(text: str) -> bool:
    try:
        fields = [(name, spec) for _, name, spec, _ in _formatter.parse(text)
                  if name is not None]
    except ValueError:
        return False
    return all(name.isidentifier() and "{" not in (spec or "") for name, spec in fields)


def render_message(event: LogEvent) -> str:
    """
    The event's text, as ``twisted.logger.formatEvent`` renders it.  A format
    with plain named fields (every superd format) is rendered by
    ``str.format_map`` (the same result; ``formatEvent`` parses the format
    on every call); anything else, or an error, goes to ``formatEvent``.
    """
    text = event.get("log_format")
    if type(text) is str:
        simple = _simple_formats.get(text)
        if simple is None:
            if len(_simple_formats) >= _MAX_FORMATS:
                _simple_formats.clear()
            simple = _simple_formats[text] = _is_simple(text)
        if simple:
            try:
                return text.format_map(event)
            except Exception:
                pass  # formatEvent says what is wrong, as it always has
    return formatEvent(event)


def _time(event: LogEvent) -> str:
    """The event's time in RFC 3339 (now, if it has none that is usable)."""
    try:
        return rfc3339(event["log_time"])
    except (KeyError, TypeError, ValueError):
        return rfc3339(time.time())


def _traceback(failure: Any) -> str:
    if isinstance(failure, Failure):
        try:
            return str(failure.getTraceback())
        except Exception:
            pass
    return str(safe_repr(failure))


# -- JSON ---------------------------------------------------------------------

#: Twisted's constants (a LogLevel, ...), written by name.
_NAMED_CONSTANT: Any = type(LogLevel.info)


def _plain(value: Any) -> Any:
    """A value JSON cannot carry, as one it can (never raises)."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "backslashreplace")
    if isinstance(value, enum.Enum):
        # The encoder comes back here if the value itself needs it.
        return value.name if isinstance(value.value, enum.Enum) else value.value
    if isinstance(value, _NAMED_CONSTANT):
        return value.name
    if isinstance(value, (set, frozenset)):
        try:
            return sorted(value)
        except TypeError:
            return list(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Failure):
        return value.getErrorMessage()
    return safe_repr(value)


_encoder = json.JSONEncoder(default=_plain, allow_nan=False)


def _finite(value: Any) -> Any:
    """``value`` for JSON, or its text when it holds what JSON cannot
    (NaN, a key that is not a string, a cycle)."""
    try:
        _encoder.encode(value)
    except (TypeError, ValueError, RecursionError):
        return safe_repr(value)
    return value


def json_record(event: LogEvent) -> Dict[str, Any]:
    """The JSON object of ``event`` (see the module), before encoding."""
    level = event.get("log_level")
    name = event.get("event")
    record: Dict[str, Any] = {
        "time": _time(event),
        "level": getattr(level, "name", "info"),
        "logger": event.get("log_namespace", "-"),
        "event": name if type(name) is str else UNNAMED_EVENT,
        "message": render_message(event),
    }
    failure = event.get("log_failure")
    if failure is not None:
        record["traceback"] = _traceback(failure)
    if not (_RESERVED_NOT_EVENT if type(name) is str else _RESERVED).isdisjoint(event):
        _add_fields(record, event)
        return record
    # The common case, in C: every field, then out with Twisted's own keys.
    record.update(event)
    for key in event.keys() & _TWISTED_KEYS:
        del record[key]
    return record


_RESERVED_NOT_EVENT = _RESERVED - {"event"}
#: The keys twisted.logger adds to an event (``Logger.emit``, ``failure``,
#: legacy ``log.msg``, standard I/O redirected to the log ...).  Another
#: ``log_`` key would be written as a field: the schema test on the real
#: daemon's output says so.
_TWISTED_KEYS = frozenset({
    "log_logger", "log_level", "log_namespace", "log_source", "log_format", "log_time",
    "log_failure", "log_text", "log_system", "log_flattened", "log_trace", "log_io",
    "log_legacy",
})


def _add_fields(record: Dict[str, Any], event: LogEvent) -> None:
    """The event's own fields, renaming those that clash with the schema."""
    legacy = record["logger"] == "log_legacy"
    own_name = type(event.get("event")) is str
    for key, value in event.items():
        if key.startswith("log_") or (legacy and key in _LEGACY_KEYS):
            continue
        if key in _RESERVED and not (key == "event" and own_name):
            record[RENAMED_PREFIX + key] = value
        elif key != "event":
            record[key] = value


def json_line(event: LogEvent) -> str:
    """``event`` as one line of JSON (no newline), in the schema of the module."""
    record = json_record(event)
    try:
        return _encoder.encode(record)
    except (TypeError, ValueError, RecursionError):
        # A NaN, a dict with keys that are not text, a cycle: each such
        # field as its text, the rest as they are.
        return _encoder.encode({key: _finite(value) for key, value in record.items()})


def _json_text(event: LogEvent) -> Optional[str]:
    if is_port_chatter(event):
        return None
    return json_line(event) + "\n"


# -- text ---------------------------------------------------------------------

def format_text(event: LogEvent) -> Optional[str]:
    """``TIME LEVEL [logger] event: message`` plus a traceback if any."""
    if is_port_chatter(event):
        return None
    level = event.get("log_level")
    level_name = getattr(level, "name", "info")
    name = event.get("event")
    prefix = f"{name}: " if isinstance(name, str) else ""
    text = render_message(event).replace("\n", "\n\t")
    line = (f"{_time(event)} {level_name} "
            f"[{event.get('log_namespace', '-')}] {prefix}{text}\n")
    failure = event.get("log_failure")
    if failure is not None:
        line += "\t" + _traceback(failure).replace("\n", "\n\t").rstrip("\t")
    return line
