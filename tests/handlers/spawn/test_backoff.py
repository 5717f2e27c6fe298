"""Tests for superd.handlers.spawn.backoff: the wait=yes respawn guard."""

from __future__ import annotations

from superd.handlers.spawn.backoff import RespawnGuard


def test_quick_useless_runs_back_off_exponentially() -> None:
    """Each quick run that served nothing doubles the delay: 1, 2, 4 ... s."""
    guard = RespawnGuard()
    assert [guard.after_run(0.1, False) for _ in range(4)] == [1.0, 2.0, 4.0, 8.0]
    assert guard.failures == 4


def test_delay_is_capped() -> None:
    """The delay never exceeds the cap (60 s by default)."""
    guard = RespawnGuard()
    delays = [guard.after_run(0.0, False) for _ in range(12)]
    assert delays[-1] == 60.0 and max(delays) == 60.0


def test_healthy_run_resets() -> None:
    """A run that served, or lasted at least a second, resets the count."""
    guard = RespawnGuard()
    guard.after_run(0.1, False)
    guard.after_run(0.1, False)
    assert guard.after_run(0.1, True) == 0.0 and guard.failures == 0
    guard.after_run(0.1, False)
    assert guard.after_run(1.0, False) == 0.0
    assert guard.after_run(0.2, False) == 1.0


def test_spawn_failure_counts() -> None:
    """A failed spawn counts as a failed run."""
    guard = RespawnGuard()
    assert guard.failed() == 1.0 and guard.failed() == 2.0
