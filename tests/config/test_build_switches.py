"""The daemon-wide yes/no switches of the defaults section:
``ban_ends_sessions`` (superd's bans end the source's open sessions, or
xinetd's: new connections only) and ``all_or_nothing`` (any error refuses
the whole configuration, or each broken service fails alone)."""

from __future__ import annotations

import pytest

from tests.config.fakes import errors_of, load_text, service_text

F = "/etc/superd/test.conf"
ECHO = {"type": "INTERNAL", "socket_type": "stream", "wait": "no"}
#: Each switch and its value when absent.
SWITCHES = [("ban_ends_sessions", True), ("all_or_nothing", False)]


def _defaults(name: str, value: str) -> str:
    return f"defaults\n{{\n    {name} = {value}\n}}\n" + service_text("echo", **ECHO)


@pytest.mark.parametrize(("name", "absent"), SWITCHES)
def test_default_and_as_written(name: str, absent: bool) -> None:
    """Absent, the built-in value; ``yes`` and ``no`` as written."""
    assert getattr(load_text(service_text("echo", **ECHO)), name) is absent
    assert getattr(load_text(_defaults(name, "yes")), name) is True
    assert getattr(load_text(_defaults(name, "no")), name) is False


@pytest.mark.parametrize(("name", "absent"), SWITCHES)
def test_bad_values_and_places_are_errors_with_file_and_line(name: str, absent: bool) -> None:
    """Anything but yes/no, several values, or a service block: an error
    naming the file, line and attribute."""
    assert errors_of(_defaults(name, "off")) == [
        f"{F}:3: defaults: {name}: expected yes or no, got 'off'"]
    assert errors_of(_defaults(name, "yes no")) == [
        f"{F}:3: defaults: {name}: expected 1 value, got 2"]
    assert errors_of(service_text("echo", **ECHO, **{name: "no"})) == [
        f"{F}:6: service echo: {name}: only allowed in the defaults section"]
