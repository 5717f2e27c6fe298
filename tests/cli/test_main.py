"""Tests for superd.cli.main: `superd check`, `superd version` and the dispatch points."""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import superd
from superd.cli.main import _parser, main
from superd.config.environment import LoadEnvironment
from superd.core.exits import EX_USAGE
from superd.core.paths import DEFAULT_CONFIG
from tests.config.fakes import SERVICES, fake_environment

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


def test_status_without_a_daemon(tmp_path: Path) -> None:
    """status names the control socket it could not reach and exits non-zero."""
    status, _, err = run("status", "--state-dir", str(tmp_path))
    assert status != 0
    assert str(tmp_path) in err


def test_bans_dispatches_to_the_bans_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """bans parses its own options and actions and returns what superd.cli.bans.run does."""
    seen: list[tuple[str, bool, str]] = []

    def bans_run(args: argparse.Namespace, out: object, err: object) -> int:
        seen.append((args.action, args.json, args.state_dir))
        return 5

    monkeypatch.setattr("superd.cli.main.run_bans", bans_run)
    status, _, _ = run("bans", "--state-dir", "/s", "list", "--json")
    assert (status, seen) == (5, [("list", True, "/s")])


# -- one command line ----------------------------------------------------------

def subcommands(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """``parser`` and every parser under it (argparse keeps them in ``choices``)."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                yield from subcommands(child)


def all_parsers() -> list[argparse.ArgumentParser]:
    return list(subcommands(_parser()))


def test_every_option_and_argument_has_help() -> None:
    """No option or argument of any superd command is without help text."""
    missing = [(p.prog, a.dest) for p in all_parsers() for a in p._actions
               if not a.help or a.help == argparse.SUPPRESS]
    assert missing == []
    assert len(all_parsers()) >= 11  # superd, run, check, migrate, status, reload, bans (4)


@pytest.mark.parametrize("prog", ["superd", "superd check", "superd migrate", "superd status",
                                  "superd reload", "superd bans", "superd bans list",
                                  "superd bans add", "superd bans remove", "superd version",
                                  "superd run"])
def test_help_everywhere(prog: str) -> None:
    """Every command and subcommand takes --help: usage on stdout, exit 0."""
    status, out, err = run(*prog.split()[1:], "--help")
    assert (status, err) == (0, "")
    assert out.lower().startswith(f"usage: {prog}")


@pytest.mark.parametrize("argv", [["--version"], ["version"]])
def test_version(argv: list[str]) -> None:
    """superd --version, like superd version, prints superd's version and exits 0."""
    assert run(*argv) == (0, f"superd {superd.__version__}\n", "")


@pytest.mark.parametrize(("argv", "message"), [
    ([], "the following arguments are required: COMMAND"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["check", "--nonsense"], "unrecognized arguments: --nonsense"),
    (["check", "-c"], "argument -c/--config: expected one argument"),
    (["status", "extra"], "unrecognized arguments: extra"),
    (["bans", "add"], "the following arguments are required: address"),
])
def test_usage_errors_exit_64(argv: list[str], message: str) -> None:
    """Every usage error exits 64 (EX_USAGE), not argparse's 2, saying what
    is wrong and where help is, on stderr only."""
    status, out, err = run(*argv)
    assert (status, out) == (EX_USAGE, "")
    assert message in err and "see 'superd" in err and "--help'" in err


@pytest.mark.parametrize("command", ["check", "migrate"])
def test_configuration_defaults_to_etc_superd(command: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """check and migrate read /etc/superd without -c, as superd run does."""
    read: list[str] = []

    def load(path: str, **options: object) -> object:
        read.append(path)
        raise SystemExit(0)

    monkeypatch.setattr("superd.config.load.load_configuration", load)
    with pytest.raises(SystemExit):
        run(command)
    assert read == [DEFAULT_CONFIG]
    assert f"(default {DEFAULT_CONFIG})" in " ".join(run(command, "--help")[1].split())


def test_migrate_help_names_the_xinetd_tree() -> None:
    """migrate's help says how to read the system's xinetd tree."""
    assert "superd migrate -c /etc/xinetd.conf" in " ".join(run("migrate", "--help")[1].split())


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


# -- issue 14: a stale Debian-like tree, verbatim ------------------------------------

STALE = Path(__file__).parent / "fixtures" / "stale"


@pytest.fixture
def stale_tree(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """The stale tree as /etc/xinetd.conf and /etc/xinetd.d on an in-memory machine;
    returns the hosts-file options (absent files)."""
    files = {f"/etc/{p.relative_to(STALE)}": p.read_text()
             for p in sorted(STALE.rglob("*")) if p.is_file() and p.suffix not in (".out", ".err")}
    services = {**SERVICES, ("rsync", "tcp"): 873, ("tftp", "udp"): 69,
                ("cvspserver", "tcp"): 2401, ("amanda", "udp"): 10080,
                ("amandaidx", "tcp"): 10082, ("amidxtape", "tcp"): 10083}
    env = fake_environment(files, services=services,
                           executables=("/usr/bin/rsync", "/usr/sbin/in.tftpd", "/usr/bin/cvs"))
    monkeypatch.setattr(LoadEnvironment, "system", classmethod(lambda cls: env))
    return ["--hosts-allow", str(tmp_path / "allow"), "--hosts-deny", str(tmp_path / "deny")]


def test_check_on_a_stale_tree_verbatim(stale_tree: list[str]) -> None:
    """What would run, what failed and what is disabled on stdout; every error, then
    every warning and note, then a count on stderr; exit 78 (check.out, check.err)."""
    status, out, err = run("check", "-c", "/etc/xinetd.conf", *stale_tree)
    assert status == 78
    assert out == (STALE / "check.out").read_text()
    assert err == (STALE / "check.err").read_text()


def test_check_json_on_a_stale_tree_is_one_document_with_every_error(
        stale_tree: list[str]) -> None:
    """--json prints one document on stdout, errors included, nothing on stderr; errors,
    warnings and notes have the same fields."""
    status, out, err = run("check", "-c", "/etc/xinetd.conf", "--json", *stale_tree)
    document = json.loads(out)
    assert (status, err, document["ok"]) == (78, "", False)
    assert [s["id"] for s in document["services"]] == ["daytime-stream", "tftp"]
    assert [f["id"] for f in document["failed"]] == [
        "amanda", "amandaidx", "amidxtape", "cvspserver", "rsync", "tangd"]
    assert document["error_count"] == len(document["errors"]) == 7
    fields = {"file", "line", "service_id", "section", "attribute", "message", "text"}
    for finding in (*document["errors"], *document["warnings"], *document["notes"]):
        assert set(finding) == fields
    assert document["errors"][4] == {
        "file": "/etc/xinetd.d/rsync", "line": 11, "service_id": "rsync", "section": None,
        "attribute": "only_form", "message": "unknown attribute; did you mean 'only_from'?",
        "text": "/etc/xinetd.d/rsync:11: service rsync: only_form: unknown attribute; "
                "did you mean 'only_from'?"}
    assert [d["id"] for d in document["disabled"]] == [
        "daytime-dgram", "echo-stream", "echo-dgram"]


def test_migrate_json_on_a_stale_tree_is_one_document(stale_tree: list[str]) -> None:
    """migrate --json too: the differences of what would run, and every error."""
    status, out, err = run("migrate", "-c", "/etc/xinetd.conf", "--json")
    document = json.loads(out)
    assert (status, err, document["ok"], document["error_count"]) == (78, "", False, 7)
    assert [s["id"] for s in document["services"]] == ["daytime-stream", "tftp"]
    assert len(document["failed"]) == 6 and len(document["warnings"]) == 1
