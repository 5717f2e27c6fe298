"""``all_or_nothing``: the defaults switch that refuses a configuration with
any error as a whole, and ``defaults_failed``: whether the daemon-wide
settings could be read."""

from __future__ import annotations

from tests.config.fakes import errors_of, load_text, service_text

F = "/etc/superd/test.conf"
ECHO = {"type": "INTERNAL", "socket_type": "stream", "wait": "no"}


def _defaults(value: str) -> str:
    return f"defaults\n{{\n    all_or_nothing = {value}\n}}\n" + service_text("echo", **ECHO)


def test_no_by_default_and_as_written() -> None:
    """Absent, the daemon isolates broken services; ``yes`` asks for all or nothing."""
    assert load_text(service_text("echo", **ECHO)).all_or_nothing is False
    assert load_text(_defaults("no")).all_or_nothing is False
    assert load_text(_defaults("yes")).all_or_nothing is True


def test_bad_values_and_places_are_errors_with_file_and_line() -> None:
    """Anything but yes/no, several values, or a service block: an error
    naming the file, line and attribute."""
    assert errors_of(_defaults("maybe")) == [
        f"{F}:3: defaults: all_or_nothing: expected yes or no, got 'maybe'"]
    assert errors_of(_defaults("yes no")) == [
        f"{F}:3: defaults: all_or_nothing: expected 1 value, got 2"]
    assert errors_of(service_text("echo", **ECHO, all_or_nothing="yes")) == [
        f"{F}:6: service echo: all_or_nothing: only allowed in the defaults section"]


def test_a_typo_of_it_is_an_error_with_a_suggestion() -> None:
    """``all_or_nothin`` is not silently ignored: the setting meant is missing."""
    text = "defaults\n{\n    all_or_nothin = yes\n}\n" + service_text("echo", **ECHO)
    (error,) = errors_of(text)
    assert "did you mean 'all_or_nothing'?" in error


def test_defaults_failed_only_when_the_defaults_may_be_wrong() -> None:
    """A bad line in the defaults fails every service and says so; a bad
    service block does not."""
    broken_defaults = load_text(_defaults("maybe"), isolate=True)
    assert broken_defaults.defaults_failed and broken_defaults.services == ()
    assert broken_defaults.all_or_nothing is False  # the built-in value, not the file's
    broken_service = load_text(_defaults("yes") + service_text("daytime", wait="perhaps"),
                               isolate=True)
    assert not broken_service.defaults_failed
    assert [s.id for s in broken_service.services] == ["echo"]
    assert broken_service.all_or_nothing is True
