"""
``superd bans``: list, add and lift sensor bans, while superd runs or not.

    superd bans [--state-dir DIR] list [--json]
    superd bans [--state-dir DIR] add ADDRESS [--minutes N | --forever]
    superd bans [--state-dir DIR] remove ADDRESS

The command edits the SQLite database in the state directory; a running
superd notices the change within about a second (it polls
``PRAGMA data_version``).  ``add`` without ``--minutes`` bans until the ban
is removed.  Addresses are canonicalised as everywhere in superd
(``::ffff:a.b.c.d`` is ``a.b.c.d``); an IPv6 network (``2001:db8:1:2::/64``,
as a sensor with ``v6_source_prefix`` bans) may be given instead.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sqlite3
import sys
import time
from collections.abc import Sequence
from typing import IO

from superd.access.banstore import Ban, BanStore, db_path
from superd.access.prefixes import network_key
from superd.core.exits import EX_IOERR, EX_USAGE
from superd.core.paths import state_dir_or_default
from superd.core.session import canonical_host

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--state-dir", metavar="DIR", default=argparse.SUPPRESS,
                        help="superd's state directory (as given to superd)")
    parser = argparse.ArgumentParser(prog="superd bans", parents=[common],
                                     description="Manage SENSOR bans.")
    commands = parser.add_subparsers(dest="action", required=True)
    listing = commands.add_parser("list", parents=[common],
                                  help="show active bans")
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


def _address(text: str) -> str:
    if "/" in text:
        return network_key(text)
    try:
        ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        raise ValueError(f"not an IP address: {text!r}") from None
    return canonical_host(text)


def _expiry_text(ban: Ban, now: float) -> str:
    if ban.expires is None:
        return "forever"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ban.expires))
    return f"{stamp} ({int(ban.expires - now)} s left)"


def _list(store: BanStore, as_json: bool, now: float, out: IO[str]) -> int:
    active = [b for b in store.all() if b.expires is None or b.expires > now]
    if as_json:
        rows = [{"host": b.host, "expires": b.expires, "added": b.added,
                 "service": b.service, "hits": b.hits} for b in active]
        out.write(json.dumps(rows) + "\n")
        return 0
    for ban in active:
        out.write(f"{ban.host}\t{_expiry_text(ban, now)}\t"
                  f"service={ban.service or '-'}\thits={ban.hits}\n")
    return 0


def _run(args: argparse.Namespace, store: BanStore, out: IO[str]) -> int:
    now = time.time()
    if args.action == "list":
        return _list(store, args.json, now, out)
    host = _address(args.address)
    if args.action == "remove":
        found = store.remove(host)
        out.write(f"{host}: {'ban lifted' if found else 'was not banned'}\n")
        return 0
    if args.minutes is not None and args.minutes <= 0:
        raise ValueError("--minutes must be positive")
    expires = None if args.minutes is None else now + 60.0 * args.minutes
    old = store.get(host)
    store.put(Ban(host, expires, now if old is None else old.added,
                  "superd bans", 1 if old is None else old.hits))
    out.write(f"{host}: banned {'forever' if expires is None else f'for {args.minutes} minutes'}\n")
    return 0


def main(argv: Sequence[str] | None = None, out: IO[str] | None = None,
         err: IO[str] | None = None) -> int:
    """Run ``superd bans ...``; returns the exit status."""
    out, err = out or sys.stdout, err or sys.stderr
    try:
        args = _parser().parse_args(list(sys.argv[2:] if argv is None else argv))
    except SystemExit as e:
        return int(e.code or 0) and EX_USAGE
    path = db_path(_state_dir(args))
    try:
        store = BanStore(path)
    except (OSError, sqlite3.Error) as e:
        err.write(f"superd bans: cannot open {path}: {e}\n")
        return EX_IOERR
    try:
        return _run(args, store, out)
    except ValueError as e:
        err.write(f"superd bans: {e}\n")
        return EX_USAGE
    except sqlite3.Error as e:
        err.write(f"superd bans: {path}: {e}\n")
        return EX_IOERR
    finally:
        store.close()
