"""Tests for superd.cli.main: `superd check`, `superd version` and the dispatch points."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

import superd
from superd.cli.main import main

ECHO = """\
service echo
{
	type        = INTERNAL UNLISTED
	socket_type = stream
	wait        = no
	port        = 10007
	bind        = 127.0.0.1 ::1
}
"""


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), out, err)
    return status, out.getvalue(), err.getvalue()


def test_check_prints_a_table(tmp_path: Path) -> None:
    """check on a valid configuration exits 0 with one row per service."""
    (tmp_path / "echo").write_text(ECHO)
    status, out, err = run("check", "-c", str(tmp_path))
    assert (status, err) == (0, "")
    row = next(line for line in out.splitlines() if line.startswith("echo "))
    assert "127.0.0.1:10007" in row and "builtin" in row


def test_check_json(tmp_path: Path) -> None:
    """check --json prints one JSON document with the services."""
    (tmp_path / "echo").write_text(ECHO)
    status, out, _ = run("check", "-c", str(tmp_path), "--json")
    assert status == 0
    document = json.loads(out)
    assert [s["id"] for s in document["services"]] == ["echo"]


def test_check_errors_exit_78_with_file_and_line(tmp_path: Path) -> None:
    """Every problem is printed as FILE:LINE: service: attribute: problem; exit 78."""
    (tmp_path / "echo").write_text(ECHO.replace("wait        = no", "wait = sometimes"))
    status, out, err = run("check", "-c", str(tmp_path))
    assert status == 78
    assert err == (f"{tmp_path / 'echo'}:5: service echo: wait: expected yes or no, "
                   "got 'sometimes'\n"
                   "superd: 1 configuration error; 1 service(s) failed, 0 would run\n")
    assert out.splitlines()[-2:] == ["failed (not started):",
                                     f"  echo  echo  {tmp_path / 'echo'}:1  1 error"]


def test_check_strict_refuses_unknown_attribute(tmp_path: Path) -> None:
    """An unknown attribute is a warning, and an error with --strict."""
    (tmp_path / "echo").write_text(ECHO.replace("\tport", "\tmdns        = yes\n\tport"))
    status, _, err = run("check", "-c", str(tmp_path))
    assert status == 0 and err.startswith("warning: ") and "mdns" in err
    status, _, err = run("check", "-c", str(tmp_path), "--strict")
    assert status == 78 and err.startswith(str(tmp_path)) and "mdns" in err


def test_check_warns_about_trailing_zero_wildcards(tmp_path: Path) -> None:
    """only_from = 10.0.0.0 is flagged (it means 10/8)."""
    (tmp_path / "echo").write_text(ECHO.replace("\tport", "\tonly_from   = 10.0.0.0\n\tport"))
    status, _, err = run("check", "-c", str(tmp_path))
    assert status == 0
    assert "10.0.0.0/8" in err


def test_check_missing_path(tmp_path: Path) -> None:
    """A configuration path that does not exist is refused with exit 78."""
    status, _, err = run("check", "-c", str(tmp_path / "absent"))
    assert status == 78
    assert "absent" in err


def test_version() -> None:
    """version prints superd's version."""
    assert run("version") == (0, f"superd {superd.__version__}\n", "")


def test_status_without_a_daemon(tmp_path: Path) -> None:
    """status names the control socket it could not reach and exits non-zero."""
    status, _, err = run("status", "--state-dir", str(tmp_path))
    assert status != 0
    assert str(tmp_path) in err


def test_bans_dispatches_to_access_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    """bans passes its arguments to superd.cli.bans.main and returns its status."""
    seen: list[list[str]] = []
    monkeypatch.setattr("superd.cli.bans.main", lambda argv: seen.append(argv) or 5)
    status, _, _ = run("bans", "list", "--json")
    assert (status, seen) == (5, [["list", "--json"]])


def test_check_validates_hosts_files(tmp_path: Path) -> None:
    """check reports broken hosts.allow/deny lines as FILE:LINE: problem (exit 78);
    an absent file is fine, and their warnings are errors under --strict."""
    (tmp_path / "echo").write_text(ECHO)
    allow, deny = tmp_path / "allow", tmp_path / "deny"
    hosts = ("--hosts-allow", str(allow), "--hosts-deny", str(deny))
    assert run("check", "-c", str(tmp_path / "echo"), *hosts)[::2] == (0, "")
    allow.write_text("in.telnetd 10.0.0.1\n")
    deny.write_text("sshd: ALL: twist /bin/echo\n")
    status, out, err = run("check", "-c", str(tmp_path / "echo"), *hosts)
    assert status == 78 and "echo " in out
    assert err.splitlines() == [
        f"{allow}:1: missing ':' between daemon list and client list",
        f"warning: {deny}:1: option 'twist' is not run; the rule denies",
        "superd: 1 configuration error; 0 service(s) failed, 1 would run",
    ]
    allow.write_text("")
    status, _, err = run("check", "-c", str(tmp_path / "echo"), *hosts, "--strict")
    assert status == 78
    assert err.splitlines()[0] == f"{deny}:1: option 'twist' is not run; the rule denies"
