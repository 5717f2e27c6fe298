"""The fleet figures' parts: sources, sensor configuration and latency arithmetic.

Only what the figures compute is checked here; the bench smoke test runs them.
"""

from __future__ import annotations

import ipaddress
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from benchlib import fleet_figures


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # as superd writes


def _ban(action: str, host: str, t: float) -> dict[str, object]:
    return {"event": "ban", "action": action, "peer_host": host, "time": _stamp(t)}


def test_source_addresses_are_distinct_loopback_hosts() -> None:
    """1,000 bans need 1,000 different client addresses, all on 127/8, none ending .0."""
    hosts = fleet_figures.source_addresses(1000)
    assert len(set(hosts)) == 1000
    for host in hosts:
        address = ipaddress.IPv4Address(host)
        assert address.is_loopback and not host.endswith(".0")


def test_latencies_pair_each_remote_ban_with_its_origin() -> None:
    """Latency is remote time minus the origin's add, per host, for every other daemon."""
    origin = [
        _ban("add", "127.1.0.1", 10.0),
        _ban("add", "127.1.0.2", 20.0),
        {"event": "listening", "time": _stamp(1.0)},
    ]
    b = [_ban("remote", "127.1.0.1", 10.002), _ban("remote", "127.1.0.2", 20.010)]
    c = [_ban("remote", "127.1.0.1", 10.004), _ban("remote", "9.9.9.9", 30.0)]
    got = fleet_figures.latencies_ms(origin, [b, c])
    assert got == pytest.approx([2.0, 4.0, 10.0])


def test_percentile_is_nearest_rank() -> None:
    """Median and p99 of 1..100 (sorted) are the 50th-ish and 99th values."""
    values = [float(i) for i in range(1, 101)]
    assert fleet_figures.percentile(values, 0.5) in (50.0, 51.0)
    assert fleet_figures.percentile(values, 0.99) == 99.0
    assert fleet_figures.percentile([7.0], 0.99) == 7.0


@pytest.mark.parametrize("render", [fleet_figures.sensor_config, fleet_figures.echo_config])
def test_configurations_load_in_strict_mode(render: object, tmp_path: Path) -> None:
    """The generated service blocks are valid superd configuration."""
    from superd.config.load import load_configuration

    path = os.path.join(str(tmp_path), "svc")
    with open(path, "w") as f:
        f.write(render(4000))  # type: ignore[operator]
    assert len(load_configuration(path, strict=True).services) == 1
