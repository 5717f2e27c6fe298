"""Tests for ``superd.cli.bans``: ``superd bans list|add|remove``."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

from superd.access.banstore import BanStore, db_path
from superd.cli import bans as banscli


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = banscli.main(list(argv), out, err)
    return status, out.getvalue(), err.getvalue()


def test_add_list_remove(tmp_path: Path) -> None:
    """Bans added from the command line are listed and can be removed."""
    state = str(tmp_path)
    assert run("--state-dir", state, "add", "::ffff:10.0.0.3", "--minutes", "5")[0] == 0
    assert run("add", "10.0.0.4", "--state-dir", state)[1] == "10.0.0.4: banned forever\n"
    status, out, _ = run("--state-dir", state, "list", "--json")
    rows = json.loads(out)
    assert status == 0 and [r["host"] for r in rows] == ["10.0.0.3", "10.0.0.4"]
    assert rows[0]["expires"] > time.time() + 290 and rows[1]["expires"] is None
    status, out, _ = run("--state-dir", state, "list")
    assert out.splitlines()[1].startswith("10.0.0.4\tforever\t")
    assert run("--state-dir", state, "remove", "10.0.0.3")[1] == "10.0.0.3: ban lifted\n"
    assert run("--state-dir", state, "remove", "10.0.0.3")[1] == (
        "10.0.0.3: was not banned\n")
    store = BanStore(db_path(state))
    assert [b.host for b in store.all()] == ["10.0.0.4"]


def test_bad_input(tmp_path: Path) -> None:
    """A bad address or option is a usage error (64) with a message."""
    status, _, err = run("--state-dir", str(tmp_path), "add", "not-an-ip")
    assert (status, err) == (64, "superd bans: not an IP address: 'not-an-ip'\n")
    assert run("--state-dir", str(tmp_path), "add", "1.2.3.4", "--minutes", "0")[0] == 64
    assert run("--state-dir", str(tmp_path), "frobnicate")[0] == 64


def test_network_bans(tmp_path: Path) -> None:
    """An IPv6 network (what a sensor with v6_source_prefix bans) can be
    added and lifted, written any way that names the same network; an IPv4
    network cannot (IPv4 sources are banned by address)."""
    state = str(tmp_path)
    assert run("--state-dir", state, "add", "2001:DB8:1:2:0:0:0:5/64")[1] == (
        "2001:db8:1:2::/64: banned forever\n")
    assert run("--state-dir", state, "remove", "2001:db8:1:2::/64")[1] == (
        "2001:db8:1:2::/64: ban lifted\n")
    status, _, err = run("--state-dir", state, "add", "10.0.0.0/8")
    assert (status, err) == (64, "superd bans: not an IPv6 network: '10.0.0.0/8' (IPv4"
                                 " sources are banned by address)\n")
    assert run("--state-dir", state, "add", "2001:db8::/999")[0] == 64


def test_unopenable_database(tmp_path: Path) -> None:
    """A state directory that cannot hold the database gives exit status 74."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    status, _, err = run("--state-dir", str(blocker), "list")
    assert status == 74 and "cannot open" in err
