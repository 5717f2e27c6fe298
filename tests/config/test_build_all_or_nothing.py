"""``all_or_nothing`` beyond its value (tests/config/test_build_switches.py),
and ``defaults_failed``: whether the daemon-wide settings could be read."""

from __future__ import annotations

from tests.config.fakes import errors_of, load_text, service_text

ECHO = {"type": "INTERNAL", "socket_type": "stream", "wait": "no"}


def _with_defaults(line: str, *services: str) -> str:
    return f"defaults\n{{\n    {line}\n}}\n" + service_text("echo", **ECHO) + "".join(services)


def test_a_typo_of_it_is_an_error_with_a_suggestion() -> None:
    """``all_or_nothin`` is not silently ignored: the setting meant is missing."""
    (error,) = errors_of(_with_defaults("all_or_nothin = yes"))
    assert "did you mean 'all_or_nothing'?" in error


def test_defaults_failed_only_when_the_defaults_may_be_wrong() -> None:
    """A bad line in the defaults fails every service and says so; a bad
    service block does not."""
    broken_defaults = load_text(_with_defaults("all_or_nothing = maybe"), isolate=True)
    assert broken_defaults.defaults_failed and broken_defaults.services == ()
    assert broken_defaults.all_or_nothing is False  # the built-in value, not the file's
    broken_service = load_text(_with_defaults("all_or_nothing = yes",
                                              service_text("daytime", wait="perhaps")),
                               isolate=True)
    assert not broken_service.defaults_failed
    assert [s.id for s in broken_service.services] == ["echo"]
    assert broken_service.all_or_nothing is True
