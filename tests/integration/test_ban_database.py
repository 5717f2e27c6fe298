"""
The ban database against the real daemon: whatever happens to the SQLite
file, the reactor never waits for it, every ban stays in force, and what
``superd status`` shows is what is enforced.

* another process holds the database locked (``sqlite3``'s BEGIN
  EXCLUSIVE) while sensors are tripped: echo probes on the same daemon keep
  answering fast, ONE error is logged, and once the lock goes the bans are
  written;
* the file is read-only (``chattr +i``): the bans are enforced and shown by
  status, and written once it is writable again -- without a restart;
* the file is damaged (truncated, emptied): reported, naming the file, and
  status says the database is degraded; moved aside, a new one is made.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from superd.access.banstore import Ban, BanStore, db_path
from superd.cli.control import request
from tests.access.clients import block, daytime_block, fetch, hosts_args
from tests.integration.harness import REQUIRE_ALL, require_program

SENSOR = block("daytime", "trap", extra="\tflags = SENSOR\n\tdeny_time = 10\n")
ECHO = block("echo", "echo", extra="\tcps = 0 0\n")
#: A probe slower than this means the reactor waited (a ban costs 2 s when
#: SQLite runs on it with its busy timeout).
PROBE_BOUND = 0.5


def start(superd_factory: Callable[..., Any], conf_dir: Callable[..., Path],
          tmp_path: Path, state: Path) -> Any:
    conf = conf_dir(trap=SENSOR, daytime=daytime_block("daytime"), echo=ECHO)
    superd = superd_factory(conf, *hosts_args(tmp_path), state_dir=str(state))
    superd.allow_errors = True  # the database's trouble is an error line, on purpose
    return superd


def ban_database_events(superd: Any, state: str) -> list[dict[str, Any]]:
    return [e for e in superd.events() if e.get("event") == "ban_database"
            and e.get("state") == state]


def trip(superd: Any, sources: list[str]) -> None:
    for source in sources:
        assert not fetch(source, superd.port("trap"))
    for source in sources:
        assert not fetch(source, superd.port("daytime"))


def stored_hosts(path: str) -> set[str]:
    store = BanStore(path)
    try:
        return {ban.host for ban in store.all()}
    finally:
        store.close()


def status(superd: Any) -> dict[str, Any]:
    reply = request(superd.state_dir, "status")
    assert reply["ok"]
    return dict(reply["status"])


class Prober:
    """Echo round trips from 127.0.0.2 every 20 ms on a thread, timed."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.times: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                with socket.create_connection(("127.0.0.1", self.port), 5,
                                              source_address=("127.0.0.2", 0)) as s:
                    s.sendall(b"ping\n")
                    answer = s.recv(100)
                if answer != b"ping\n":
                    self.failures.append(repr(answer))
            except OSError as e:
                self.failures.append(str(e))
            self.times.append(time.monotonic() - began)
            self._stop.wait(0.02)


@pytest.fixture
def locked(tmp_path: Path) -> Iterator[Callable[[], None]]:
    """``locked()`` makes another process (the sqlite3 shell) hold an
    exclusive lock on the state directory's ban database until the test
    ends or calls it again.  The database is made first, as by an earlier
    run (superd makes none before its first ban)."""
    sqlite3 = require_program("sqlite3")
    path = db_path(str(tmp_path / "state"))
    BanStore(path).close()
    shells: list[subprocess.Popen[str]] = []

    def lock() -> None:
        if shells:
            release(shells.pop())
            return
        shell = subprocess.Popen([sqlite3, path], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert shell.stdin is not None and shell.stdout is not None
        shell.stdin.write("BEGIN EXCLUSIVE;\nSELECT 'locked';\n")
        shell.stdin.flush()
        assert shell.stdout.readline().strip() == "locked"
        shells.append(shell)

    def release(shell: subprocess.Popen[str]) -> None:
        assert shell.stdin is not None
        shell.stdin.write("ROLLBACK;\n.quit\n")
        shell.stdin.close()
        shell.wait(10)

    yield lock
    for shell in shells:
        release(shell)


def test_a_locked_database_never_stalls_the_daemon(
        superd_factory: Callable[..., Any], conf_dir: Callable[..., Path],
        tmp_path: Path, locked: Callable[[], None]) -> None:
    """With the database held by another process, ten sources trip the
    sensor while echo probes run: every probe answers within PROBE_BOUND,
    every source is refused, one error is logged; after the lock goes the
    ten bans are written, without a restart."""
    state = tmp_path / "state"
    superd = start(superd_factory, conf_dir, tmp_path, state)
    sources = [f"127.0.0.{10 + n}" for n in range(10)]
    locked()
    with Prober(superd.port("echo")) as prober:
        trip(superd, sources)
        time.sleep(1)  # probes after the last ban, too
    assert prober.failures == []
    assert len(prober.times) > 20
    assert max(prober.times) < PROBE_BOUND, sorted(prober.times)[-5:]
    degraded = superd.wait_for_event(lambda e: e.get("event") == "ban_database"
                                     and e.get("state") == "degraded", 10)
    assert "locked" in degraded["error"]
    assert status(superd)["ban_database"]["state"] == "degraded"
    assert [b["host"] for b in status(superd)["bans"]] == sources
    assert [e for e in superd.errors() if e is not degraded] == []
    locked()  # released
    superd.wait_for_event(lambda e: e.get("event") == "ban_database"
                          and e.get("state") == "ok", 40)
    assert set(sources) <= stored_hosts(db_path(str(state)))
    assert status(superd)["ban_database"]["state"] == "ok"


def sqlite_loaded(superd: Any) -> bool:
    """Whether SQLite's library is mapped into the daemon."""
    return bool(superd.maps("libsqlite3"))


def test_without_a_database_sqlite_waits_for_the_first_ban(
        superd_factory: Callable[..., Any], conf_dir: Callable[..., Path],
        tmp_path: Path) -> None:
    """A state directory without a database: superd starts without SQLite
    and makes no file; the first ban makes the database (SQLite loads then),
    and is stored."""
    state = tmp_path / "state"
    superd = start(superd_factory, conf_dir, tmp_path, state)
    path = db_path(str(state))
    assert not sqlite_loaded(superd)
    assert not os.path.exists(path)
    trip(superd, ["127.0.0.60"])
    deadline = time.monotonic() + 10
    while not (sqlite_loaded(superd) and os.path.exists(path)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sqlite_loaded(superd) and os.path.exists(path)
    assert status(superd)["ban_database"]["state"] == "ok"
    assert superd.stop() == 0
    assert stored_hosts(path) == {"127.0.0.60"}
    assert superd.errors() == []


def chattr(flag: str, path: Path) -> bool:
    program = require_program("chattr")
    done = subprocess.run([program, flag, str(path)], capture_output=True, check=False)
    return done.returncode == 0


@pytest.fixture
def immutable(tmp_path: Path) -> Iterator[Path]:
    """A ban database made read-only with ``chattr +i`` (lifted at the end)."""
    path = Path(db_path(str(tmp_path / "state")))
    BanStore(str(path)).close()
    if not chattr("+i", path):
        message = "chattr +i is refused here (not root, or the filesystem lacks it)"
        if REQUIRE_ALL:
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield path
    finally:
        chattr("-i", path)


def test_read_only_database_bans_are_shown_and_stored_when_writable(
        superd_factory: Callable[..., Any], conf_dir: Callable[..., Path],
        tmp_path: Path, immutable: Path) -> None:
    """On an immutable database the bans are enforced and listed by status
    (the file holds none); status says the database is degraded; after
    ``chattr -i`` the same daemon writes them all."""
    superd = start(superd_factory, conf_dir, tmp_path, immutable.parent)
    superd.wait_for_event(lambda e: e.get("event") == "ban_database"
                          and e.get("state") == "degraded", 10)
    sources = [f"127.0.0.{20 + n}" for n in range(20)]
    trip(superd, sources)
    shown = status(superd)
    assert [b["host"] for b in shown["bans"]] == sorted(sources)
    assert shown["ban_database"]["state"] == "degraded"
    assert "readonly" in shown["ban_database"]["error"]
    assert stored_hosts(str(immutable)) == set()
    assert chattr("-i", immutable)
    superd.wait_for_event(lambda e: e.get("event") == "ban_database"
                          and e.get("state") == "ok", 40)
    assert stored_hosts(str(immutable)) == set(sources)
    assert len(ban_database_events(superd, "degraded")) == 1


def damage(path: Path, how: str) -> None:
    store = BanStore(str(path))
    for n in range(3000):
        store.put(Ban(f"10.9.{n // 256}.{n % 256}", None, 0.0, "trap"))
    store.close()
    os.truncate(path, 0 if how == "emptied" else os.path.getsize(path) // 2)


@pytest.mark.parametrize("how", ["truncated", "emptied"])
def test_a_damaged_database_is_reported_not_started_empty(
        superd_factory: Callable[..., Any], conf_dir: Callable[..., Path],
        tmp_path: Path, how: str) -> None:
    """One error naming the file; status shows the database degraded; bans
    still work (in memory); the file is left as it is until moved aside,
    then a new database gets the bans in force."""
    state = tmp_path / "state"
    state.mkdir()
    path = Path(db_path(str(state)))
    damage(path, how)
    size = path.stat().st_size
    superd = start(superd_factory, conf_dir, tmp_path, state)
    (error,) = superd.errors()
    assert (error["event"], error["path"], error["damaged"]) == (
        "ban_database", str(path), True)
    assert f"cannot use the ban database {path}" in error["message"]
    shown = status(superd)["ban_database"]
    assert shown["state"] == "degraded" and "damaged" in shown["error"]
    trip(superd, ["127.0.0.40"])
    assert path.stat().st_size == size
    path.rename(path.with_name("bans.damaged"))
    superd.wait_for_event(lambda e: e.get("event") == "ban_database"
                          and e.get("state") == "ok", 40)
    assert stored_hosts(str(path)) == {"127.0.0.40"}
