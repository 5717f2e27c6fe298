"""Tests for ``superd.config.text``: is it text, how to show it, what was meant."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from superd.config.text import (
    closest,
    edit_distance,
    not_text_reason,
    printable,
    service_headers,
)


def test_edit_distance_counts_a_swap_of_neighbours_as_one() -> None:
    """bnid/bind, wiat/wait and only_form/only_from are each one slip."""
    assert [edit_distance(a, b) for a, b in (("bnid", "bind"), ("wiat", "wait"),
                                             ("only_form", "only_from"), ("", "abc"),
                                             ("kitten", "sitting"))] == [1, 1, 1, 3, 3]


@given(st.text(max_size=12), st.text(max_size=12))
def test_edit_distance_is_symmetric_and_bounded(a: str, b: str) -> None:
    """A distance: symmetric, zero only for equal words, at most the longer length."""
    assert edit_distance(a, b) == edit_distance(b, a)
    assert (edit_distance(a, b) == 0) == (a == b)
    assert edit_distance(a, b) <= max(len(a), len(b))


def test_closest_allows_one_slip_in_short_words_and_two_in_longer_ones() -> None:
    """Case is ignored; far words suggest nothing."""
    known = ("bind", "wait", "only_from", "server_args", "id")
    assert [closest(w, known) for w in ("bnid", "Wait", "ONLY_FROM", "onlyfrom", "srver_arg",
                                        "zzz", "mdns", "frobnicate")] == [
        "bind", "wait", "only_from", "only_from", "server_args", None, None, None]


def test_printable_escapes_bytes_that_are_not_utf8_and_control_characters() -> None:
    """Terminals and logs get \\xNN for both; text and tabs stay."""
    assert printable("caf\udce9\tok \x1b[31m\x00") == "caf\\xe9\tok \\x1b[31m\\x00"
    assert printable("plain é") == "plain é"


def test_a_nul_byte_anywhere_is_not_text() -> None:
    """Even in a comment: a NUL never appears in a configuration file."""
    assert not_text_reason("service a\n# \x00\n") == (2, "not a text file (it holds NUL bytes)")


def test_a_few_bad_bytes_are_a_line_problem_many_are_not_text() -> None:
    """Up to three places with bad bytes outside comments is text (each line is
    reported by the parser); four is not; comments do not count."""
    three = "a\udce9\nb\udce9\nc\x1b\n# \udce9\udce9\udce9 \x1b\x1b\n"
    assert not_text_reason(three) is None
    assert not_text_reason(three + "d\udcff\n") == (
        1, "not a text file (invalid UTF-8 or control characters in 4 places)")


def test_service_headers_of_a_file_that_is_not_text() -> None:
    """The service names a refused file would have defined, escaped."""
    assert service_headers("\x00\nservice echo\n  service b\udcff {\nservices x\n") == [
        (2, "echo"), (3, "b\\xff")]
