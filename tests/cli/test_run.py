"""Tests for superd.cli.run: ``superd run``'s command line and its exec."""

from __future__ import annotations

import io
from pathlib import Path
from typing import List, NoReturn

import pytest

import superd
from superd.cli.main import main as cli_main
from superd.cli.run import JSON_LOGGER, TEXT_LOGGER, main, twistd_command
from superd.core.exits import EX_OSERR, EX_USAGE
from superd.core.paths import DEFAULT_CONFIG


class Exec(Exception):
    """Raised by the fake execv with the argv it was given."""


def fake_execv(path: str, argv: List[str]) -> NoReturn:
    raise Exec(path, argv)


def run(*argv: str, executable: str = "/opt/superd/bin/python3") -> tuple[List[str], str]:
    """The argv ``superd run ARGV`` would exec, and what it printed."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(Exec) as caught:
        main(list(argv), out, err, execv=fake_execv, executable=executable)
    path, command = caught.value.args
    assert path == command[0]
    return command, out.getvalue() + err.getvalue()


def test_twistd_command_foreground_without_pid_file() -> None:
    """The same interpreter runs the twistd script beside it, in the
    foreground, without a pid file, with superd's text log and -c defaulted."""
    assert twistd_command(["--grace", "1"], json_log=False, has_config=False,
                          executable="/opt/superd/bin/python3",
                          twistd="/opt/superd/bin/twistd") == [
        "/opt/superd/bin/python3", "/opt/superd/bin/twistd", "--nodaemon", "--pidfile=",
        "--logger", TEXT_LOGGER, "superd", "-c", DEFAULT_CONFIG, "--grace", "1"]


def test_twistd_command_json_and_no_script() -> None:
    """--json-log selects the JSON logger; without a twistd script the
    interpreter calls twistd's entry point."""
    command = twistd_command(["-c", "/c"], json_log=True, has_config=True,
                             executable="/usr/bin/python3", twistd=None)
    assert command[:3] == ["/usr/bin/python3", "-c",
                           "from twisted.scripts.twistd import run; run()"]
    assert command[3:] == ["--nodaemon", "--pidfile=", "--logger", JSON_LOGGER,
                           "superd", "-c", "/c"]


def test_main_execs_with_the_given_options(tmp_path: Path) -> None:
    """Options pass through in order; --json-log (or an abbreviation) becomes
    --logger; the twistd script beside the interpreter is used when present."""
    python = tmp_path / "python3"
    (tmp_path / "twistd").write_text("")
    command, printed = run("-c", "/etc/x", "--json", "--syslog-ident", "xinetd",
                           executable=str(python))
    assert command == [str(python), str(tmp_path / "twistd"), "--nodaemon", "--pidfile=",
                       "--logger", JSON_LOGGER, "superd", "-c", "/etc/x",
                       "--syslog-ident", "xinetd"]
    assert printed == ""


def test_main_defaults_config() -> None:
    """Without -c the daemon reads /etc/superd; without --json-log it logs text."""
    command, _ = run("--grace", "2")
    assert command[-4:] == ["-c", DEFAULT_CONFIG, "--grace", "2"]
    assert command[command.index("--logger") + 1] == TEXT_LOGGER


@pytest.mark.parametrize("argv", [["--bogus"], ["--grace", "-1"], ["-c"], ["extra"],
                                  ["--syslog-ident", "a b"]])
def test_usage_errors_exit_64(argv: List[str]) -> None:
    """A bad command line exits 64 before anything is executed."""
    out, err = io.StringIO(), io.StringIO()
    assert main(argv, out, err, execv=fake_execv) == EX_USAGE
    assert err.getvalue().startswith("superd run: ")
    assert err.getvalue().endswith("superd run: see 'superd run --help'\n")


def test_help_lists_run_and_daemon_options() -> None:
    """--help (and -h) print run's synopsis and every daemon option; exit 0."""
    for flag in ("--help", "-h"):
        out = io.StringIO()
        assert main([flag], out, io.StringIO(), execv=fake_execv) == 0
        text = out.getvalue()
        assert text.startswith("Usage: superd run [--json-log] [options]")
        assert "--json-log" in text and "--state-dir=" in text
        assert f"(default {DEFAULT_CONFIG})" in " ".join(text.split())


def test_exec_failure_is_reported() -> None:
    """An interpreter that cannot be executed: a message and EX_OSERR."""
    def failing(path: str, argv: List[str]) -> NoReturn:
        raise FileNotFoundError(2, "No such file or directory")

    err = io.StringIO()
    assert main([], io.StringIO(), err, execv=failing, executable="/nowhere/python") == EX_OSERR
    assert err.getvalue() == "superd run: cannot run /nowhere/python: No such file or directory\n"


def test_cli_hands_run_its_arguments() -> None:
    """``superd run ...`` reaches superd.cli.run with every argument, dashes included
    (argparse would take them for its own)."""
    out, err = io.StringIO(), io.StringIO()
    assert cli_main(["run", "--help"], out, err) == 0
    assert out.getvalue().startswith("Usage: superd run")
    assert cli_main(["run", "--nonsense"], out, err) == EX_USAGE


def test_version_is_printed_on_out() -> None:
    """``superd run --version`` prints the version where run prints, exit 0."""
    out = io.StringIO()
    assert main(["--version"], out, io.StringIO(), execv=fake_execv) == 0
    assert out.getvalue() == f"superd {superd.__version__}\n"
