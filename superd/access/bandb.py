"""
The ban list's SQLite file, kept in step with the list in force and worked
on away from the reactor.

``BanList`` never waits for the database.  Each change it makes -- a ban to
store, a host to delete -- is recorded in ``BanDatabase.unsaved``, one entry
per host (a newer change replaces an older one), and one operation at a time
runs on the worker, a thread of its own:

* a transaction writing up to ``BATCH`` unsaved changes (an entry leaves
  ``unsaved`` only once its transaction committed);
* the once-a-second ``PRAGMA data_version`` poll that picks up another
  process's edits (``superd bans --offline``);
* the periodic purge of expired rows.

Batching rather than a queue of statements: a flood of bans becomes a few
transactions, and there is no queue to overflow -- the map is bounded by the
hosts the list holds plus those still in the file, and nothing is dropped.

Any failure -- a lock another process holds past the busy timeout, a
read-only or full disk, an I/O error, a damaged file -- closes the
connection and degrades to memory: ONE error is logged, ``state`` says
``degraded`` (with ``error``) and the list keeps enforcing every ban.  The
file is then opened afresh, with a new connection (SQLite keeps a
connection opened on a read-only file read-only for good), after 1, 2, 4
... up to ``RETRY_MAX`` seconds; the first open that passes the check reads
the file, writes every unsaved change and logs the recovery.  A damaged
file is never written to: it stays degraded until it is moved aside (then a
new database is made) or repaired.

A state directory without a database holds no ban to read and no file to
check: the database is made when the first change is to be stored (or taken
in once another process has made it), and until then neither SQLite nor
the worker's thread is loaded -- a daemon that never bans never pays for
them.  A file that exists is opened and checked before anything is served,
as ever.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from itertools import islice
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorThreads, IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from superd.access.banrecord import Ban
from superd.observe import events

if TYPE_CHECKING:
    from superd.access.banstore import BanStore

__all__ = [
    "BATCH",
    "DEGRADED",
    "MEMORY",
    "OK",
    "RETRY_MAX",
    "BanDatabase",
    "InlineWorker",
    "ThreadWorker",
    "Worker",
]

_log = Logger(namespace="superd")

T = TypeVar("T")

#: Changes written in one transaction (short, so another process's wait is short).
BATCH = 5000
#: Seconds before the first attempt to reopen a failed database; doubled each
#: time up to RETRY_MAX.
RETRY_MIN = 1.0
RETRY_MAX = 30.0

#: ``state``: the file is open and written.
OK = "ok"
#: ``state``: the file cannot be used now; bans are kept in memory.
DEGRADED = "degraded"
#: ``state``: no file at all (``:memory:``).
MEMORY = "memory"

_ABSENT = object()

#: What an operation does on the worker; it returns what then runs on the
#: reactor thread with its results.
Operation = Callable[[], Callable[[], None]]


class Worker(Protocol):
    """Runs database work somewhere; ``run`` fires with its result."""

    def run(self, work: Callable[[], T]) -> Deferred[T]:
        """Run ``work``; the Deferred fires (on the reactor thread) with its result."""

    def start(self) -> None:
        """Be ready to run work (called before each ``run``: at once if ready)."""

    def stop(self) -> None:
        """Finish the work in progress and stop (blocks until it is done)."""


class InlineWorker:
    """Runs work at once, in the caller's thread (tests, ``:memory:``)."""

    def run(self, work: Callable[[], T]) -> Deferred[T]:
        try:
            return succeed(work())
        except Exception:
            return fail()

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


class ThreadWorker:
    """One thread of its own (the reactor's shared pool also resolves names:
    a database waiting on a lock must not hold up lookups, nor they it)."""

    def __init__(self, reactor: IReactorThreads, name: str = "superd-bans") -> None:
        self._reactor = reactor
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name=name)

    def run(self, work: Callable[[], T]) -> Deferred[T]:
        return deferToThreadPool(self._reactor, self._pool, work)

    def start(self) -> None:
        if not self._pool.started:
            self._pool.start()

    def stop(self) -> None:
        if self._pool.started:
            self._pool.stop()


def _database_errors() -> tuple[type[BaseException], ...]:
    """What a database operation fails with when the file, not superd, is at
    fault: SQLite's errors and the system's.  (SQLite is loaded already when
    there is a database to fail.)"""
    import sqlite3

    return (sqlite3.Error, OSError)


def _damaged(error: BaseException) -> bool:
    """True if ``error`` says the file is not a sound ban database."""
    from superd.access.banstore import DamagedDatabase

    return isinstance(error, DamagedDatabase)


def _open_store(path: str) -> BanStore:
    """The ``BanStore`` of ``path`` (SQLite is loaded here, with the first file)."""
    from superd.access.banstore import BanStore

    return BanStore(path)


def _problem(error: BaseException) -> str:
    if _damaged(error):
        return (f"the file is damaged ({error}); move it aside and superd makes a"
                " new one with the bans in force")
    return str(error) or type(error).__name__


class BanDatabase:
    """The file behind one ``BanList``: what is unsaved, and the worker."""

    def __init__(self, path: str, clock: IReactorTime, worker: Worker, *,
                 opener: Callable[[str], BanStore] = _open_store) -> None:
        self.path = path
        self._clock = clock
        self._worker = worker
        self._opener = opener
        #: The open store (None while degraded).
        self.store: BanStore | None = None
        #: ``ok``, ``degraded`` or ``memory``.
        self.state = MEMORY if path == ":memory:" else OK
        #: Why the database is degraded (None when it is not).
        self.error: str | None = None
        #: Changes not yet committed: host -> the row to store, or None to delete.
        self.unsaved: dict[str, Ban | None] = {}
        #: Called on the reactor thread with every row of the file when it was
        #: (re)read, and whether that follows an outage.
        self.on_loaded: Callable[[list[Ban], bool], None] = lambda rows, after_outage: None
        #: Hosts the file holds, as far as this process knows.
        self._in_file: set[str] = set()
        self._in_flight: set[str] = set()
        self._version = -1
        self._busy = False
        self._stopped = False
        self._retry_at = 0.0
        self._delay = RETRY_MIN
        self._poll_due = False
        self._purge_before: float | None = None
        self._to_close: list[BanStore] = []

    @classmethod
    def of_store(cls, store: BanStore, clock: IReactorTime, worker: Worker | None = None,
                 **kw: Any) -> BanDatabase:
        """A database around an already open ``store`` (run inline by default)."""
        database = cls(store.path, clock, worker or InlineWorker(), **kw)
        database.store = store
        return database

    @property
    def degraded(self) -> bool:
        """True while bans are kept in memory only, because of a failure."""
        return self.state == DEGRADED

    # -- the list's side ---------------------------------------------------

    def load_now(self) -> list[Ban]:
        """Open (unless open) and read the file in the calling thread, before
        the reactor runs: the bans must be in force before anything is served.
        On failure: degraded, no rows, retried later.  No file: no rows, and
        nothing opened (the first change to store makes it)."""
        if self.store is None and not self._exists():
            return []
        try:
            if self.store is None:
                self.store = self._open()
            rows, self._version = _read(self.store)
        except _database_errors() as e:
            self._failed(e)
            return []
        self._in_file = {row.host for row in rows}
        return rows

    def save(self, host: str, ban: Ban | None) -> None:
        """Store ``ban`` for ``host`` (None: delete its row), soon."""
        if ban is None and host not in self._in_file and host not in self._in_flight:
            self.unsaved.pop(host, None)  # never written: nothing to delete
        else:
            self.unsaved[host] = ban
        self._kick()

    def refresh(self) -> None:
        """Look for another process's changes (and retry a failed file) now."""
        self._poll_due = True
        self._kick()

    def purge(self, now: float) -> None:
        """Delete the rows of bans that ended at or before ``now``, soon."""
        self._purge_before = now
        self._kick()

    def start(self) -> None:
        """Start working: open the file afresh on the worker (checking it can
        be written), as the connection ``load_now`` used was opened before the
        reactor ran -- before twistd forked into the background, where
        SQLite's locks do not follow a connection.  The worker starts with
        its first operation (without a file, with the first change)."""
        self._stopped = False
        if self.store is not None and self.path != ":memory:":
            self._to_close.append(self.store)
            self.store = None
            self._retry_at = 0.0
        self._kick()

    def stop(self) -> None:
        """Stop polling, let the work in progress finish, write what is
        unsaved (unless degraded: that would wait on the failure again) and
        close the file."""
        self._stopped = True
        self._worker.stop()
        store, self.store = self.store, None
        if store is None and self.unsaved and self.state == OK:
            # The worker was still opening (or making) the file, and its
            # answer will not be taken now: open it here for what is unsaved.
            try:
                store = self._open()
            except _database_errors() as e:
                self._failed(e)
        if store is not None and self.unsaved:
            try:
                _write_all(store, self.unsaved)
                self.unsaved.clear()
            except _database_errors() as e:
                self._failed(e)
        if self.unsaved and self.state == DEGRADED:
            _log.error("{count} ban changes were not stored in {path} ({error});"
                       " the bans in force now are lost at this stop",
                       event=events.EV_BAN_DATABASE, state="unsaved", path=self.path,
                       count=len(self.unsaved), error=self.error)
        for old in [*self._to_close, *([store] if store is not None else [])]:
            _close(old)
        self._to_close = []

    # -- scheduling --------------------------------------------------------

    def _kick(self) -> None:
        if self._busy or self._stopped:
            return
        operation = self._next()
        if operation is not None:
            self._run(operation)

    def _run(self, operation: Operation) -> None:
        self._busy = True
        self._worker.start()
        d = self._worker.run(operation)
        d.addCallbacks(self._done, self._error)

    def _done(self, then: Callable[[], None]) -> None:
        self._busy = False
        self._in_flight = set()
        if self._stopped:
            return
        then()
        self._kick()

    def _error(self, failure: Failure) -> None:
        self._busy = False
        self._in_flight = set()
        if self._stopped:
            return
        error: BaseException = failure.value or RuntimeError("unknown failure")
        if not isinstance(error, _database_errors()):
            _log.failure("ban database work failed", failure, event=events.EV_BAN_DATABASE,
                         state="bug", path=self.path)
        self._failed(error)

    def _next(self) -> Operation | None:
        if self.store is None:
            if self._clock.seconds() < self._retry_at:
                return None
            if self.state == OK and not self.unsaved and not self._exists():
                return None  # no file yet, nothing to store: no SQLite either
            return self._reopen()
        if self.unsaved:
            return self._write()
        if self._purge_before is not None:
            before, self._purge_before = self._purge_before, None
            return self._purge(before)
        if self._poll_due:
            self._poll_due = False
            return self._poll()
        return None

    # -- operations (the returned function runs on the worker) -------------

    def _write(self) -> Operation:
        store = self.store
        assert store is not None
        batch = list(islice(self.unsaved.items(), BATCH))
        self._in_flight = {host for host, _ in batch}

        def work() -> Callable[[], None]:
            store.write([ban for _, ban in batch if ban is not None],
                        [host for host, ban in batch if ban is None])
            return lambda: self._written(batch)
        return work

    def _written(self, batch: list[tuple[str, Ban | None]]) -> None:
        for host, change in batch:
            if change is None:
                self._in_file.discard(host)
            else:
                self._in_file.add(host)
            if self.unsaved.get(host, _ABSENT) is change:
                del self.unsaved[host]
        self._tell_recovered()

    def _poll(self) -> Operation:
        store, version = self.store, self._version
        assert store is not None

        def work() -> Callable[[], None]:
            now = store.data_version()
            if now == version:
                return lambda: None
            rows = store.all()
            return lambda: self._loaded(rows, now, after_outage=False)
        return work

    def _purge(self, now: float) -> Operation:
        store = self.store
        assert store is not None

        def work() -> Callable[[], None]:
            gone = store.purge_hosts(now)
            return lambda: self._in_file.difference_update(gone)
        return work

    def _reopen(self) -> Operation:
        closing, self._to_close = self._to_close, []

        def work() -> Callable[[], None]:
            for old in closing:
                _close(old)
            store = self._open()
            try:
                rows, version = _read(store)
            except BaseException:
                _close(store)
                raise
            return lambda: self._reopened(store, rows, version)
        return work

    def _reopened(self, store: BanStore, rows: list[Ban], version: int) -> None:
        self.store = store
        self._delay = RETRY_MIN
        self._loaded(rows, version, after_outage=self.state == DEGRADED)
        self._tell_recovered()

    def _tell_recovered(self) -> None:
        """Degraded until what was kept in memory is written: then one line."""
        if self.state == DEGRADED and self.store is not None and not self.unsaved:
            self.state, self.error = OK, None
            _log.info("the ban database {path} works again; the bans in force are"
                      " stored", event=events.EV_BAN_DATABASE, state=OK, path=self.path)

    def _loaded(self, rows: list[Ban], version: int, *, after_outage: bool) -> None:
        self._version = version
        self._in_file = {row.host for row in rows}
        self.on_loaded(rows, after_outage)

    # -- failures ----------------------------------------------------------

    def _exists(self) -> bool:
        """Whether there is a file to read (a stat of the state directory)."""
        return self.path == ":memory:" or os.path.exists(self.path)

    def _open(self) -> BanStore:
        store = self._opener(self.path)
        try:
            store.check()
        except BaseException:
            _close(store)
            raise
        return store

    def _failed(self, error: BaseException) -> None:
        """Degrade to memory: one error line, a fresh connection later."""
        if self.store is not None:
            self._to_close.append(self.store)
            self.store = None
        self._retry_at = self._clock.seconds() + self._delay
        self._delay = min(self._delay * 2, RETRY_MAX)
        text = _problem(error)
        if self.state == DEGRADED:
            self.error = text
            _log.debug("the ban database {path} still fails: {error}",
                       event=events.EV_BAN_DATABASE, state="still_degraded",
                       path=self.path, error=text)
            return
        self.state, self.error = DEGRADED, text
        _log.error("cannot use the ban database {path}: {error}; bans are kept in"
                   " memory (enforced, but not stored) until it works again",
                   event=events.EV_BAN_DATABASE, state=DEGRADED, path=self.path,
                   error=text, damaged=_damaged(error))


def _read(store: BanStore) -> tuple[list[Ban], int]:
    version = store.data_version()
    return store.all(), version


def _write_all(store: BanStore, changes: dict[str, Ban | None]) -> None:
    items = iter(list(changes.items()))
    for batch in _batches(items):
        store.write([ban for _, ban in batch if ban is not None],
                    [host for host, ban in batch if ban is None])


def _batches(items: Iterator[tuple[str, Ban | None]]) -> Iterator[list[tuple[str, Ban | None]]]:
    while batch := list(islice(items, BATCH)):
        yield batch


def _close(store: BanStore) -> None:
    import sqlite3  # loaded with the store

    try:
        store.close()
    except sqlite3.Error:
        pass  # closing what failed: its error is already reported
