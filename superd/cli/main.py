"""
The ``superd`` console script: ``superd check``, ``superd version`` and the
dispatch points for the operational subcommands.

``superd check -c PATH [--strict] [--json]`` validates a configuration without
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
from typing import IO, Optional, Sequence

import superd
from superd.config.errors import Problem
from superd.config.report import error_summary, report_findings
from superd.core.exits import EX_CONFIG

__all__ = ["main"]

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="superd", description="superd: an xinetd replacement built on Twisted. "
        "Run the daemon in the foreground with: superd run -c PATH")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check = commands.add_parser("check", help="validate a configuration without binding")
    check.add_argument("-c", "--config", required=True, metavar="PATH",
                       help="configuration directory or file (e.g. /etc/xinetd.conf)")
    check.add_argument("--strict", action="store_true",
                       help="unknown attributes are errors, not warnings")
    check.add_argument("--json", action="store_true", help="print JSON instead of a table")
    check.add_argument("--explain", action="store_true",
                       help="say what superd does differently from xinetd (as migrate)")
    check.add_argument("--hosts-allow", default="/etc/hosts.allow", metavar="FILE",
                       help="hosts.allow to check too (default /etc/hosts.allow)")
    check.add_argument("--hosts-deny", default="/etc/hosts.deny", metavar="FILE",
                       help="hosts.deny to check too (default /etc/hosts.deny)")
    migrate = commands.add_parser("migrate", help="what changes, per service, from xinetd")
    migrate.add_argument("-c", "--config", default="/etc/xinetd.conf", metavar="PATH",
                         help="the xinetd tree (default /etc/xinetd.conf)")
    migrate.add_argument("--strict", action="store_true",
                         help="unknown attributes are errors, not warnings")
    migrate.add_argument("--json", action="store_true", help="print JSON instead of text")
    commands.add_parser("version", help="print superd's version")
    status = commands.add_parser("status", help="show what the running daemon is doing")
    status.add_argument("--json", action="store_true", help="print JSON instead of tables")
    status.add_argument("--state-dir", metavar="DIR", default=None,
                        help="the daemon's --state-dir (default as the daemon's)")
    reload = commands.add_parser("reload", help="reload the running daemon and wait")
    reload.add_argument("--state-dir", metavar="DIR", default=None,
                        help="the daemon's --state-dir (default as the daemon's)")
    # Parsed by superd.cli.run (main() hands it the arguments); listed here for --help.
    commands.add_parser("run", add_help=False,
                        help="start the daemon in the foreground (superd run --help)")
    bans = commands.add_parser("bans", help="list or lift sensor bans", add_help=False)
    bans.add_argument("rest", nargs=argparse.REMAINDER)
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
    args = _parser().parse_args(arguments)
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
        from superd.cli.bans import main as bans_main

        return int(bans_main(args.rest))
    if args.command == "status":
        from superd.cli.status import run_status

        return run_status(args.state_dir, args.json, out, err)
    if args.command == "reload":
        from superd.cli.control import run_reload
        from superd.core.paths import state_dir_or_default

        return run_reload(state_dir_or_default(args.state_dir), out, err)
    raise AssertionError(f"unhandled command {args.command!r}")  # argparse allows no other

