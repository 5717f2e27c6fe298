"""superd.daemon.metrics: the live sessions superd ended itself, counted."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from twisted.internet.testing import MemoryReactorClock

from superd.access.state import AccessState
from superd.core.runtime import Runtime
from superd.daemon.metrics import RuntimeCollector


def test_sessions_ended_per_service_and_reason() -> None:
    """Sessions ended by a ban or a reload are a counter per service id
    (blocks of one id added up) and reason."""
    access = AccessState(Runtime(reactor=MemoryReactorClock()))
    lan = access.counters.for_block("ssh", "ssh tcp/22 10.0.0.1")
    web = access.counters.for_block("ssh", "ssh tcp/22 192.0.2.1")
    lan.end("banned")
    web.end("banned")
    web.end("reconfigured")
    registry = CollectorRegistry()
    registry.register(RuntimeCollector(access))
    def ended(reason: str) -> float | None:
        return registry.get_sample_value("superd_sessions_ended_total",
                                         {"service": "ssh", "reason": reason})
    assert (ended("banned"), ended("reconfigured")) == (2, 1)
