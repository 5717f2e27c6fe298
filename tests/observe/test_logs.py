"""Tests for superd.observe.logs: the JSON and text observers for twistd --logger."""

from __future__ import annotations

import io
import json

import pytest
from twisted.logger import (
    Logger,
    LogLevel,
    LogPublisher,
    eventAsJSON,
    eventsFromJSONLogFile,
    formatEvent,
)

from superd.observe import logs
from superd.observe.events import ConnectionEvents


def emit(observer: object, **fields: object) -> None:
    publisher = LogPublisher(observer)  # type: ignore[arg-type]
    Logger(namespace="superd.test", observer=publisher).info(
        "service {service_id} listening", event="listening", service_id="echo",
        peer_bytes="{not a format}", **fields)


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
    first = json.loads(lines[0])
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


def logged(**fields: object) -> dict[str, object]:
    events: list[dict[str, object]] = []
    Logger(namespace="superd", observer=events.append).info(  # type: ignore[arg-type]
        "EXIT {service_id} duration={duration:.3f}s {what}", event="exit", **fields)
    return events[0]


def test_json_line_of_plain_fields_reads_back_as_twisted_json() -> None:
    """Plain fields: Twisted's JSON object without log_flattened; read back, it formats the same."""
    event = logged(service_id="echo", duration=1.23456, what=None, pid=0, ok=True)
    line = logs.json_line(dict(event))
    twisted_object = json.loads(eventAsJSON(dict(event)))
    del twisted_object["log_flattened"]
    assert json.loads(line) == twisted_object
    (back,) = eventsFromJSONLogFile(io.StringIO(line + "\n"))
    assert formatEvent(back) == formatEvent(event) == "EXIT echo duration=1.235s None"
    assert back["log_level"] is LogLevel.info


def test_json_line_of_other_values_is_twisteds() -> None:
    """A field JSON cannot carry as it is (bytes, objects) gets twisted.logger's flattened form."""
    for what in (b"\xff", object()):
        event = logged(service_id="echo", duration=0.5, what=what)
        assert json.loads(logs.json_line(dict(event))) == json.loads(eventAsJSON(dict(event)))


def test_text_observer_line() -> None:
    """Text lines carry time, level, namespace, event name and the message."""
    out = io.StringIO()
    emit(logs.text_stdout(out))
    line = out.getvalue()
    assert line.endswith("info [superd.test] listening: service echo listening\n")
    assert line[:4].isdigit()


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
