"""
Tests for superd.proc.spawnpool: work runs on worker threads, results come
back on the reactor thread in batches, ``quiet`` holds every worker off, and
``stop`` ends the threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from superd.proc.spawnpool import SpawnPool

Call = tuple[Callable[..., Any], tuple[Any, ...]]


class ThreadedReactor:
    """What the pool uses of a reactor: callFromThread (queued for the test
    to run, as the reactor thread would) and shutdown triggers."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.lock = threading.Lock()
        self.triggers: list[tuple[str, str, Callable[[], None]]] = []

    def callFromThread(self, f: Callable[..., Any], *args: Any) -> None:
        with self.lock:
            self.calls.append((f, args))

    def addSystemEventTrigger(self, phase: str, event: str, f: Callable[[], None]) -> None:
        self.triggers.append((phase, event, f))

    def run_calls(self) -> int:
        with self.lock:
            calls, self.calls = self.calls, []
        for f, args in calls:
            f(*args)
        return len(calls)


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


@pytest.fixture
def reactor() -> ThreadedReactor:
    return ThreadedReactor()


def test_work_runs_off_the_reactor_thread_and_results_come_back_on_it(
        reactor: ThreadedReactor) -> None:
    """The work sees a worker thread; done() is called only when the
    reactor runs its queued calls, with the result or the exception."""
    pool = SpawnPool(reactor, workers=2)
    results: list[Any] = []
    main = threading.get_ident()
    pool.submit(lambda: threading.get_ident(), results.append)

    def fail() -> int:
        raise OSError(2, "gone")

    pool.submit(fail, results.append)
    wait_for(lambda: len(reactor.calls) >= 1)
    assert results == []
    wait_for(lambda: reactor.run_calls() >= 0 and len(results) == 2)
    thread_id = next(r for r in results if isinstance(r, int))
    assert thread_id != main
    assert any(isinstance(r, OSError) and r.errno == 2 for r in results)
    pool.stop()


def test_a_burst_of_results_wakes_the_reactor_once(reactor: ThreadedReactor) -> None:
    """Results that finish while a delivery is pending join it: one
    callFromThread for the lot, then delivered() once."""
    delivered: list[int] = []
    results: list[int] = []
    pool = SpawnPool(reactor, workers=4, delivered=lambda: delivered.append(len(results)))
    release = threading.Event()
    for i in range(8):
        pool.submit(lambda i=i: (release.wait(10), i)[1], results.append)
    release.set()
    wait_for(lambda: len(pool._finished) == 8)
    assert len(reactor.calls) == 1
    reactor.run_calls()
    assert sorted(results) == list(range(8)) and delivered == [8]
    pool.submit(lambda: 9, results.append)
    wait_for(lambda: len(reactor.calls) == 1)
    reactor.run_calls()
    assert results[-1] == 9 and delivered == [8, 9]
    pool.stop()


def test_quiet_holds_every_worker_off(reactor: ThreadedReactor) -> None:
    """While inside quiet(), queued work does not start; it runs after."""
    pool = SpawnPool(reactor, workers=3)
    started: list[int] = []
    pool.submit(lambda: 0, lambda r: None)  # starts the workers
    wait_for(lambda: reactor.run_calls() == 1)
    with pool.quiet():
        for i in range(3):
            pool.submit(lambda i=i: started.append(i) or i, lambda r: None)
        time.sleep(0.05)
        assert started == []
    wait_for(lambda: len(started) == 3)
    pool.stop()


def test_quiet_waits_for_a_spawn_under_way(reactor: ThreadedReactor) -> None:
    """quiet() returns only once the work a worker is doing has finished."""
    pool = SpawnPool(reactor, workers=2)
    inside, release = threading.Event(), threading.Event()
    finished: list[str] = []

    def slow() -> int:
        inside.set()
        release.wait(10)
        finished.append("work")
        return 1

    pool.submit(slow, lambda r: None)
    assert inside.wait(10)
    threading.Timer(0.05, release.set).start()
    with pool.quiet():
        finished.append("quiet")
    assert finished == ["work", "quiet"]
    pool.stop()


def test_threads_start_with_the_first_request_and_stop_at_shutdown(
        reactor: ThreadedReactor) -> None:
    """No thread before the first submit; stop() (a shutdown trigger) ends them."""
    before = threading.active_count()
    pool = SpawnPool(reactor, workers=2)
    assert not pool.started and threading.active_count() == before
    pool.submit(lambda: 1, lambda r: None)
    assert pool.started and pool.size == 2
    ((phase, event, stop),) = reactor.triggers
    assert (phase, event) == ("after", "shutdown")
    threads = list(pool._threads)
    stop()
    for thread in threads:
        thread.join(10)
        assert not thread.is_alive()
