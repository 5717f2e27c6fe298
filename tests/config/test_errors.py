"""Tests for ``superd.config.errors``: finding text and bounded error lists."""

from __future__ import annotations

from superd.config.errors import MAX_FILE_ERRORS, Omitted, Problem, capped, error_count
from superd.config.load import load_configuration
from tests.config.fakes import fake_environment


def test_problem_text_leaves_out_what_does_not_apply_and_escapes_bytes() -> None:
    """FILE:LINE: service NAME: ATTRIBUTE: problem, with odd bytes shown escaped."""
    assert [str(p) for p in (
        Problem("f", 3, "echo", "wait", "bad"), Problem("f", 0, None, None, "gone"),
        Problem("f", 1, None, "cps", "x", "defaults"), Problem("f\udcff", 1, "a\x1b", None, "m"),
    )] == ["f:3: service echo: wait: bad", "f: gone", "f:1: defaults: cps: x",
           "f\\xff:1: service a\\x1b: m"]


def test_at_most_twenty_errors_per_file_then_a_count() -> None:
    """Each file keeps its first 20 errors, then one line counts the rest."""
    problems = [Problem("a", n, None, None, "bad") for n in range(1, 31)] + [
        Problem("b", 1, None, None, "bad")]
    kept = capped(problems)
    assert len(kept) == MAX_FILE_ERRORS + 2
    assert str(kept[MAX_FILE_ERRORS]) == "a: 10 more errors in this file not shown"
    assert isinstance(kept[MAX_FILE_ERRORS], Omitted)
    assert kept[-1] == problems[-1]
    assert error_count(kept) == 31


def test_a_garbage_text_file_gives_twenty_errors_and_a_count() -> None:
    """A large file of junk lines (17,544 lines once) is bounded output."""
    junk = "".join(f"this is line {n} of a file that is not configuration\n"
                   for n in range(1, 2001))
    config = load_configuration("/g", environment=fake_environment({"/g": junk}),
                                isolate=True)
    assert len(config.problems) == 21
    assert str(config.problems[-1]) == "/g: 1980 more errors in this file not shown"
    assert config.error_count == 2000


def test_a_binary_file_is_one_error() -> None:
    """Escape codes and bytes that are not UTF-8 everywhere: one 'not a text file'."""
    binary = bytes(range(1, 256)) * 20
    config = load_configuration("/b", environment=fake_environment({"/b": binary}),
                                isolate=True)
    assert [str(p) for p in config.problems] == [
        "/b:1: not a text file (invalid UTF-8 or control characters in 41 places)"]
