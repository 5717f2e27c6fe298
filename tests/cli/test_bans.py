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
from superd.core.paths import control_path


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
    row = {"host": "10.0.0.3", "until": until, "added": 1.0,
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
    row = {"host": "10.0.0.4", "until": None, "added": 1.0,
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
    assert set(rows[0]) == {"host", "until", "added", "service_id", "hits"}
    assert rows[0]["until"] > time.time() + 290 and rows[1]["until"] is None
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
