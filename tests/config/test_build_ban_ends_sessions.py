"""``ban_ends_sessions``: the defaults switch between superd's bans (a new
ban ends the source's open sessions) and xinetd's (new connections only)."""

from __future__ import annotations

from tests.config.fakes import errors_of, load_text, service_text

F = "/etc/superd/test.conf"
ECHO = {"type": "INTERNAL", "socket_type": "stream", "wait": "no"}


def _defaults(value: str) -> str:
    return f"defaults\n{{\n    ban_ends_sessions = {value}\n}}\n" + service_text("echo", **ECHO)


def test_yes_by_default_and_as_written() -> None:
    """Absent, a ban ends sessions; ``no`` restores xinetd's behaviour."""
    assert load_text(service_text("echo", **ECHO)).ban_ends_sessions is True
    assert load_text(_defaults("yes")).ban_ends_sessions is True
    assert load_text(_defaults("no")).ban_ends_sessions is False


def test_bad_values_and_places_are_errors_with_file_and_line() -> None:
    """Anything but yes/no, several values, or a service block: an error
    naming the file, line and attribute."""
    assert errors_of(_defaults("off")) == [
        f"{F}:3: defaults: ban_ends_sessions: expected yes or no, got 'off'"]
    assert errors_of(_defaults("yes no")) == [
        f"{F}:3: defaults: ban_ends_sessions: expected 1 value, got 2"]
    assert errors_of(service_text("echo", **ECHO, ban_ends_sessions="no")) == [
        f"{F}:6: service echo: ban_ends_sessions: only allowed in the defaults section"]
