"""
``superd bans``: list, add and lift the sensor bans of the running daemon.

    superd bans [--state-dir DIR] [--offline] list [--json]
    superd bans [--state-dir DIR] [--offline] add ADDRESS [--minutes N | --forever]
    superd bans [--state-dir DIR] [--offline] remove ADDRESS

The command asks the daemon of the state directory over its control socket:
the daemon applies the change to the bans in force, stores it, shares it with
the fleet (the Redis ban store) and logs it, and a new ban ends the
address's open sessions.  ``list`` shows what the daemon enforces, with the
field names of ``superd status``.  When no daemon answers, nothing changes
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
from superd.core.exits import EX_IOERR, EX_NOINPUT, EX_UNAVAILABLE, EX_USAGE
from superd.core.paths import state_dir_or_default
from superd.core.session import parse_host

__all__ = ["main"]

Row = Dict[str, Any]


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--state-dir", metavar="DIR", default=argparse.SUPPRESS,
                        help="superd's state directory (as given to superd)")
    common.add_argument("--offline", action="store_true", default=argparse.SUPPRESS,
                        help="edit the ban database directly instead of asking the"
                             " running daemon")
    parser = argparse.ArgumentParser(prog="superd bans", parents=[common],
                                     description="Manage SENSOR bans.")
    commands = parser.add_subparsers(dest="action", required=True)
    listing = commands.add_parser("list", parents=[common],
                                  help="show the bans in force")
    listing.add_argument("--json", action="store_true", help="print JSON")
    add = commands.add_parser("add", parents=[common], help="ban an address")
    add.add_argument("address")
    length = add.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=int, metavar="N")
    length.add_argument("--forever", action="store_true")
    remove = commands.add_parser("remove", parents=[common],
                                 help="lift the ban of an address")
    remove.add_argument("address")
    return parser


def _state_dir(args: argparse.Namespace) -> str:
    return state_dir_or_default(getattr(args, "state_dir", None) or None)


def _stamp(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _until_text(until: Optional[float], now: float) -> str:
    if until is None:
        return "forever"
    return f"{_stamp(until)} ({int(until - now)} s left)"


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
    until = ban.get("until")
    if until is None:
        return "already banned forever" if minutes is not None else "banned forever"
    if minutes is not None and abs(until - (now + 60.0 * minutes)) < 60.0:
        return f"banned for {minutes} minutes"
    return f"banned until {_until_text(until, now)}"


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
    reply = _ask(state_dir, "ban", host=host, minutes=_minutes(args))
    ended = int(reply.get("ended") or 0)
    text = _added_text(reply.get("ban") or {}, args.minutes, now)
    if ended:
        text += f"; {ended} open session{'s' if ended != 1 else ''} ended"
    out.write(f"{host}: {text}\n")
    return 0


def _minutes(args: argparse.Namespace) -> Optional[int]:
    if args.minutes is not None and args.minutes <= 0:
        raise ValueError("--minutes must be positive")
    minutes: Optional[int] = args.minutes
    return minutes


# -- the database directly (--offline) ----------------------------------------

def _row_of(ban: Ban) -> Row:
    """A stored ban with the field names of ``superd status``."""
    return {"host": ban.host, "until": ban.expires, "added": ban.added,
            "service_id": ban.service, "hits": ban.hits}


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
    minutes = _minutes(args)
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
    """Run ``superd bans ...``; returns the exit status."""
    out, err = out or sys.stdout, err or sys.stderr
    try:
        args = _parser().parse_args(list(sys.argv[2:] if argv is None else argv))
    except SystemExit as e:
        return int(e.code or 0) and EX_USAGE
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
