"""ExecWait: spawns leave the reactor thread only while its waits for exec are long."""

from __future__ import annotations

from superd.proc.execwait import PROBE_INTERVAL, SLOW, ExecWait


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_spawns_stay_on_the_reactor_thread_while_execs_are_quick() -> None:
    waits = ExecWait(Clock())
    for _ in range(1000):
        assert not waits.offload()
        waits.waited(SLOW / 5)
    assert not waits.offloading


def test_one_slow_exec_alone_moves_nothing() -> None:
    """A single exec that took a second counts as 4 x SLOW only."""
    waits = ExecWait(Clock())
    waits.waited(1.0)
    assert not waits.offloading and not waits.offload()


def test_long_waits_move_spawns_to_the_workers_with_a_probe_per_interval() -> None:
    clock = Clock()
    waits = ExecWait(clock)
    while not waits.offloading:
        waits.waited(SLOW * 3)
    assert waits.offload() and waits.offload()  # no probe before the interval
    clock.now += PROBE_INTERVAL
    assert not waits.offload()  # this one is spawned here and measured
    waits.waited(SLOW * 3)
    assert waits.offload()
    assert waits.offloading


def test_quick_probes_bring_spawns_back() -> None:
    clock = Clock()
    waits = ExecWait(clock)
    while not waits.offloading:
        waits.waited(SLOW * 3)
    probes = 0
    while waits.offloading:
        clock.now += PROBE_INTERVAL
        assert not waits.offload()
        waits.waited(SLOW / 10)
        probes += 1
    assert 1 < probes < 20  # hysteresis: not at the first quick probe, not never
    assert waits.average < SLOW / 2
    assert not waits.offload()
