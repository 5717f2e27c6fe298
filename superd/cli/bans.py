"""
``superd bans``: list, add and lift the sensor bans of the running daemon.

    superd bans [--state-dir DIR] [--offline] list [--json]
    superd bans [--state-dir DIR] [--offline] add ADDRESS [--minutes N | --forever]
    superd bans [--state-dir DIR] [--offline] remove ADDRESS

The command asks the daemon of the state directory over its control socket:
the daemon applies the change to the bans in force, stores it, shares it with
the fleet (the Redis ban store) and logs it, and a new ban ends the
address's open sessions.  ``list`` shows what the daemon enforces, with the
field names of ``superd status`` (times in RFC 3339, UTC).  When no daemon answers, nothing changes
and the exit status is 69 (EX_UNAVAILABLE).

``--offline`` edits the ban database in the state directory instead (superd
is stopped, or will be started on it later); a daemon running on it picks the
change up within about a second.  A state directory that does not exist is
an error: it is never created.

``add`` without ``--minutes`` bans until the ban is removed; a ban that
already lasts longer is kept.  Addresses are canonicalised as everywhere in
superd (``::ffff:a.b.c.d`` is ``a.b.c.d``).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time
from collections.abc import Sequence
from typing import IO, Any, Dict, List, Optional

from superd.access.banstore import Ban, BanStore, db_path
from superd.cli.control import ControlError, request
from superd.cli.parsing import Parser, parse
from superd.core.exits import EX_IOERR, EX_NOINPUT, EX_UNAVAILABLE, EX_USAGE
from superd.core.paths import state_dir_or_default
from superd.core.session import parse_host
from superd.core.timestamps import parse_rfc3339, rfc3339

__all__ = ["DESCRIPTION", "configure", "main", "run"]

Row = Dict[str, Any]


DESCRIPTION = ("List, add and lift the bans of the running daemon (SENSOR bans and"
               " bans made by hand), or of its ban database with --offline.")


def _add_common(parser: argparse.ArgumentParser) -> None:
    """--state-dir and --offline, on the command and on each action so that
    they are accepted before and after it: with SUPPRESS, the one given is
    not overwritten by the other's absence."""
    parser.add_argument("--state-dir", metavar="DIR", default=argparse.SUPPRESS,
                        help="the daemon's state directory (default: as the daemon's:"
                             " /var/lib/superd as root, else $XDG_STATE_HOME/superd or"
                             " ~/.local/state/superd)")
    parser.add_argument("--offline", action="store_true", default=argparse.SUPPRESS,
                        help="edit the ban database in the state directory instead of"
                             " asking the running daemon")


def _minutes_value(text: str) -> int:
    try:
        minutes = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if minutes <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {minutes}")
    return minutes


def configure(parser: argparse.ArgumentParser) -> None:
    """The options and actions of ``superd bans`` on ``parser`` (the
    subcommand's parser, or a parser of its own for ``main``)."""
    _add_common(parser)
    common = argparse.ArgumentParser(add_help=False)
    _add_common(common)
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION",
                                    help="what to do (ACTION --help for more)")
    listing = actions.add_parser("list", parents=[common], help="show the bans in force",
                                 description="Show the bans in force: address, end (RFC"
                                             " 3339, or forever), who banned it, hits.")
    listing.add_argument("--json", action="store_true",
                         help="print a JSON list (host, until, added, service_id, hits)")
    add = actions.add_parser("add", parents=[common], help="ban an address",
                             description="Ban an address; its open sessions end.")
    add.add_argument("address", help="the IPv4 or IPv6 address to ban")
    length = add.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=_minutes_value, metavar="N",
                        help="ban for N minutes (a longer ban already in force is kept)")
    length.add_argument("--forever", action="store_true",
                        help="ban until the ban is removed (the default)")
    remove = actions.add_parser("remove", parents=[common], help="lift the ban of an address",
                                description="Lift the ban of an address.")
    remove.add_argument("address", help="the IPv4 or IPv6 address to unban")


def _state_dir(args: argparse.Namespace) -> str:
    return state_dir_or_default(getattr(args, "state_dir", None) or None)


def _until_text(until: Optional[str], now: float) -> str:
    if until is None:
        return "forever"
    seconds = parse_rfc3339(until)
    return f"{rfc3339(seconds, whole=True)} ({int(seconds - now)} s left)"


def _print_rows(rows: List[Row], as_json: bool, now: float, out: IO[str]) -> None:
    if as_json:
        out.write(json.dumps(rows) + "\n")
        return
    for row in rows:
        out.write(f"{row['host']}\t{_until_text(row['until'], now)}\t"
                  f"service={row['service_id'] or '-'}\thits={row['hits']}\n")


# -- through the daemon --------------------------------------------------------

class _Refused(Exception):
    """The daemon answered, and did not do it; the message says why."""


def _ask(state_dir: str, command: str, **fields: Any) -> Dict[str, Any]:
    reply = request(state_dir, command, **fields)
    if not reply.get("ok"):
        raise _Refused(str(reply.get("error") or "the daemon refused"))
    return reply


def _added_text(ban: Row, minutes: Optional[int], now: float) -> str:
    text = ban.get("until")
    if text is None:
        return "already banned forever" if minutes is not None else "banned forever"
    until = parse_rfc3339(text)
    if minutes is not None and abs(until - (now + 60.0 * minutes)) < 60.0:
        return f"banned for {minutes} minutes"
    return f"banned until {_until_text(text, now)}"


def _online(args: argparse.Namespace, state_dir: str, now: float, out: IO[str]) -> int:
    if args.action == "list":
        rows = _ask(state_dir, "bans").get("bans")
        if not isinstance(rows, list):
            raise _Refused("the daemon sent no ban list")
        _print_rows(rows, args.json, now, out)
        return 0
    host = parse_host(args.address)
    if args.action == "remove":
        lifted = _ask(state_dir, "unban", host=host).get("lifted")
        out.write(f"{host}: {'ban lifted' if lifted else 'was not banned'}\n")
        return 0
    reply = _ask(state_dir, "ban", host=host, minutes=args.minutes)
    ended = int(reply.get("ended") or 0)
    text = _added_text(reply.get("ban") or {}, args.minutes, now)
    if ended:
        text += f"; {ended} open session{'s' if ended != 1 else ''} ended"
    out.write(f"{host}: {text}\n")
    return 0


# -- the database directly (--offline) ----------------------------------------

def _row_of(ban: Ban) -> Row:
    """A stored ban with the field names of ``superd status``."""
    from superd.daemon.bancontrol import ban_row  # the daemon's side: only offline

    return ban_row(ban)


def _offline(args: argparse.Namespace, store: BanStore, now: float, out: IO[str]) -> int:
    if args.action == "list":
        active = [b for b in store.all() if b.expires is None or b.expires > now]
        _print_rows([_row_of(b) for b in active], args.json, now, out)
        return 0
    host = parse_host(args.address)
    if args.action == "remove":
        found = store.remove(host)
        out.write(f"{host}: {'ban lifted' if found else 'was not banned'}\n")
        return 0
    minutes: Optional[int] = args.minutes
    expires = None if minutes is None else now + 60.0 * minutes
    old = store.get(host)
    store.put(Ban(host, expires, now if old is None else old.added,
                  "superd bans", 1 if old is None else old.hits))
    out.write(f"{host}: banned {'forever' if minutes is None else f'for {minutes} minutes'}\n")
    return 0


def _run_offline(args: argparse.Namespace, state_dir: str, out: IO[str],
                 err: IO[str]) -> int:
    if not os.path.isdir(state_dir):
        err.write(f"superd bans: no state directory {state_dir} (is --state-dir right?);"
                  " nothing changed\n")
        return EX_NOINPUT
    path = db_path(state_dir)
    try:
        store = BanStore(path)
    except (OSError, sqlite3.Error) as e:
        err.write(f"superd bans: cannot open {path}: {e}\n")
        return EX_IOERR
    try:
        return _offline(args, store, time.time(), out)
    except sqlite3.Error as e:
        err.write(f"superd bans: {path}: {e}\n")
        return EX_IOERR
    finally:
        store.close()


def main(argv: Sequence[str] | None = None, out: IO[str] | None = None,
         err: IO[str] | None = None) -> int:
    """Run ``superd bans ...`` (``argv`` after ``bans``); returns the exit status."""
    out, err = out or sys.stdout, err or sys.stderr
    parser = Parser(prog="superd bans", description=DESCRIPTION)
    configure(parser)
    args = parse(parser, list(sys.argv[2:] if argv is None else argv), out, err)
    if isinstance(args, int):
        return args
    return run(args, out, err)


def run(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    """Do what the parsed ``superd bans`` command line says; the exit status."""
    state_dir = _state_dir(args)
    try:
        if getattr(args, "offline", False):
            return _run_offline(args, state_dir, out, err)
        return _online(args, state_dir, time.time(), out)
    except ValueError as e:
        err.write(f"superd bans: {e}\n")
        return EX_USAGE
    except ControlError as e:
        err.write(f"superd bans: {e}\n"
                  "superd bans: nothing changed; --offline edits the ban database"
                  " directly\n")
        return EX_UNAVAILABLE
    except _Refused as e:
        err.write(f"superd bans: the daemon refused: {e}\n")
        return EX_UNAVAILABLE
