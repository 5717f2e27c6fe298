"""
``superd.access.bandb``: the ban list's file, written in batches by a worker;
a locked, read-only or damaged file degrades to memory with one logged
error, and is reopened (a new connection) until it works again.

The worker here runs inline; the thread is exercised against the real
daemon (tests/integration/test_ban_database.py).
"""

from __future__ import annotations

import math
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from superd.access.bandb import BATCH, BanDatabase, InlineWorker
from superd.access.bans import BanList
from superd.access.banstore import Ban, BanStore

NOW = 1_800_000_000.0


def errors(log_events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in log_events if e.get("event") == "ban_database"
            and e["log_level"].name == "error"]


def quick(path: str) -> BanStore:
    return BanStore(path, timeout=0.05)


def open_list(path: str, opener: Any = quick) -> tuple[BanList, Clock]:
    clock = Clock()
    clock.advance(NOW)
    bans = BanList(BanDatabase(path, clock, InlineWorker(), opener=opener), clock)
    bans.start()
    return bans, clock


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "state" / "bans.sqlite3")


@pytest.fixture
def locker(db: str) -> Iterator[sqlite3.Connection]:
    """Another connection that will hold the write lock when told to."""
    BanStore(db).close()
    other = sqlite3.connect(db, isolation_level=None)
    yield other
    if other.in_transaction:
        other.execute("ROLLBACK")
    other.close()


def stored(path: str) -> dict[str, Ban]:
    store = BanStore(path)
    try:
        return {ban.host: ban for ban in store.all()}
    finally:
        store.close()


def test_a_locked_database_degrades_once_and_recovers(
        db: str, locker: sqlite3.Connection, log_events: list[dict[str, Any]]) -> None:
    """While another process holds the lock, bans are enforced from memory
    and ONE error is logged; once it lets go, the next retry writes them all."""
    bans, clock = open_list(db)
    locker.execute("BEGIN EXCLUSIVE")
    for n in range(20):
        bans.ban(f"10.0.0.{n}", 10, "trap")
        clock.advance(0.5)
    assert all(bans.is_banned(f"10.0.0.{n}") for n in range(20))
    assert bans.database.state == "degraded"
    assert "locked" in (bans.database.error or "")
    assert len(errors(log_events)) == 1
    locker.execute("ROLLBACK")
    clock.pump([1.0] * 40)  # the retry back-off, 1 s then doubling
    assert bans.database.state == "ok"
    assert set(stored(db)) == {f"10.0.0.{n}" for n in range(20)}
    assert bans.database.unsaved == {}
    assert [e["state"] for e in log_events if e.get("event") == "ban_database"
            and e["log_level"].name != "debug"] == ["degraded", "ok"]
    bans.stop()


def test_retries_back_off(db: str, locker: sqlite3.Connection) -> None:
    """Reopening is tried after 1, 2, 4 ... seconds, not on every tick."""
    opened: list[float] = []
    clock_box: list[Clock] = []

    def counting(path: str) -> BanStore:
        if clock_box:
            opened.append(clock_box[0].seconds() - NOW)
        return quick(path)

    bans, clock = open_list(db, counting)
    clock_box.append(clock)
    locker.execute("BEGIN EXCLUSIVE")
    bans.ban("10.0.0.1", 10, "trap")
    clock.pump([1.0] * 16)
    assert opened == [1.0, 3.0, 7.0, 15.0]
    locker.execute("ROLLBACK")
    bans.stop()


class FlakyStore(BanStore):
    """A store whose writes fail while ``FlakyStore.broken`` is set, as on a
    read-only or full disk; a connection that failed stays failed."""

    broken = False
    opened = 0

    def __init__(self, path: str) -> None:
        super().__init__(path, timeout=0.05)
        type(self).opened += 1
        self.failed = False

    def write(self, puts: Any, deletes: Any) -> None:
        if self.broken or self.failed:
            self.failed = True
            raise sqlite3.OperationalError("attempt to write a readonly database")
        super().write(puts, deletes)


@pytest.fixture
def flaky() -> Iterator[type[FlakyStore]]:
    FlakyStore.broken, FlakyStore.opened = False, 0
    yield FlakyStore


def test_recovery_uses_a_new_connection(db: str, flaky: type[FlakyStore]) -> None:
    """A connection that failed is never reused: the file is opened again."""
    bans, clock = open_list(db, flaky)
    flaky.broken = True
    bans.ban("10.0.0.1", 10, "trap")
    assert bans.database.state == "degraded"
    opened = flaky.opened
    flaky.broken = False
    clock.pump([1.0] * 3)
    assert bans.database.state == "ok"
    assert flaky.opened == opened + 1
    assert set(stored(db)) == {"10.0.0.1"}
    bans.stop()


def test_after_an_outage_memory_wins(db: str, flaky: type[FlakyStore],
                                     log_events: list[dict[str, Any]]) -> None:
    """A file that lost bans during an outage (replaced, restored from an old
    copy) gets them back: they are rewritten, never lifted (nor told to the
    fleet as lifted)."""
    bans, clock = open_list(db, flaky)
    lifted: list[str] = []
    bans.removal_listeners.append(lifted.append)
    bans.ban("10.0.0.1", 10, "trap")
    flaky.broken = True
    bans.ban("10.0.0.2", 10, "trap")
    assert bans.database.state == "degraded"
    os.unlink(db)  # the operator moved it aside
    flaky.broken = False
    clock.pump([1.0] * 3)
    assert bans.database.state == "ok"
    assert set(stored(db)) == {"10.0.0.1", "10.0.0.2"}
    assert bans.is_banned("10.0.0.1") and lifted == []
    bans.stop()


def test_unsaved_changes_stay_bounded_while_degraded(db: str, flaky: type[FlakyStore]) -> None:
    """Bans made and lifted during an outage leave nothing to write: a long
    outage with churn does not grow memory."""
    bans, clock = open_list(db, flaky)
    flaky.broken = True
    for n in range(3000):
        host = f"10.{n // 65536}.{n // 256 % 256}.{n % 256}"
        assert bans.merge(host, NOW + 600, "elsewhere")
        bans.unban(host)
    assert bans.database.unsaved == {}
    bans.stop()


def test_a_damaged_file_is_reported_and_left_alone(
        db: str, log_events: list[dict[str, Any]]) -> None:
    """A truncated database: one error naming the file, bans in memory, the
    file untouched; moved aside, a new one is made with the bans in force."""
    store = BanStore(db)
    store.write([Ban(f"10.1.{n // 256}.{n % 256}", None, 0.0, "trap")
                 for n in range(3000)], [])
    store.close()
    os.truncate(db, os.path.getsize(db) // 2)
    size = os.path.getsize(db)
    bans, clock = open_list(db)
    assert bans.database.state == "degraded"
    (error,) = errors(log_events)
    assert error["path"] == db and error["damaged"] is True
    assert "malformed" in error["error"] and "move it aside" in error["error"]
    bans.ban("10.0.0.1", 10, "trap")
    clock.pump([1.0] * 8)
    assert os.path.getsize(db) == size and bans.database.state == "degraded"
    os.rename(db, db + ".damaged")
    clock.pump([1.0] * 16)
    assert bans.database.state == "ok"
    assert set(stored(db)) == {"10.0.0.1"}
    bans.stop()


def test_an_emptied_file_is_damage_not_a_new_database(
        db: str, log_events: list[dict[str, Any]]) -> None:
    """A database truncated to nothing is reported, not silently used as new."""
    BanStore(db).close()
    open(db, "w").close()
    bans, _ = open_list(db)
    assert bans.database.state == "degraded"
    assert "empty" in (bans.database.error or "")
    bans.stop()


class ManualWorker(InlineWorker):
    """Runs each piece of work only when the test says (``step``)."""

    def __init__(self) -> None:
        self.queue: list[tuple[Any, Deferred[Any]]] = []

    def run(self, work: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.queue.append((work, d))
        return d

    def step(self) -> None:
        work, d = self.queue.pop(0)
        try:
            result = work()
        except Exception:
            d.errback()
        else:
            d.callback(result)


class CountingStore(BanStore):
    """Records the size of each write transaction."""

    writes: list[int] = []

    def write(self, puts: Any, deletes: Any) -> None:
        puts = list(puts)
        self.writes.append(len(puts))
        super().write(puts, deletes)


def manual_list(path: str) -> tuple[BanList, ManualWorker]:
    """A list on the database at ``path`` (made first, as by an earlier run)."""
    BanStore(path).close()
    clock = Clock()
    clock.advance(NOW)
    worker = ManualWorker()
    CountingStore.writes = []
    bans = BanList(BanDatabase(path, clock, worker, opener=CountingStore), clock)
    bans.start()
    worker.step()  # the check at start
    return bans, worker


def test_one_operation_at_a_time_and_floods_in_batches(db: str) -> None:
    """While one write runs, new bans wait in ``unsaved``; a flood becomes a
    few transactions of at most BATCH rows, and everything is written."""
    bans, worker = manual_list(db)
    bans.ban("10.0.0.1", 10, "trap")
    for n in range(BATCH + 10):
        bans.merge(f"10.2.{n // 256}.{n % 256}", math.inf, "elsewhere")
    assert len(worker.queue) == 1
    assert len(bans.database.unsaved) == BATCH + 11
    while worker.queue:
        worker.step()
    assert CountingStore.writes == [1, BATCH, 10]
    assert len(stored(db)) == BATCH + 11
    assert bans.database.unsaved == {}
    bans.stop()


def test_a_change_made_during_its_write_is_written_again(db: str) -> None:
    """A host changed while its previous row is being written keeps the newer change."""
    bans, worker = manual_list(db)
    bans.ban("10.0.0.1", 10, "trap")
    bans.unban("10.0.0.1")  # while the ban's row is in flight
    while worker.queue:
        worker.step()
    assert stored(db) == {}
    bans.stop()


def test_start_opens_the_file_afresh_on_the_worker(db: str) -> None:
    """The connection that loaded the bans before the reactor ran is closed
    and a new one is opened by the worker (twistd may fork in between)."""
    BanStore(db).close()
    clock = Clock()
    worker = ManualWorker()
    bans = BanList(BanDatabase(db, clock, worker, opener=CountingStore), clock)
    loaded_with = bans.store
    bans.start()
    assert bans.store is None and len(worker.queue) == 1
    worker.step()
    assert bans.store is not None and bans.store is not loaded_with
    assert bans.database.state == "ok"
    bans.stop()


def test_stop_writes_what_is_unsaved(db: str) -> None:
    """Changes still waiting when superd stops are written before it closes."""
    bans, worker = manual_list(db)
    bans.ban("10.0.0.7", 10, "trap")
    bans.ban("10.0.0.8", 10, "trap")
    assert worker.queue  # the first write never ran
    bans.stop()
    assert set(stored(db)) == {"10.0.0.7", "10.0.0.8"}


class StartCountingWorker(ManualWorker):
    """A ``ManualWorker`` that counts how often it was asked to be ready."""

    def __init__(self) -> None:
        super().__init__()
        self.started = 0

    def start(self) -> None:
        self.started += 1


def test_no_file_loads_nothing_until_the_first_ban(db: str) -> None:
    """Without a database there is nothing to read or check: no work is
    queued and the worker is never started (no thread, no SQLite) while the
    list polls and purges; the first ban makes the file and is stored."""
    clock = Clock()
    clock.advance(NOW)
    worker = StartCountingWorker()
    bans = BanList(BanDatabase(db, clock, worker, opener=CountingStore), clock)
    bans.start()
    clock.pump([1.0] * 70)
    assert (worker.queue, worker.started, os.path.exists(db)) == ([], 0, False)
    assert bans.database.state == "ok"
    bans.ban("10.0.0.1", 10, "trap")
    assert worker.started and len(worker.queue) == 1
    while worker.queue:
        worker.step()
    assert set(stored(db)) == {"10.0.0.1"}
    assert bans.database.state == "ok" and bans.database.unsaved == {}
    bans.stop()


def test_a_file_another_process_makes_is_taken_in(db: str) -> None:
    """A daemon without a database yet takes in the one ``superd bans
    --offline`` makes, at its next poll."""
    bans, clock = open_list(db)
    other = BanStore(db)
    other.put(Ban("10.0.0.9", None, NOW, "superd bans"))
    other.close()
    assert not bans.is_banned("10.0.0.9")
    clock.advance(1.0)
    assert bans.is_banned("10.0.0.9")
    bans.stop()


def test_a_first_ban_stored_at_stop_while_the_database_is_being_made(db: str) -> None:
    """Stopping while the worker is still making the database for the
    first ban (its answer never comes) writes the ban all the same."""
    clock = Clock()
    clock.advance(NOW)
    worker = ManualWorker()
    bans = BanList(BanDatabase(db, clock, worker, opener=CountingStore), clock)
    bans.start()
    bans.ban("10.0.0.3", 10, "trap")
    assert len(worker.queue) == 1  # the database being made, not answered
    bans.stop()
    assert set(stored(db)) == {"10.0.0.3"}
