"""Tests for ``superd.cli.bans``: ``superd bans list|add|remove``, through
the daemon's control socket or, with ``--offline``, the database."""

from __future__ import annotations

import io
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from superd.access.banstore import BanStore, db_path
from superd.cli import bans as banscli
from superd.cli.main import main as superd_main
from superd.core.paths import control_path
from superd.core.timestamps import parse_rfc3339, rfc3339


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = banscli.main(list(argv), out, err)
    return status, out.getvalue(), err.getvalue()


class FakeDaemon:
    """A control socket that answers each request with the next reply and
    records what it was asked."""

    def __init__(self, state_dir: str, *replies: dict[str, Any]) -> None:
        self.requests: list[dict[str, Any]] = []
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(control_path(state_dir))
        self._server.listen(len(replies))
        self._thread = threading.Thread(target=self._serve, args=(replies,), daemon=True)
        self._thread.start()

    def _serve(self, replies: tuple[dict[str, Any], ...]) -> None:
        with self._server:
            for reply in replies:
                conn, _ = self._server.accept()
                with conn:
                    self.requests.append(json.loads(conn.makefile().readline()))
                    conn.sendall(json.dumps(reply).encode() + b"\n")

    def join(self) -> None:
        self._thread.join(5)
        assert not self._thread.is_alive()


def test_add_remove_and_list_ask_the_daemon(tmp_path: Path) -> None:
    """add, remove and list are requests to the daemon; what it answers is
    printed, and the database is not touched."""
    state = str(tmp_path)
    until = time.time() + 300
    row = {"host": "10.0.0.3", "until": rfc3339(until), "added": "1970-01-01T00:00:01.000000Z",
           "service_id": "superd bans", "hits": 1}
    daemon = FakeDaemon(state, {"ok": True, "ban": row, "ended": 2},
                        {"ok": True, "host": "10.0.0.3", "lifted": True},
                        {"ok": True, "bans": [row]})
    assert run("--state-dir", state, "add", "::ffff:10.0.0.3", "--minutes", "5") == (
        0, "10.0.0.3: banned for 5 minutes; 2 open sessions ended\n", "")
    assert run("remove", "10.0.0.3", "--state-dir", state)[1] == "10.0.0.3: ban lifted\n"
    status, out, _ = run("--state-dir", state, "list", "--json")
    daemon.join()
    assert (status, json.loads(out)) == (0, [row])
    assert daemon.requests == [
        {"command": "ban", "host": "10.0.0.3", "minutes": 5},
        {"command": "unban", "host": "10.0.0.3"},
        {"command": "bans"}]
    assert not os.path.exists(db_path(state))


def test_forever_and_the_text_listing(tmp_path: Path) -> None:
    """add without --minutes asks for a ban without end; list prints one line per ban."""
    state = str(tmp_path)
    row = {"host": "10.0.0.4", "until": None, "added": "1970-01-01T00:00:01.000000Z",
           "service_id": "trap", "hits": 3}
    daemon = FakeDaemon(state, {"ok": True, "ban": row, "ended": 0},
                        {"ok": True, "bans": [row]})
    assert run("--state-dir", state, "add", "10.0.0.4")[1] == "10.0.0.4: banned forever\n"
    assert run("--state-dir", state, "list")[1] == (
        "10.0.0.4\tforever\tservice=trap\thits=3\n")
    daemon.join()
    assert daemon.requests[0] == {"command": "ban", "host": "10.0.0.4", "minutes": None}


def test_a_refusal_by_the_daemon_fails(tmp_path: Path) -> None:
    """A daemon that answers but does not do it (an older daemon without the
    command, a full ban list) makes the command fail with its reason."""
    state = str(tmp_path)
    daemon = FakeDaemon(state, {"ok": False, "error": "unknown command (known: status)"})
    assert run("--state-dir", state, "add", "10.0.0.4") == (
        69, "", "superd bans: the daemon refused: unknown command (known: status)\n")
    daemon.join()


@pytest.mark.parametrize("argv", [("list",), ("add", "10.0.0.9"), ("remove", "10.0.0.9")])
def test_without_a_daemon_nothing_changes(tmp_path: Path, argv: tuple[str, ...]) -> None:
    """No daemon on the state directory: exit 69 saying so, no database
    written, and the way to edit it offline named."""
    state = tmp_path / "state"
    state.mkdir()
    status, out, err = run("--state-dir", str(state), *argv)
    assert (status, out) == (69, "")
    assert "is superd running with this --state-dir?" in err
    assert "nothing changed; --offline edits the ban database directly" in err
    assert os.listdir(state) == []


def test_a_mistyped_state_directory_is_never_created(tmp_path: Path) -> None:
    """A state directory that does not exist is an error, online or offline,
    and is not created."""
    typo = tmp_path / "superd-typo"
    assert run("--state-dir", str(typo), "add", "10.0.0.9")[0] == 69
    status, _, err = run("--state-dir", str(typo), "--offline", "add", "10.0.0.9")
    assert status == 66
    assert err == (f"superd bans: no state directory {typo} (is --state-dir right?);"
                   " nothing changed\n")
    assert not typo.exists()


def test_offline_add_list_remove(tmp_path: Path) -> None:
    """--offline edits the database: bans added are listed (with the field
    names of superd status) and can be removed."""
    state = str(tmp_path)
    assert run("--offline", "--state-dir", state, "add", "::ffff:10.0.0.3",
               "--minutes", "5")[0] == 0
    assert run("add", "10.0.0.4", "--state-dir", state, "--offline")[1] == (
        "10.0.0.4: banned forever\n")
    status, out, _ = run("--state-dir", state, "--offline", "list", "--json")
    rows = json.loads(out)
    assert status == 0 and [r["host"] for r in rows] == ["10.0.0.3", "10.0.0.4"]
    assert set(rows[0]) == {"host", "until", "added", "service_id", "hits", "remote"}
    assert parse_rfc3339(rows[0]["until"]) > time.time() + 290 and rows[1]["until"] is None
    assert rows[0]["until"].endswith("Z") and rows[0]["added"].endswith("Z")
    status, out, _ = run("--state-dir", state, "--offline", "list")
    assert out.splitlines()[1].startswith("10.0.0.4\tforever\t")
    assert run("--state-dir", state, "--offline", "remove", "10.0.0.3")[1] == (
        "10.0.0.3: ban lifted\n")
    assert run("--state-dir", state, "--offline", "remove", "10.0.0.3")[1] == (
        "10.0.0.3: was not banned\n")
    store = BanStore(db_path(state))
    assert [b.host for b in store.all()] == ["10.0.0.4"]


def test_bad_input(tmp_path: Path) -> None:
    """A bad address or option is a usage error (64) with a message, before
    anything is asked or opened."""
    status, _, err = run("--state-dir", str(tmp_path), "add", "not-an-ip")
    assert (status, err) == (64, "superd bans: not an IP address: 'not-an-ip'\n")
    assert run("--state-dir", str(tmp_path), "add", "1.2.3.4", "--minutes", "0")[0] == 64
    assert run("--state-dir", str(tmp_path), "--offline", "add", "1.2.3.4",
               "--minutes", "-1")[0] == 64
    assert run("--state-dir", str(tmp_path), "frobnicate")[0] == 64


def test_network_bans(tmp_path: Path) -> None:
    """An IPv6 network (what a sensor with v6_source_prefix bans) can be
    added and lifted, written any way that names the same network; an IPv4
    network cannot (IPv4 sources are banned by address)."""
    state = str(tmp_path)
    assert run("--state-dir", state, "--offline", "add", "2001:DB8:1:2:0:0:0:5/64")[1] == (
        "2001:db8:1:2::/64: banned forever\n")
    assert run("--state-dir", state, "--offline", "remove", "2001:db8:1:2::/64")[1] == (
        "2001:db8:1:2::/64: ban lifted\n")
    status, _, err = run("--state-dir", state, "add", "10.0.0.0/8")
    assert (status, err) == (64, "superd bans: not an IPv6 network: '10.0.0.0/8' (IPv4"
                                 " sources are banned by address)\n")
    assert run("--state-dir", state, "add", "2001:db8::/999")[0] == 64


def test_unopenable_database(tmp_path: Path) -> None:
    """--offline on a state directory whose database cannot be opened gives
    exit status 74."""
    (tmp_path / "bans.sqlite3").mkdir()
    status, _, err = run("--state-dir", str(tmp_path), "--offline", "list")
    assert status == 74 and "cannot open" in err


def superd(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = superd_main(list(argv), out, err)
    return status, out.getvalue(), err.getvalue()


def test_options_before_the_action_through_superd(tmp_path: Path) -> None:
    """``superd bans --state-dir DIR --offline add ADDRESS``: the command's
    options are taken before the action as well as after it."""
    state = str(tmp_path)
    assert superd("bans", "--state-dir", state, "--offline", "add", "10.0.0.5") == (
        0, "10.0.0.5: banned forever\n", "")
    status, out, _ = superd("bans", "--offline", "list", "--state-dir", state, "--json")
    assert status == 0 and [r["host"] for r in json.loads(out)] == ["10.0.0.5"]


def test_text_listing_shows_the_end_in_rfc3339(tmp_path: Path) -> None:
    """A ban with an end is listed with it in RFC 3339 (UTC, whole seconds)
    and the seconds left."""
    state = str(tmp_path)
    assert run("--state-dir", state, "--offline", "add", "10.0.0.6", "--minutes", "10")[0] == 0
    line = run("--state-dir", state, "--offline", "list")[1]
    host, until, service, hits = line.rstrip("\n").split("\t")
    stamp, left = until.split(" ", 1)
    assert (host, service, hits) == ("10.0.0.6", "service=superd bans", "hits=1")
    assert stamp.endswith("Z") and abs(parse_rfc3339(stamp) - (time.time() + 600)) < 5
    assert left.startswith("(") and left.endswith(" s left)")


@pytest.mark.parametrize("argv", [("--help",), ("add", "--help"), ("list", "--help"),
                                  ("remove", "--help")])
def test_help_everywhere(argv: tuple[str, ...]) -> None:
    """``superd bans --help`` and each action's --help print help and exit 0."""
    status, out, err = superd("bans", *argv)
    assert (status, err) == (0, "")
    assert out.startswith("usage: superd bans")
    assert "--state-dir DIR" in out and "--offline" in out


def test_add_help_explains_every_option() -> None:
    """--minutes, --forever and the address have help text."""
    out = superd("bans", "add", "--help")[1]
    assert "ban for N minutes" in out and "until the ban is removed" in out
    assert "the IPv4 or IPv6 address to ban" in out


@pytest.mark.parametrize(("argv", "message"), [
    (("add", "10.0.0.1", "--minutes", "0"), "argument --minutes: must be positive, not 0"),
    (("add", "10.0.0.1", "--minutes", "ten"), "argument --minutes: not a whole number: 'ten'"),
    (("add", "10.0.0.1", "--minutes", "1", "--forever"), "not allowed with argument"),
    (("add",), "the following arguments are required: address"),
    (("frobnicate",), "invalid choice: 'frobnicate'"),
    ((), "the following arguments are required: ACTION"),
])
def test_usage_errors_exit_64_saying_what(argv: tuple[str, ...], message: str) -> None:
    """Every usage error exits 64 with argparse's message and a pointer to --help."""
    for command in (run, lambda *a: superd("bans", *a)):
        status, out, err = command(*argv)
        assert (status, out) == (64, "")
        assert message in err and "see 'superd bans" in err
