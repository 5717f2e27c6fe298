"""
Issue 5: how long a SIGHUP reload of a 1,000-service configuration takes.

Each daemon gets its own 1,000 daytime services (superd on 29001-30000,
xinetd on 31001-32000), is started, and is sent SIGHUP after its file has
been rewritten with one attribute changed on every service (so every service
is kept but reconfigured).  The figure is the time from the signal to the
``Reconfigured: new=N old=M dropped=K`` line in the daemon's log; a daemon
that never writes that line within the timeout gets no figure.
"""

from __future__ import annotations

import os
import signal
import statistics
import time

from . import confgen, daemons, procs
from .context import Bench
from .report import Row, Target

__all__ = ["RELOAD_SERVICES", "fig_reload"]

RELOAD_SERVICES = 1000
SUPERD_RELOAD_BASE = 29000
XINETD_RELOAD_BASE = 31000
TIMEOUT = 20.0


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


def _superd(b: Bench) -> tuple[list[float], str]:
    work = os.path.join(b.paths.tmp, "reload-superd")
    os.makedirs(os.path.join(work, "conf"), exist_ok=True)
    os.makedirs(os.path.join(work, "state"), exist_ok=True)
    conf = os.path.join(work, "conf", "services")
    _write(conf, SUPERD_RELOAD_BASE, 0, work)
    argv = daemons.superd_argv(
        b.paths, os.path.join(work, "conf"), os.path.join(work, "state"), b.server_cpu
    )
    srv = procs.start("superd-reload", argv, os.path.join(work, "superd.log"), cwd=work)
    try:
        ports = [SUPERD_RELOAD_BASE + i for i in range(1, RELOAD_SERVICES + 1)]
        procs.wait_listening(srv, ports, timeout=60)
        times = _time_reloads(srv, conf, SUPERD_RELOAD_BASE, srv.log_path, b.reps)
        return (
            times,
            "" if times else "no 'Reconfigured' line after SIGHUP (reload not implemented?)",
        )
    finally:
        srv.stop()


def _xinetd(b: Bench) -> list[float]:
    work = os.path.join(b.paths.tmp, "reload-xinetd")
    os.makedirs(work, exist_ok=True)
    conf, log = os.path.join(work, "xinetd.conf"), os.path.join(work, "xinetd.log")
    _write(conf, XINETD_RELOAD_BASE, 0, work)
    argv = [*procs.pin_prefix(b.server_cpu), daemons.XINETD, "-dontfork", "-stayalive"]
    argv += ["-filelog", log, "-f", conf, "-pidfile", os.path.join(work, "pid")]
    srv = procs.start("xinetd-reload", argv, os.path.join(work, "stdout.log"))
    try:
        ports = [XINETD_RELOAD_BASE + i for i in range(1, RELOAD_SERVICES + 1)]
        procs.wait_listening(srv, ports, timeout=60)
        return _time_reloads(srv, conf, XINETD_RELOAD_BASE, log, b.reps)
    finally:
        srv.stop()


def fig_reload(b: Bench) -> None:
    """SIGHUP reload of 1,000 services, superd and xinetd."""
    ranges = [range(SUPERD_RELOAD_BASE + 1, SUPERD_RELOAD_BASE + RELOAD_SERVICES + 1)]
    ranges.append(range(XINETD_RELOAD_BASE + 1, XINETD_RELOAD_BASE + RELOAD_SERVICES + 1))
    busy = daemons.ports_in_use([p for r in ranges for p in r])
    if busy:
        raise RuntimeError(f"reload ports in use: {busy[:5]} ...")
    superd_times, why = _superd(b) if b.superd is not None else ([], b.na_reason())
    xinetd_times = _xinetd(b)
    med = {
        "superd": statistics.median(superd_times) if superd_times else None,
        "xinetd": statistics.median(xinetd_times) if xinetd_times else None,
    }
    b.report.rows.append(Row(f"SIGHUP reload of {RELOAD_SERVICES:,} services", "s", med, why))
    b.report.targets.append(
        Target(
            5,
            f"reload of {RELOAD_SERVICES:,} services (superd)",
            med["superd"],
            2.0,
            at_most=True,
            unit="s",
            why_na=why,
        )
    )
