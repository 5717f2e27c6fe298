"""Tests for ``superd.access.hostscheck``: superd check's look at hosts.allow/deny."""

from __future__ import annotations

from pathlib import Path

from superd.access.hostscheck import check_hosts_files


def test_broken_lines_are_problems_with_file_and_line(tmp_path: Path) -> None:
    """Every broken line of either file is FILE:LINE: problem; options warn."""
    allow, deny = tmp_path / "hosts.allow", tmp_path / "hosts.deny"
    allow.write_text("# comment\nsshd 10.0.0.1\nALL: LOCAL\n")
    deny.write_text("ALL: 1.2.3.4/99\nsshd: ALL: twist /bin/echo\n")
    found = check_hosts_files(str(allow), str(deny))
    assert [str(p) for p in found.problems] == [
        f"{allow}:2: missing ':' between daemon list and client list",
        f"{deny}:1: bad network '1.2.3.4/99': '1.2.3.4/99' does not appear to be an IPv4 "
        "or IPv6 network",
    ]
    assert [str(w) for w in found.warnings] == [
        f"{deny}:2: option 'twist' is not run; the rule denies"]


def test_missing_files_are_fine_unreadable_ones_are_not(tmp_path: Path) -> None:
    """An absent file is an empty one (as libwrap); one that cannot be read is a problem."""
    assert check_hosts_files(str(tmp_path / "a"), str(tmp_path / "d")).problems == ()
    (tmp_path / "dir").mkdir()
    (problem,) = check_hosts_files(str(tmp_path / "dir"), str(tmp_path / "d")).problems
    assert str(problem) == f"{tmp_path / 'dir'}: cannot read the file: Is a directory"
