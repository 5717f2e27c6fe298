"""Tests for superd.observe.logs: the JSON and text observers for twistd --logger."""

from __future__ import annotations

import enum
import io
import json
import math
import re
from typing import Any

import pytest
from twisted.logger import Logger, LogLevel, LogPublisher, formatEvent
from twisted.python import log as legacy

from superd.observe import logs
from superd.observe.events import ConnectionEvents

#: RFC 3339 in UTC with microseconds, as every line's ``time``.
RFC3339_UTC = re.compile(r"\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z\Z")


def emit(observer: object, **fields: object) -> None:
    publisher = LogPublisher(observer)  # type: ignore[arg-type]
    Logger(namespace="superd.test", observer=publisher).info(
        "service {service_id} listening", event="listening", service_id="echo",
        peer_bytes="{not a format}", **fields)


def strict_json(line: str) -> dict[str, Any]:
    """``line`` parsed as RFC 8259 JSON: NaN and Infinity are errors."""
    def refuse(name: str) -> None:
        raise ValueError(f"not JSON: {name}")
    value = json.loads(line, parse_constant=refuse)
    assert isinstance(value, dict)
    return value


def logged(level: LogLevel = LogLevel.info, text: str = "EXIT {service_id} {what}",
           **fields: object) -> dict[str, Any]:
    """The event superd's Logger builds for ``fields``."""
    events: list[dict[str, Any]] = []
    Logger(namespace="superd", observer=events.append).emit(  # type: ignore[arg-type]
        level, text, **fields)
    return events[0]


def legacy_event(text: str, **fields: object) -> dict[str, Any]:
    """The event ``twisted.python.log.msg(text)`` gives the new logging system."""
    events: list[dict[str, Any]] = []
    legacy.theLogPublisher.addObserver(events.append)  # type: ignore[no-untyped-call]
    try:
        legacy.msg(text, **fields)
    finally:
        legacy.theLogPublisher.removeObserver(events.append)  # type: ignore[no-untyped-call]
    return dict(events[-1])


# -- the JSON observer ---------------------------------------------------------

def test_json_stdout_writes_one_object_per_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each event is one JSON line (no RFC 7464 separator) with every named field."""
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    monkeypatch.setattr(logs, "connection_events", ConnectionEvents())
    observer = logs.json_stdout()
    emit(observer, port=7)
    emit(observer, port=8)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "\x1e" not in out.getvalue()
    first = strict_json(lines[0])
    assert (first["event"], first["service_id"], first["port"]) == ("listening", "echo", 7)
    assert first["peer_bytes"] == "{not a format}"


def test_json_stdout_takes_per_connection_events(monkeypatch: pytest.MonkeyPatch) -> None:
    """The JSON log asks for the builtins' per-connection events; the text one does not."""
    channel = ConnectionEvents()
    monkeypatch.setattr(logs, "connection_events", channel)
    logs.text_stdout(io.StringIO())
    assert not channel.wanted("echo")
    logs.json_stdout()
    assert channel.sent_to_main_log and channel.wanted("echo")


def test_json_line_is_the_flat_schema() -> None:
    """time, level, logger, event and message come first, in that order, then
    the event's own fields as logged; none of twisted.logger's ``log_`` keys."""
    event = logged(LogLevel.warn, event="exit", service_id="echo", what=None, pid=0,
                   ok=True, duration=1.5)
    event["log_time"] = 1796611700.3393736
    record = strict_json(logs.json_line(event))
    assert list(record) == [*logs.SCHEMA_KEYS, "service_id", "what", "pid", "ok", "duration"]
    assert record == {
        "time": "2026-12-07T02:48:20.339374Z", "level": "warn", "logger": "superd",
        "event": "exit", "message": "EXIT echo None", "service_id": "echo", "what": None,
        "pid": 0, "ok": True, "duration": 1.5}


def test_json_time_is_rfc3339_utc_with_microseconds() -> None:
    """The event's own time, in UTC, with microseconds and Z."""
    record = strict_json(logs.json_line(logged(event="exit", service_id="a", what=1)))
    assert RFC3339_UTC.match(record["time"])


@pytest.mark.parametrize("level", list(LogLevel.iterconstants()))
def test_json_level_is_twisteds_name_of_it(level: LogLevel) -> None:
    """``level`` is the level's name: debug, info, warn, error, critical."""
    record = strict_json(logs.json_line(logged(level, event="exit", service_id="a", what=1)))
    assert record["level"] == level.name


def test_an_event_without_a_superd_name_is_twisted() -> None:
    """An event logged without ``event`` (Twisted's own, a user protocol's)
    gets ``event: twisted``; ``logger`` says whose it is."""
    events: list[dict[str, Any]] = []
    Logger(namespace="twisted.internet.base", observer=events.append).info(  # type: ignore[arg-type]
        "Main loop terminated.")
    record = strict_json(logs.json_line(events[0]))
    assert (record["event"], record["logger"], record["message"]) == (
        "twisted", "twisted.internet.base", "Main loop terminated.")


def test_a_legacy_line_has_the_schema_and_its_system() -> None:
    """A ``twisted.python.log.msg`` line: its text as ``message``, the legacy
    bookkeeping (``message`` tuple, ``time``, ``isError``) left out, its
    ``system`` and own fields kept."""
    record = strict_json(logs.json_line(legacy_event("Received SIGTERM, shutting down.",
                                                     extra=3)))
    assert {k: record[k] for k in ("event", "logger", "message", "level")} == {
        "event": "twisted", "logger": "log_legacy",
        "message": "Received SIGTERM, shutting down.", "level": "info"}
    assert record["system"] == "-" and record["extra"] == 3
    assert set(record) == {*logs.SCHEMA_KEYS, "system", "extra"}


def test_fields_named_like_the_schema_are_renamed() -> None:
    """An event's own ``message``, ``time``, ``level``, ``logger`` or
    ``traceback`` field is written as ``field_NAME``: the schema's keys
    always mean the same thing."""
    event = logged(text="{message}", event="bind_failed", message="taken", time=3)
    event.update(level="x", logger="y", traceback="z")  # not Logger.emit's arguments
    record = strict_json(logs.json_line(event))
    assert record["message"] == "taken" and record["level"] == "info"
    assert RFC3339_UTC.match(record["time"]) and record["logger"] == "superd"
    assert {k: record[k] for k in record if k.startswith("field_")} == {
        "field_message": "taken", "field_time": 3, "field_level": "x", "field_logger": "y",
        "field_traceback": "z"}


def test_a_non_text_event_field_is_not_the_name() -> None:
    """``event`` that is not text does not name the event: ``twisted``, and
    the value is kept as ``field_event``."""
    record = strict_json(logs.json_line(logged(text="x", event=7)))
    assert (record["event"], record["field_event"]) == ("twisted", 7)


class Colour(enum.Enum):
    RED = "red"


@pytest.mark.parametrize(("value", "written"), [
    (b"caf\xc3\xa9 \xff", "café \\xff"),
    (Colour.RED, "red"),
    (LogLevel.error, "error"),
    (frozenset({"b", "a"}), ["a", "b"]),
    ({"nested": [1, b"x"]}, {"nested": [1, "x"]}),
    (math.nan, "nan"),
    (math.inf, "inf"),
    ({(1, 2): "tuple key"}, "{(1, 2): 'tuple key'}"),
])
def test_values_json_cannot_carry_are_written_safely(value: object, written: object) -> None:
    """Bytes, enums, Twisted's constants and sets become JSON values; a NaN,
    an infinity or a key that is not text make that field its text; the
    line stays strict JSON and keeps the other fields."""
    record = strict_json(logs.json_line(logged(event="exit", service_id="a", what=value)))
    assert record["what"] == written and record["service_id"] == "a"


def test_an_object_is_written_as_its_repr_even_if_repr_fails() -> None:
    """Any other object is its ``repr``; one whose ``repr`` raises still
    gives a line (``safe_repr`` says so)."""
    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    record = strict_json(logs.json_line(logged(event="exit", service_id="a", what=Broken())))
    assert "Broken" in record["what"] and "no repr" in record["what"]


def test_a_failure_gives_a_traceback() -> None:
    """An event that carries a failure has ``traceback``, the failure's text."""
    events: list[dict[str, Any]] = []
    log = Logger(namespace="superd.test", observer=events.append)  # type: ignore[arg-type]
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        log.failure("it broke", event="handler_error")
    record = strict_json(logs.json_line(events[0]))
    assert record["level"] == "critical" and record["message"] == "it broke"
    assert "ZeroDivisionError" in record["traceback"]
    assert list(record)[:6] == [*logs.SCHEMA_KEYS, "traceback"]


def test_an_unformattable_event_still_gives_a_line() -> None:
    """A format naming a missing field: the message says it could not be
    formatted (as twisted.logger does), and the line is written."""
    record = strict_json(logs.json_line(logged(text="{nothing}", event="exit")))
    assert record["message"].startswith("Unable to format event")


# -- the message ---------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "EXIT {service_id} duration={duration:.3f}s {what!r}",
    "{thing.real} {items[0]}",
    "called {callable()}",
    "{missing}",
    "{duration:{width}}",
    "no fields",
    "{",
])
def test_render_message_is_formatEvent(text: str) -> None:
    """render_message gives exactly twisted.logger's formatEvent text, for
    plain named fields (rendered quickly) and for everything else
    (attributes, indexes, Twisted's call syntax, errors)."""
    event = logged(text=text, service_id="a", duration=1.23456, what="x", thing=3,
                   items=["first"], callable=lambda: "yes", width=9)
    assert logs.render_message(event) == formatEvent(event)
    assert logs.render_message(event) == formatEvent(event)  # cached the second time


def test_render_message_of_an_event_without_format() -> None:
    """No format: an empty message, as formatEvent has it."""
    assert logs.render_message({"log_time": 1.0}) == ""


# -- Twisted's lines about ports and factories ----------------------------------

PORT_LINES = [
    "AccessControlledFactory starting on 10019",
    "AccessControlledDatagramProtocol starting on 54250",
    "ControlFactory starting on '/var/lib/superd/superd.control'",
    "(TCP Port 21007 Closed)",
    "(UDP Port 54250 Closed)",
    "(UNIX Port /var/lib/superd/superd.control Closed)",
    "Starting protocol <superd.handlers.builtins.udp.Echo object at 0x7f>",
]


@pytest.mark.parametrize("text", PORT_LINES)
def test_port_lines_are_left_out_of_both_logs(text: str) -> None:
    """Twisted's "X starting on N" and "(TCP Port N Closed)" lines reach
    neither the JSON nor the text log (superd logs listening and
    not_listening with the address instead)."""
    event = legacy_event(text)
    assert logs._json_text(event) is None
    assert logs.format_text(event) is None


def test_starting_factory_lines_are_left_out() -> None:
    """A noisy factory's "Starting factory" line is left out too."""
    events: list[dict[str, Any]] = []
    Logger(namespace="twisted.internet.protocol.Factory",
           observer=events.append).info(  # type: ignore[arg-type]
        "Starting factory {factory!r}", factory=object())
    assert logs._json_text(events[0]) is None and logs.format_text(events[0]) is None


@pytest.mark.parametrize("text", ["Received SIGTERM, shutting down.",
                                  "client starting on time", "(not a port) Closed"])
def test_other_legacy_lines_are_kept(text: str) -> None:
    """Only the port lines go: other legacy lines are written."""
    event = legacy_event(text)
    assert strict_json(str(logs._json_text(event)))["message"] == text
    assert text in str(logs.format_text(event))


# -- the text observer ---------------------------------------------------------

def test_text_observer_line() -> None:
    """Text lines carry the RFC 3339 time, level, namespace, event name and the message."""
    out = io.StringIO()
    emit(logs.text_stdout(out))
    line = out.getvalue()
    assert line.endswith(" info [superd.test] listening: service echo listening\n")
    assert RFC3339_UTC.match(line.split(" ", 1)[0])


def test_text_observer_failure_is_indented() -> None:
    """A logged failure's traceback follows the line, indented."""
    out = io.StringIO()
    publisher = LogPublisher(logs.text_stdout(out))
    log = Logger(namespace="superd.test", observer=publisher)
    try:
        raise ZeroDivisionError("division by zero")
    except ZeroDivisionError:
        log.failure("it broke", level=LogLevel.error)
    text = out.getvalue()
    assert "error [superd.test] it broke" in text
    assert "\n\tTraceback" in text and "ZeroDivisionError" in text


def test_failure_outside_an_except_block_is_its_repr() -> None:
    """A ``log_failure`` that is not a Failure is shown by its repr, not a crash."""
    event = logged(event="exit", service_id="a", what=1, log_failure="not a failure")
    assert strict_json(logs.json_line(event))["traceback"] == "'not a failure'"
