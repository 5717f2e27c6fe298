"""
Bans and reloads end the sessions they forbid, on the real daemon:
``superd bans add`` reaches the running daemon (or says it did not), and
the banned source's open sessions -- an in-process discard connection, a
spawned ``/bin/cat`` -- are ended at once, logged ``EXIT ... banned``;
SIGHUP ends the sessions the new address lists or ``instances`` forbid,
logged ``EXIT ... reconfigured``, and no other.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from superd.cli.control import request
from tests.access.clients import block, fetch, hosts_args
from tests.integration.conftest import StartSuperd
from tests.integration.external import pid_alive, service_block, wait_until
from tests.integration.harness import Superd
from tests.integration.reloading import reload_and_wait

ConfDir = Callable[..., Path]

BANNED, OTHER = "127.0.0.5", "127.0.0.2"


def superd_bans(state_dir: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The real ``superd bans ARGS --state-dir DIR`` command, in its own process."""
    return subprocess.run(
        [sys.executable, "-c", "import sys; from superd.cli.main import main; sys.exit(main())",
         "bans", *args, "--state-dir", state_dir],
        capture_output=True, text=True, timeout=30, check=False)


def config(conf_dir: ConfDir, extra: str = "") -> Path:
    return conf_dir(discard=block("discard", "discard", extra=extra),
                    daytime=block("daytime", "daytime", extra=extra),
                    cat=service_block("cat", "/bin/cat", extra=extra))


def held(superd: Superd, service_id: str, source: str) -> socket.socket:
    """A connection from ``source`` that superd is serving (for cat: its child runs)."""
    sock = socket.create_connection(("127.0.0.1", superd.port(service_id)), timeout=10,
                                    source_address=(source, 0))
    if service_id == "cat":
        assert alive(sock)
    return sock


def alive(sock: socket.socket) -> bool:
    """An exchange with cat works."""
    sock.sendall(b"ping\n")
    return sock.recv(64) == b"ping\n"


def cut_off(sock: socket.socket) -> bool:
    """The server end closed (FIN or RST) -- within the socket's timeout."""
    try:
        return sock.recv(64) == b""
    except ConnectionResetError:
        return True


def sessions(superd: Superd) -> dict[str, int]:
    """Live sessions per service, from the daemon's status."""
    status = request(superd.state_dir, "status")["status"]
    return {s["id"]: s["sessions"] for s in status["services"]}


def exits(superd: Superd, reason: str, count: int, after: int = 0) -> list[dict[str, Any]]:
    """The first ``count`` EXIT events with ``reason`` (waiting for them)."""
    def found() -> list[dict[str, Any]]:
        return [e for e in superd.events()[after:]
                if e.get("event") == "exit" and e.get("reason") == reason]
    superd.wait_for_event(lambda e: len(found()) >= count, after=after)
    return found()


def test_bans_add_reaches_the_daemon_and_ends_the_sources_sessions(
        superd_factory: StartSuperd, conf_dir: ConfDir, tmp_path: Path) -> None:
    """``superd bans add`` applies the ban in the running daemon at once: the
    source is refused from then on, its held discard connection and its
    /bin/cat server are ended (EXIT ... banned, the child by SIGTERM), another
    source's sessions go on, and the ban is logged as the operator's."""
    superd = superd_factory(config(conf_dir), *hosts_args(tmp_path))
    discard, cat = held(superd, "discard", BANNED), held(superd, "cat", BANNED)
    other_discard, other_cat = held(superd, "discard", OTHER), held(superd, "cat", OTHER)
    assert wait_until(lambda: len(superd.children()) == 2)
    (victim,) = [e["pid"] for e in superd.events()
                 if e.get("event") == "start" and e.get("service_id") == "cat"
                 and e.get("peer_host") == BANNED]
    result = superd_bans(superd.state_dir, "add", BANNED)
    assert result.returncode == 0, result.stderr
    assert cut_off(discard) and cut_off(cat)
    assert result.stdout == f"{BANNED}: banned forever; 2 open sessions ended\n"
    ended = {e["service_id"]: e for e in exits(superd, "banned", 2)}
    assert set(ended) == {"discard", "cat"}
    assert (ended["cat"]["pid"], ended["cat"]["signal"]) == (victim, 15)
    assert wait_until(lambda: not pid_alive(victim))
    assert fetch(BANNED, superd.port("daytime")) == b""
    assert alive(other_cat)
    assert sessions(superd) == {"discard": 1, "daytime": 0, "cat": 1}
    (ban,) = [e for e in superd.events() if e.get("event") == "ban"]
    assert (ban["peer_host"], ban["source"], ban["action"]) == (BANNED, "operator", "add")
    listed = superd_bans(superd.state_dir, "list", "--json")
    assert '"host": "127.0.0.5"' in listed.stdout and listed.returncode == 0
    lifted = superd_bans(superd.state_dir, "remove", BANNED)
    assert lifted.stdout == f"{BANNED}: ban lifted\n"
    assert fetch(BANNED, superd.port("daytime"))  # served again, at once
    for sock in (discard, cat, other_discard, other_cat):
        sock.close()


def test_a_sensor_hit_ends_the_sources_sessions(
        superd_factory: StartSuperd, conf_dir: ConfDir, tmp_path: Path) -> None:
    """A source that touches a SENSOR loses the sessions it already had on
    the other services, as well as being refused from then on."""
    trap = block("daytime", "trap", extra="\tflags = SENSOR\n\tdeny_time = 10\n")
    superd = superd_factory(conf_dir(trap=trap, cat=service_block("cat", "/bin/cat")),
                            *hosts_args(tmp_path))
    cat, other = held(superd, "cat", BANNED), held(superd, "cat", OTHER)
    assert fetch(BANNED, superd.port("trap")) == b""
    assert cut_off(cat)
    (ended,) = exits(superd, "banned", 1)
    assert (ended["service_id"], ended["signal"]) == ("cat", 15)
    assert alive(other)
    cat.close()
    other.close()


def test_ban_ends_sessions_no_keeps_xinetds_behaviour(
        superd_factory: StartSuperd, conf_dir: ConfDir, tmp_path: Path) -> None:
    """With ``ban_ends_sessions = no`` a ban refuses new connections and
    leaves the open ones alone."""
    defaults = "defaults\n{\n\tban_ends_sessions = no\n}\n"
    superd = superd_factory(conf_dir(defaults=defaults,
                                     cat=service_block("cat", "/bin/cat")),
                            *hosts_args(tmp_path))
    cat = held(superd, "cat", BANNED)
    result = superd_bans(superd.state_dir, "add", BANNED, "--minutes", "5")
    assert (result.returncode, result.stdout) == (0, f"{BANNED}: banned for 5 minutes\n")
    assert alive(cat)
    assert refused(superd, "cat", BANNED)
    cat.close()


def refused(superd: Superd, service_id: str, source: str) -> bool:
    """True when a new connection from ``source`` is closed without being served."""
    with socket.create_connection(("127.0.0.1", superd.port(service_id)), timeout=10,
                                  source_address=(source, 0)) as sock:
        try:
            sock.sendall(b"ping\n")
        except (BrokenPipeError, ConnectionResetError):
            return True
        return cut_off(sock)


def test_bans_without_a_daemon_change_nothing_unless_offline(
        superd_factory: StartSuperd, conf_dir: ConfDir, tmp_path: Path) -> None:
    """No daemon: ``superd bans add`` fails (69) and writes nothing; with
    --offline it writes the database, which the daemon started later
    enforces.  A mistyped state directory is never created."""
    state = tmp_path / "state"
    state.mkdir()
    result = superd_bans(str(state), "add", BANNED)
    assert result.returncode == 69
    assert "is superd running with this --state-dir?" in result.stderr
    assert os.listdir(state) == []
    typo = tmp_path / "superd-typo"
    for args, status in ((("add", BANNED), 69), (("list",), 69),
                         (("add", BANNED, "--offline"), 66), (("list", "--offline"), 66)):
        assert superd_bans(str(typo), *args).returncode == status, args
    assert not typo.exists()
    offline = superd_bans(str(state), "add", BANNED, "--offline")
    assert (offline.returncode, offline.stdout) == (0, f"{BANNED}: banned forever\n")
    superd = superd_factory(config(conf_dir), *hosts_args(tmp_path), state_dir=str(state))
    assert fetch(BANNED, superd.port("daytime")) == b""
    assert fetch(OTHER, superd.port("daytime"))


def test_sighup_ends_the_sessions_a_new_no_access_refuses(
        superd_factory: StartSuperd, conf_dir: ConfDir, tmp_path: Path) -> None:
    """Adding a source to no_access and reloading ends its live sessions --
    in-process and spawned -- with EXIT ... reconfigured; other sources'
    sessions survive."""
    conf = config(conf_dir)
    superd = superd_factory(conf, *hosts_args(tmp_path))
    discard, cat = held(superd, "discard", BANNED), held(superd, "cat", BANNED)
    other_discard, other_cat = held(superd, "discard", OTHER), held(superd, "cat", OTHER)
    before = len(superd.events())
    rules = f"no_access = {BANNED}"
    (conf / "discard").write_text(block("discard", "discard", extra=f"\t{rules}\n"))
    (conf / "cat").write_text(service_block("cat", "/bin/cat", extra=rules))
    assert reload_and_wait(superd)["ok"]
    assert cut_off(discard) and cut_off(cat)
    ended = exits(superd, "reconfigured", 2, after=before)
    assert sorted(e["service_id"] for e in ended) == ["cat", "discard"]
    assert alive(other_cat)
    assert sessions(superd) == {"discard": 1, "daytime": 0, "cat": 1}
    status = request(superd.state_dir, "status")["status"]
    assert {s["id"]: s["ended"] for s in status["services"]} == {
        "discard": {"reconfigured": 1}, "daytime": {}, "cat": {"reconfigured": 1}}
    for sock in (discard, cat, other_discard, other_cat):
        sock.close()


def test_sighup_with_fewer_instances_ends_the_newest_sessions(
        superd_factory: StartSuperd, conf_dir: ConfDir) -> None:
    """instances lowered below the running count: the newest sessions are
    ended, the oldest keeps being served."""
    conf = conf_dir(cat=service_block("cat", "/bin/cat", extra="instances = 3"))
    superd = superd_factory(conf)
    oldest, middle, newest = (held(superd, "cat", source)
                              for source in ("127.0.0.2", "127.0.0.3", "127.0.0.4"))
    before = len(superd.events())
    (conf / "cat").write_text(service_block("cat", "/bin/cat", extra="instances = 1"))
    assert reload_and_wait(superd)["ok"]
    assert cut_off(middle) and cut_off(newest)
    ended = exits(superd, "reconfigured", 2, after=before)
    assert len(ended) == 2
    assert alive(oldest)
    assert sessions(superd) == {"cat": 1}
    for sock in (oldest, middle, newest):
        sock.close()
