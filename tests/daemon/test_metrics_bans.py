"""
superd.daemon.metrics for the ban list and its storage: evictions and
refusals of a full list, the database's health, the shared channel's drops.
"""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry
from twisted.internet.testing import MemoryReactorClock

from superd.access import bans as bans_module
from superd.access.state import AccessState
from superd.core.runtime import Runtime
from superd.daemon.metrics import EventCounter, RuntimeCollector


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_full_list_and_database_health(monkeypatch: pytest.MonkeyPatch) -> None:
    """Evictions and refusals by kind, and whether the database is written."""
    monkeypatch.setattr(bans_module, "MAX_BANS", 2)
    access = AccessState(Runtime(reactor=MemoryReactorClock()))
    bans = access.bans
    registry = CollectorRegistry()
    registry.register(RuntimeCollector(access))
    assert value(registry, "superd_ban_database_up") == 1
    bans.merge("10.0.0.1", math.inf, "elsewhere")
    bans.ban("10.0.0.2", 5, "trap")
    bans.ban("10.0.0.3", 5, "trap")  # evicts the fleet ban
    bans.ban("10.0.0.4", 5, "trap")  # evicts a local ban
    assert not bans.merge("10.0.0.5", math.inf, "elsewhere")  # refused: full of local
    assert value(registry, "superd_ban_list_evictions_total", kind="remote") == 1
    assert value(registry, "superd_ban_list_evictions_total", kind="local") == 1
    assert value(registry, "superd_ban_list_refused_total", kind="remote") == 1
    assert value(registry, "superd_ban_list_refused_total", kind="local") == 0
    assert bans.store is not None
    bans.store.close()
    bans.ban("10.0.0.6", 5, "trap")
    assert value(registry, "superd_ban_database_up") == 0


def test_dropped_channel_messages_are_counted_by_reason() -> None:
    """The channel's periodic report adds its counts, by reason."""
    registry = CollectorRegistry()
    counter = EventCounter(registry)
    counter({"event": "ban_store", "state": "dropped", "dropped": 148_000, "malformed": 3})
    counter({"event": "ban_store", "state": "dropped", "dropped": 10, "malformed": 0})
    assert value(registry, "superd_ban_store_messages_dropped_total", reason="rate") == 148_010
    assert value(registry, "superd_ban_store_messages_dropped_total",
                 reason="malformed") == 3
    assert value(registry, "superd_ban_store_up") is None  # not an up/down event
