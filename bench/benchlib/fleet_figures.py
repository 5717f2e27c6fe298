"""
The figures of issue 7: ban propagation across a fleet of three superd
sharing one ``redis-server``, and what ``--metrics`` costs on echo.

propagation: 1,000 distinct loopback sources (127.1.x.y) each connect once to
a SENSOR service of daemon A; each ban's latency is the time between A's
``ban``/``add`` event and the ``ban``/``remote`` event of daemon B and of C
(``time`` of the JSON events, RFC 3339: the three daemons share one clock).

metrics: two fresh superd with the same one-service echo configuration, one
started with ``--metrics``, measured interleaved; the cost is read from the
paired conn/s ratio, with the CPU per connection beside it.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
import urllib.request
from datetime import datetime
from typing import Any, Callable, Sequence

from . import daemons, procs
from .context import Bench, add_cpu_rows, errors_note, values
from .load import Sample, paired_ratio
from .report import Row, Target

__all__ = [
    "METRICS_PORT",
    "REDIS_PORT",
    "fig_metrics",
    "fig_propagation",
    "latencies_ms",
    "percentile",
    "sensor_config",
    "source_addresses",
]

REDIS_PORT = 26400
FLEET_PORTS = (26401, 26402, 26403)
ECHO_PORTS = {"plain": 26411, "metrics": 26412}
METRICS_PORT = 26413
BANS = 1000
Event = dict[str, Any]


def source_addresses(count: int) -> list[str]:
    """``count`` distinct loopback client addresses 127.1.x.y (y in 1..250)."""
    return [f"127.1.{i // 250}.{i % 250 + 1}" for i in range(count)]


def sensor_config(port: int) -> str:
    """A SENSOR service that bans every client for 10 minutes."""
    return (
        "service daytime\n{\n\tid = trap\n\ttype = INTERNAL UNLISTED\n\tflags = SENSOR\n"
        "\tsocket_type = stream\n\twait = no\n"
        f"\tport = {port}\n\tbind = 127.0.0.1\n\tcps = 0 0\n\tdeny_time = 10\n}}\n"
    )


def echo_config(port: int) -> str:
    return (
        "service echo\n{\n\ttype = INTERNAL UNLISTED\n\tsocket_type = stream\n\twait = no\n"
        f"\tport = {port}\n\tbind = 127.0.0.1\n\tcps = 0 0\n\tinstances = UNLIMITED\n}}\n"
    )


def _ban_times(events: Sequence[Event], action: str) -> dict[str, float]:
    return {
        e["peer_host"]: datetime.fromisoformat(e["time"]).timestamp()
        for e in events
        if e.get("event") == "ban" and e.get("action") == action and "peer_host" in e
    }


def latencies_ms(origin: Sequence[Event], others: Sequence[Sequence[Event]]) -> list[float]:
    """Sorted ms from each ban's ``add`` on the origin to its ``remote`` on every other."""
    added = _ban_times(origin, "add")
    return sorted(
        1000 * (t - added[host])
        for events in others
        for host, t in _ban_times(events, "remote").items()
        if host in added
    )


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    return sorted_values[round(fraction * (len(sorted_values) - 1))]


def _start_redis(b: Bench) -> procs.Server:
    redis = shutil.which("redis-server")
    if redis is None:
        raise RuntimeError("redis-server not installed")
    argv = [*procs.pin_prefix(b.server_cpu), redis, "--port", str(REDIS_PORT)]
    argv += ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    server = procs.start("redis", argv, os.path.join(b.paths.tmp, "redis.log"))
    procs.wait_listening(server, [REDIS_PORT])
    return server


def _wait_events(srv: procs.Server, want: int, action: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(_ban_times(procs.json_events(srv.log_path), action)) >= want:
            return
        time.sleep(0.2)


def _wait_loaded(srv: procs.Server, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(
            e.get("event") == "ban_store" and e.get("state") in ("loaded", "up")
            for e in procs.json_events(srv.log_path)
        ):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{srv.name} never reached the ban store: {srv.log_tail(3)}")


def _trip(port: int, sources: Sequence[str]) -> None:
    """Connect once from each source to the sensor, 2 ms apart."""
    for host in sources:
        with socket.socket() as s:
            s.bind((host, 0))
            s.settimeout(5)
            try:
                s.connect(("127.0.0.1", port))
                s.recv(10)
            except OSError:
                pass
        time.sleep(0.002)


def fig_propagation(b: Bench) -> None:
    """Issue 7: ban propagation latency over 1,000 bans, three superd, one redis-server."""
    # --quick (0.5 s measurements) is a smoke run: 100 bans show the figure works.
    count = BANS if b.loadgen.duration >= 1 else 100
    started: list[procs.Server] = []
    lat: list[float] = []
    why = b.na_reason()
    try:
        if not why:
            lat = _propagate(b, count, started)
    except RuntimeError as e:
        why = str(e).splitlines()[0]
    finally:
        for srv in reversed(started):
            srv.stop()
    label = f"ban propagation, 3 superd + redis ({count:,} bans)"
    note = f"{len(lat):,} of {2 * count:,} remote bans seen" if lat else why
    for name, value in (("median", 0.5), ("p99", 0.99)):
        got = percentile(lat, value) if lat else None
        b.report.rows.append(Row(f"{label}: {name}", "ms", {"superd": got}, note))


def _propagate(b: Bench, count: int, started: list[procs.Server]) -> list[float]:
    started.append(_start_redis(b))
    url = f"redis://127.0.0.1:{REDIS_PORT}"
    fleet = []
    for i, port in enumerate(FLEET_PORTS):
        srv = daemons.start_superd_on(
            b.paths,
            f"superd-fleet{i}",
            sensor_config(port),
            [port],
            b.server_cpu,
            ["--ban-store", url],
        )
        started.append(srv)
        fleet.append(srv)
    for srv in fleet:
        _wait_loaded(srv)
    _trip(FLEET_PORTS[0], source_addresses(count))
    for srv in fleet[1:]:
        _wait_events(srv, count, "remote", timeout=30)
    events = [procs.json_events(srv.log_path) for srv in fleet]
    return latencies_ms(events[0], events[1:])


def _metrics_served() -> bool:
    url = f"http://127.0.0.1:{METRICS_PORT}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return b"superd_connections_accepted_total" in reply.read()
    except OSError:
        return False


def fig_metrics(b: Bench) -> None:
    """Issue 7: echo conn/s and CPU per connection with ``--metrics`` vs without."""
    started: list[procs.Server] = []
    why, cost = b.na_reason(), None
    try:
        if not why:
            for name, port in ECHO_PORTS.items():
                extra = ["--metrics", f"tcp:{METRICS_PORT}:interface=127.0.0.1"]
                srv = daemons.start_superd_on(
                    b.paths,
                    f"superd-{name}",
                    echo_config(port),
                    [port],
                    b.server_cpu,
                    extra if name == "metrics" else [],
                )
                started.append(srv)
            cost = _metrics_rows(b, started)
            if not _metrics_served():
                why = "the metrics endpoint did not serve superd_connections_accepted_total"
    finally:
        for srv in started:
            srv.stop()
    b.report.targets.append(
        Target(7, "echo with --metrics / without (cost <= 5 %)", cost, 0.95, why_na=why)
    )


def _metrics_rows(b: Bench, started: list[procs.Server]) -> float | None:
    """Rows for both daemons; returns the paired conn/s ratio metrics / plain."""
    plain, metered = started
    runs: dict[str, Callable[[], Sample] | None] = {
        "superd": lambda: b.loadgen.sample("echo", ECHO_PORTS["plain"], plain.pid, conc=32),
        "superd --metrics": lambda: b.loadgen.sample(
            "echo", ECHO_PORTS["metrics"], metered.pid, conc=32
        ),
    }
    s = b.interleave(runs)
    b.report.rows.append(
        Row(
            "echo conn/s, one-service superd, no --metrics",
            "conn/s",
            {"superd": s["superd"].rate},
            errors_note(s),
        )
    )
    b.report.rows.append(
        Row("echo conn/s, same with --metrics", "conn/s", {"superd": s["superd --metrics"].rate})
    )
    add_cpu_rows(b, "no metrics", {"superd": s["superd"]})
    add_cpu_rows(b, "with --metrics", {"superd": s["superd --metrics"]})
    cpu = values(s, lambda x: x.cpu_per_conn_us)
    if cpu["superd"] and cpu["superd --metrics"]:
        extra = 100 * (cpu["superd --metrics"] / cpu["superd"] - 1)
        b.report.notes.append(f"--metrics: CPU per echo connection {extra:+.1f} %")
    return paired_ratio(s["superd --metrics"], s["superd"])
