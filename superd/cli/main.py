"""
The ``superd`` console script: ``superd check``, ``superd version`` and the
dispatch points for the operational subcommands.

Every subcommand takes ``--help``; ``superd --version`` prints the version;
a usage error exits 64 (``superd.cli.parsing``).  Every subcommand that
reads a configuration (``run``, ``check``, ``migrate``) reads ``-c PATH``,
by default ``/etc/superd`` (``superd.core.paths.DEFAULT_CONFIG``).

``superd check [-c PATH] [--strict] [--json]`` validates a configuration without
binding anything: a table of the services the daemon would run (and of the
failed and disabled ones) on stdout; every error as ``FILE:LINE: service
NAME: ATTRIBUTE: problem``, then every warning and note, on stderr; exit
status 78 if there is any error.  ``--json`` prints one JSON document with
all of it on stdout, errors included.  It checks hosts.allow and hosts.deny
too (``--hosts-allow/--hosts-deny``).
The daemon itself runs under twistd (``superd.daemon.tap``), which reports problems
through the same functions so both print the same text.
"""

from __future__ import annotations

import argparse
import sys
from typing import IO, Any, Optional, Sequence

import superd
from superd.cli.bans import DESCRIPTION as bans_description
from superd.cli.bans import configure as configure_bans
from superd.cli.bans import run as run_bans
from superd.cli.parsing import Parser, add_version, parse
from superd.config.errors import Problem
from superd.config.report import error_summary, report_findings
from superd.core.exits import EX_CONFIG
from superd.core.paths import DEFAULT_CONFIG

__all__ = ["main"]

_STATE_DIR_HELP = ("the daemon's --state-dir (default: as the daemon's: /var/lib/superd"
                   " as root, else $XDG_STATE_HOME/superd or ~/.local/state/superd)")


def _reading_options(parser: argparse.ArgumentParser, what: str, instead_of: str) -> None:
    """-c, --strict and --json of a command that reads a configuration."""
    parser.add_argument("-c", "--config", default=DEFAULT_CONFIG, metavar="PATH",
                        help=f"{what} (default {DEFAULT_CONFIG})")
    parser.add_argument("--strict", action="store_true",
                        help="unknown attributes are errors, not warnings")
    parser.add_argument("--json", action="store_true",
                        help=f"print one JSON document instead of {instead_of}")


def _add_check(commands: Any) -> None:
    check = commands.add_parser(
        "check", help="validate a configuration without binding",
        description="Validate a configuration without binding anything: the services"
                    " that would run, then every error (FILE:LINE), warning and note."
                    " Exit status 78 if there is an error.")
    _reading_options(check, "configuration directory or file to check", "a table")
    check.add_argument("--explain", action="store_true",
                       help="say what superd does differently from xinetd (as migrate)")
    check.add_argument("--hosts-allow", default="/etc/hosts.allow", metavar="FILE",
                       help="hosts.allow to check too (default /etc/hosts.allow)")
    check.add_argument("--hosts-deny", default="/etc/hosts.deny", metavar="FILE",
                       help="hosts.deny to check too (default /etc/hosts.deny)")


def _add_migrate(commands: Any) -> None:
    migrate = commands.add_parser(
        "migrate", help="what changes, per service, from xinetd",
        description="Read an xinetd configuration and say, service by service, what"
                    " superd does differently. For the system's xinetd tree give it"
                    " explicitly: superd migrate -c /etc/xinetd.conf.")
    _reading_options(migrate, "the configuration to read: an xinetd tree such as"
                              " /etc/xinetd.conf, or a superd directory", "text")


def _add_operations(commands: Any) -> None:
    status = commands.add_parser(
        "status", help="show what the running daemon is doing",
        description="Ask the running daemon (over its control socket) for its version,"
                    " pid, configuration, start time, services, children and bans.")
    status.add_argument("--json", action="store_true", help="print JSON instead of tables")
    status.add_argument("--state-dir", metavar="DIR", default=None, help=_STATE_DIR_HELP)
    reload = commands.add_parser(
        "reload", help="reload the running daemon and wait",
        description="Reload the running daemon's configuration and wait for the"
                    " outcome; a refused configuration keeps the running one (exit 78).")
    reload.add_argument("--state-dir", metavar="DIR", default=None, help=_STATE_DIR_HELP)
    bans = commands.add_parser("bans", help="list, add or lift bans",
                               description=bans_description)
    configure_bans(bans)


def _parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="superd", description="superd: an xinetd replacement built on Twisted. "
        "Run the daemon in the foreground with: superd run [-c PATH]")
    add_version(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     help="what to do (superd COMMAND --help for more)")
    # Parsed by superd.cli.run (main() hands it the arguments); listed here for --help.
    commands.add_parser("run", add_help=False,
                        help="start the daemon in the foreground (superd run --help)")
    _add_check(commands)
    _add_migrate(commands)
    _add_operations(commands)
    commands.add_parser("version", help="print superd's version",
                        description="Print superd's version (as superd --version).")
    return parser


def _check(path: str, strict: bool, as_json: bool, out: IO[str], err: IO[str],
           hosts: tuple[str, str] = ("/etc/hosts.allow", "/etc/hosts.deny")) -> int:
    from superd.access.hostscheck import check_hosts_files
    from superd.config.check import render_json, render_table
    from superd.config.load import load_configuration

    hosts_check = check_hosts_files(*hosts)
    hosts_problems = list(hosts_check.problems)
    hosts_warnings = list(hosts_check.warnings)
    if strict:
        hosts_problems += [Problem(w.location.file, w.location.line, None, None, w.message)
                           for w in hosts_warnings]
        hosts_warnings = []
    # Isolated: the table shows what the daemon would run, beside every error.
    config = load_configuration(path, strict=strict, isolate=True)
    problems = [*config.problems, *hosts_problems]
    if as_json:
        out.write(render_json(config, hosts_problems, hosts_warnings))
    else:
        out.write(render_table(config))
        report_findings(problems, [*hosts_warnings, *config.warnings], config.notes, err)
        if problems:
            print(f"superd: {error_summary(problems)}; {len(config.failed)} service(s) failed,"
                  f" {len(config.services)} would run", file=err)
    out.flush()
    return EX_CONFIG if problems else 0


def _safe_streams(*streams: IO[str]) -> None:
    """Never fail writing a file name that is not UTF-8: escape what cannot be encoded."""
    for stream in streams:
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")


def main(argv: Optional[Sequence[str]] = None,
         out: Optional[IO[str]] = None, err: Optional[IO[str]] = None) -> int:
    """Run one subcommand; returns the exit status (the console script exits with it)."""
    out = out or sys.stdout
    err = err or sys.stderr
    _safe_streams(out, err)
    arguments = sys.argv[1:] if argv is None else list(argv)
    if arguments[:1] == ["run"]:
        from superd.cli.run import main as run

        return run(arguments[1:], out, err)
    args = parse(_parser(), arguments, out, err)
    if isinstance(args, int):
        return args
    if args.command == "migrate" or (args.command == "check" and args.explain):
        from superd.cli.migrate import run_migrate

        return run_migrate(args.config, args.json, args.strict, out, err)
    if args.command == "check":
        return _check(args.config, args.strict, args.json, out, err,
                      (args.hosts_allow, args.hosts_deny))
    if args.command == "version":
        print(f"superd {superd.__version__}", file=out)
        return 0
    if args.command == "bans":
        return run_bans(args, out, err)
    if args.command == "status":
        from superd.cli.status import run_status

        return run_status(args.state_dir, args.json, out, err)
    if args.command == "reload":
        from superd.cli.control import run_reload
        from superd.core.paths import state_dir_or_default

        return run_reload(state_dir_or_default(args.state_dir), out, err)
    raise AssertionError(f"unhandled command {args.command!r}")  # argparse allows no other

