"""
Issues 5 and 16: a 1,000-service configuration: how long a daemon takes to
start on it, its RSS then, and how long a SIGHUP reload takes.

Each daemon gets its own 1,000 daytime services (superd on 29001-30000,
xinetd on 31001-32000) and is timed from its start until all 1,000 ports
listen; its RSS is read shortly after.  It is then sent SIGHUP after its file
has been rewritten with one attribute changed on every service (so every
service is kept but reconfigured).  The reload figure is the time from the
signal to the ``Reconfigured: new=N old=M dropped=K`` line in the daemon's
log; a daemon that never writes that line within the timeout gets no figure.
"""

from __future__ import annotations

import os
import signal
import statistics
import time
from dataclasses import dataclass, field

from . import confgen, daemons, procs
from .context import Bench
from .report import Row, Target

__all__ = ["RELOAD_SERVICES", "fig_reload"]

RELOAD_SERVICES = 1000
SUPERD_RELOAD_BASE = 29000
XINETD_RELOAD_BASE = 31000
TIMEOUT = 20.0
START_TIMEOUT = 60.0
# Seconds between listening and reading the RSS (late allocations settle).
SETTLE = 1.0


def _services(variant: int) -> list[confgen.Service]:
    """1,000 daytime services; ``variant`` flips ``instances`` on all of them."""
    attrs = (
        ("type", "INTERNAL UNLISTED"),
        ("socket_type", "stream"),
        ("wait", "no"),
        ("instances", str(100 + variant)),
    )
    return [
        confgen.Service("daytime", i, (("id", f"daytime-{i}"), *attrs))
        for i in range(1, RELOAD_SERVICES + 1)
    ]


def _write(path: str, base: int, variant: int, log_dir: str) -> None:
    with open(path + ".tmp", "w") as f:
        f.write(confgen.render(_services(variant), base, log_dir=log_dir))
    os.replace(path + ".tmp", path)


def _count(path: str, needle: bytes) -> int:
    with open(path, "rb") as f:
        return f.read().count(needle)


def _time_reloads(srv: procs.Server, conf: str, base: int, log: str, reps: int) -> list[float]:
    """Seconds from SIGHUP to each new ``Reconfigured`` line; stops at the first timeout."""
    times: list[float] = []
    for rep in range(1, reps + 1):
        before = _count(log, b"Reconfigured")
        _write(conf, base, rep % 2, os.path.dirname(log))
        t0 = time.monotonic()
        os.kill(srv.pid, signal.SIGHUP)
        while _count(log, b"Reconfigured") <= before:
            if time.monotonic() - t0 > TIMEOUT or not srv.alive():
                return times
            time.sleep(0.01)
        times.append(time.monotonic() - t0)
    return times


@dataclass
class _Run:
    """One daemon on 1,000 services: start time, RSS once listening, reload times."""

    start: float | None = None
    rss: float | None = None
    reloads: list[float] = field(default_factory=list)
    why: str = ""


def _run(
    b: Bench, name: str, argv: list[str], conf: str, base: int, log: str, work: str
) -> _Run:
    ports = [base + i for i in range(1, RELOAD_SERVICES + 1)]
    srv, secs, why = procs.start_timed(
        name, argv, os.path.join(work, f"{name}.out"), ports, START_TIMEOUT, cwd=work
    )
    try:
        run = _Run(start=secs, why=why)
        if secs is None:
            return run
        time.sleep(SETTLE)
        run.rss = procs.rss_kib(srv.pid) / 1024
        run.reloads = _time_reloads(srv, conf, base, log, b.reps)
        if not run.reloads:
            run.why = "no 'Reconfigured' line after SIGHUP (reload not implemented?)"
        return run
    finally:
        srv.stop()


def _superd(b: Bench) -> _Run:
    work = os.path.join(b.paths.tmp, "reload-superd")
    os.makedirs(os.path.join(work, "conf"), exist_ok=True)
    os.makedirs(os.path.join(work, "state"), exist_ok=True)
    conf = os.path.join(work, "conf", "services")
    _write(conf, SUPERD_RELOAD_BASE, 0, work)
    argv = daemons.superd_argv(
        b.paths, os.path.join(work, "conf"), os.path.join(work, "state"), b.server_cpu
    )
    # twistd's log is its stdout: the "Reconfigured" line is read there.
    log = os.path.join(work, "superd-reload.out")
    return _run(b, "superd-reload", argv, conf, SUPERD_RELOAD_BASE, log, work)


def _xinetd(b: Bench) -> _Run:
    work = os.path.join(b.paths.tmp, "reload-xinetd")
    os.makedirs(work, exist_ok=True)
    conf = os.path.join(work, "xinetd.conf")
    _write(conf, XINETD_RELOAD_BASE, 0, work)
    argv = daemons.xinetd_argv(conf, work, b.server_cpu)
    log = os.path.join(work, "xinetd.log")
    return _run(b, "xinetd-reload", argv, conf, XINETD_RELOAD_BASE, log, work)


def fig_reload(b: Bench) -> None:
    """1,000 services, superd and xinetd: start time, RSS, SIGHUP reload time."""
    ranges = [range(SUPERD_RELOAD_BASE + 1, SUPERD_RELOAD_BASE + RELOAD_SERVICES + 1)]
    ranges.append(range(XINETD_RELOAD_BASE + 1, XINETD_RELOAD_BASE + RELOAD_SERVICES + 1))
    busy = daemons.ports_in_use([p for r in ranges for p in r])
    if busy:
        raise RuntimeError(f"reload ports in use: {busy[:5]} ...")
    sd = _superd(b) if b.superd is not None else _Run(why=b.na_reason())
    xi = _xinetd(b)
    runs = {"superd": sd, "xinetd": xi}
    n = f"{RELOAD_SERVICES:,}"
    b.report.rows.append(
        Row(f"{n} services: start until all listen", "s", {k: r.start for k, r in runs.items()},
            "; ".join(f"{k}: {r.why}" for k, r in runs.items() if r.start is None and r.why))
    )
    b.report.rows.append(Row(f"{n} services: RSS once listening", "MiB",
                             {k: r.rss for k, r in runs.items()}))
    med = {k: statistics.median(r.reloads) if r.reloads else None for k, r in runs.items()}
    b.report.rows.append(Row(f"SIGHUP reload of {n} services", "s", med, sd.why))
    b.report.targets.append(
        Target(
            5,
            f"reload of {n} services (superd)",
            med["superd"],
            2.0,
            at_most=True,
            unit="s",
            why_na=sd.why,
        )
    )
