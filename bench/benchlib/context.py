"""
What every benchmark figure shares: the running servers, the load generator,
interleaved repetitions, and small helpers to hold connections open, probe
for refusals and turn series into report values.
"""

from __future__ import annotations

import signal
import subprocess
import time
from dataclasses import dataclass, field
from typing import Callable

from . import confgen, daemons, procs
from .load import Loadgen, Sample, Series, paired_ratio
from .report import Report, Row

__all__ = [
    "BANNED_SOURCE",
    "GOOD_SOURCE",
    "HELD_CONNECTIONS",
    "Bench",
    "add_cpu_rows",
    "errors_note",
    "hold",
    "kept",
    "rate_of",
    "refused",
    "stop",
    "values",
    "wait_fds",
    "warm_up",
]

GOOD_SOURCE = "127.0.0.2"
BANNED_SOURCE = "127.0.0.3"
HELD_CONNECTIONS = 1000


@dataclass
class Bench:
    """Everything a figure needs: load generator, servers, report."""

    loadgen: Loadgen
    reps: int
    report: Report
    paths: daemons.Paths
    server_cpu: int | None
    superd: procs.Server | None
    xinetd: procs.Server | None
    spawnloop: procs.Server | None = None
    pyloop: procs.Server | None = None
    superd_missing: str = ""
    # Helper processes figures start once and keep (upstreams); main stops them.
    helpers: list[procs.Server] = field(default_factory=list)
    # Echo peers by column name (twinetd, echoloop), started by the echo figure.
    peers: dict[str, procs.Server] = field(default_factory=dict)
    # Why a peer is missing, by column name.
    peers_missing: dict[str, str] = field(default_factory=dict)
    # superd's RSS right after it started on the bench configuration (MiB).
    start_rss: float | None = None

    @property
    def pinned(self) -> bool:
        """Whether this run pins servers and load generators (--pin)."""
        return self.server_cpu is not None

    def port(self, server: str, offset: int) -> int:
        fixed = {
            "spawnloop": daemons.SPAWNLOOP_PORT,
            "pyloop": daemons.PYLOOP_PORT,
            "twinetd": daemons.TWISTD_INETD_PORT,
            "echoloop": daemons.ECHOLOOP_PORT,
        }
        if server in fixed:
            return fixed[server]
        base = confgen.SUPERD_BASE if server == "superd" else confgen.XINETD_BASE
        return base + offset

    def server(self, name: str) -> procs.Server | None:
        fixed = {
            "superd": self.superd,
            "xinetd": self.xinetd,
            "spawnloop": self.spawnloop,
            "pyloop": self.pyloop,
        }
        return fixed[name] if name in fixed else self.peers.get(name)

    def runner(
        self, name: str, mode: str, offset: int, conc: int = 1, bind: str | None = None
    ) -> Callable[[], Sample] | None:
        """A callable taking one sample against ``name``, or None if it is not running."""
        srv = self.server(name)
        if srv is None or not srv.alive():
            return None
        port, netns = self.port(name, offset), srv.netns
        return lambda: self.loadgen.sample(
            mode, port, srv.pid, conc=conc, bind=bind, netns=netns
        )

    def interleave(self, runs: dict[str, Callable[[], Sample] | None]) -> dict[str, Series]:
        series = {name: Series() for name in runs}
        for _ in range(self.reps):
            for name, run in runs.items():
                if run is not None:
                    series[name].samples.append(run())
        return series

    def na_reason(self) -> str:
        if self.superd is None:
            return f"superd not running: {self.superd_missing}"
        return "" if self.superd.alive() else "superd died during the run"


def warm_up(b: Bench) -> None:
    """Exercise each daemon's echo and daytime paths once before any figure.

    A freshly started Python daemon pays first-connection costs (imports,
    caches, allocator growth) that would otherwise land in the first figure.
    """
    short = Loadgen(b.loadgen.binary, b.loadgen.cpu, 1.0, 0.0)
    for name in ("superd", "xinetd"):
        srv = b.server(name)
        if srv is not None and srv.alive():
            short.sample("echo", b.port(name, 1), None, conc=32)
            short.sample("read", b.port(name, 2), None, conc=32)


def wait_fds(pid: int, at_least: int, timeout: float = 10.0) -> int:
    """Wait until ``pid`` holds ``at_least`` descriptors (it has accepted them all)."""
    deadline = time.monotonic() + timeout
    while (n := procs.fd_count(pid)) < at_least and time.monotonic() < deadline:
        time.sleep(0.05)
    return n


def errors_note(series: dict[str, Series]) -> str:
    bad = {name: s.errors for name, s in series.items() if s.errors}
    return ", ".join(f"{n}: {e} failed conns" for n, e in bad.items())


def values(
    series: dict[str, Series], key: Callable[[Series], float | None]
) -> dict[str, float | None]:
    return {name: key(s) if s.samples else None for name, s in series.items()}


def add_cpu_rows(b: Bench, what: str, series: dict[str, Series]) -> None:
    """CPU per connection and the conn/s it implies for one fully used core.

    CPU time comes from /proc and barely moves when other work shares the
    machine, so the implied rate is the steadiest comparison on a busy host.
    """
    cpu = values(series, lambda x: x.cpu_per_conn_us)
    b.report.rows.append(Row(f"  {what}: CPU per conn", "us", cpu))
    capacity = {n: 1e6 / v if v else None for n, v in cpu.items()}
    b.report.rows.append(Row(f"  {what}: conn/s one core allows (1/CPU)", "conn/s", capacity))


def rate_of(series: Series) -> float | None:
    return series.rate


def hold(b: Bench, port: int, count: int) -> subprocess.Popen[str]:
    """Open ``count`` idle connections to ``port``; returns once they are open."""
    argv = b.loadgen.argv("hold", port, conc=count, duration=600)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith(f"held={count} "):
        stop(proc)
        raise RuntimeError(f"could not hold {count} connections: {line!r}")
    return proc


def stop(proc: subprocess.Popen[str]) -> str:
    """SIGTERM the given PID and return what it printed."""
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=10)
    return out or ""


def refused(b: Bench, port: int, source: str) -> bool:
    """True when a short daytime run from ``source`` gets no data at all."""
    probe = Loadgen(b.loadgen.binary, b.loadgen.cpu, 0.3, 0.0)
    return probe.sample("read", port, None, conc=1, bind=source).conns == 0


def kept(num: dict[str, Series], den: dict[str, Series]) -> dict[str, float | None]:
    """Per column, the median paired ratio num/den as a percentage."""
    return {k: None if (r := paired_ratio(num[k], den[k])) is None else 100 * r for k in den}
