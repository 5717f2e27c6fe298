"""
Issue 16's scale figures, reported without a goal: what superd costs with
10,000 idle connections, and with 100,000-entry address lists.

Each starts daemons of its own (one-service configurations on ports
26420-26424), so the RSS and start time read are those of that load alone.
"""

from __future__ import annotations

import os
import resource
import time
from typing import Callable

from . import confgen, daemons, procs
from .context import GOOD_SOURCE, Bench, errors_note, hold, refused, stop, values, wait_fds
from .load import Sample, Series, capacity, paired_ratio
from .report import Row

__all__ = [
    "IDLE_CONNECTIONS",
    "LISTS_100K",
    "NOFILE_WANTED",
    "fig_idle_10k",
    "fig_lists_100k",
    "lists_services",
]

IDLE_CONNECTIONS = 10_000
IDLE_PORT = 26420
# Descriptors the daemon and the client need for the idle figure, with room
# for everything else they hold; bench/run raises its limit to this.
NOFILE_WANTED = IDLE_CONNECTIONS + 2048
LISTS_100K = 100_000
# --quick (0.5 s measurements) is a smoke run: lists small enough to start.
LISTS_QUICK = 10_000
# superd's plain and listed daytime on 26421/26422, xinetd's on 26423/26424.
LISTS_SUPERD_BASE = 26420
LISTS_XINETD_BASE = 26422
LISTS_PORTS = (26421, 26422, 26423, 26424)
# Seconds a daemon gets to listen on the 100,000-entry configuration.
LISTS_START_TIMEOUT = 120.0
# Seconds between listening and reading the RSS (late allocations settle).
SETTLE = 1.0


def _discard_config(port: int, log_dir: str) -> str:
    discard = confgen.Service(
        "discard",
        0,
        (("type", "INTERNAL UNLISTED"), ("socket_type", "stream"), ("wait", "no")),
    )
    return confgen.render([discard], port, log_dir=log_dir)


def _raise_daemon_nofile(pid: int) -> int:
    """Raise ``pid``'s soft descriptor limit toward NOFILE_WANTED (root may raise
    the hard one); returns the soft limit in force."""
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    new = procs.nofile_limits(soft, hard, NOFILE_WANTED, os.geteuid() == 0)
    if new != (soft, hard):
        resource.prlimit(pid, resource.RLIMIT_NOFILE, new)
    return new[0]


def fig_idle_10k(b: Bench) -> None:
    """superd's RSS per idle connection, holding 10,000 on its discard service."""
    label = f"superd holding {IDLE_CONNECTIONS:,} idle discard conns"
    if b.superd is None:
        b.report.rows.append(Row(f"{label}: RSS", "MiB", {"superd": None}, b.na_reason()))
        return
    client = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if client != resource.RLIM_INFINITY and client < NOFILE_WANTED:
        why = f"descriptor limit {client} < {NOFILE_WANTED} (run as root)"
        b.report.rows.append(Row(f"{label}: RSS", "MiB", {"superd": None}, why))
        return
    work = os.path.join(b.paths.tmp, "superd-idle")
    conf = _discard_config(IDLE_PORT, work)
    srv = daemons.start_superd_on(b.paths, "superd-idle", conf, [IDLE_PORT], b.server_cpu)
    try:
        limit = _raise_daemon_nofile(srv.pid)
        time.sleep(SETTLE)
        before = procs.rss_kib(srv.pid)
        t0 = time.monotonic()
        holder = hold(b, IDLE_PORT, IDLE_CONNECTIONS)
        try:
            fds = wait_fds(srv.pid, IDLE_CONNECTIONS, timeout=60)
            accepted = time.monotonic() - t0
            time.sleep(SETTLE)
            after = procs.rss_kib(srv.pid)
        finally:
            stop(holder)
    finally:
        srv.stop()
    note = f"{fds:,} fds open (limit {limit:,}); RSS {before / 1024:.1f} MiB before"
    held: dict[str, float | None] = {"superd": after / 1024}
    b.report.rows.append(Row(f"{label}: RSS", "MiB", held, note))
    per_conn = (after - before) / IDLE_CONNECTIONS if fds >= IDLE_CONNECTIONS else None
    b.report.rows.append(Row("  RSS per idle connection", "KiB", {"superd": per_conn}))
    b.report.rows.append(Row("  time to open and accept them all", "s", {"superd": accepted}))


def lists_services(size: int) -> list[confgen.Service]:
    """A plain daytime (offset 1) and one with ``size``-entry only_from and
    no_access lists (offset 2), as in the bench configuration's lists figure."""
    listed = next(s for s in confgen.bench_services(size) if s.ident == "daytime-lists")
    plain = next(s for s in confgen.bench_services(1) if s.ident == "daytime")
    return [
        confgen.Service(plain.name, 1, plain.attrs),
        confgen.Service(listed.name, 2, listed.attrs, listed.extra),
    ]


def _list_size(b: Bench) -> int:
    return LISTS_100K if b.loadgen.duration >= 1 else LISTS_QUICK


def _start_lists(b: Bench, name: str) -> tuple[procs.Server, float | None, str]:
    work = os.path.join(b.paths.tmp, f"{name}-lists")
    os.makedirs(work, exist_ok=True)
    services = lists_services(_list_size(b))
    timeout = LISTS_START_TIMEOUT
    if name == "superd":
        base = LISTS_SUPERD_BASE
        os.makedirs(os.path.join(work, "conf"), exist_ok=True)
        os.makedirs(os.path.join(work, "state"), exist_ok=True)
        conf = os.path.join(work, "conf", "lists")
        argv = daemons.superd_argv(
            b.paths, os.path.dirname(conf), os.path.join(work, "state"), b.server_cpu
        )
    else:
        base = LISTS_XINETD_BASE
        conf = os.path.join(work, "xinetd.conf")
        argv = daemons.xinetd_argv(conf, work, b.server_cpu)
    with open(conf, "w") as f:
        f.write(confgen.render(services, base, log_dir=work))
    ports = [s.port(base) for s in services]
    log = os.path.join(work, f"{name}.out")
    return procs.start_timed(f"{name}-lists", argv, log, ports, timeout, cwd=work)


def fig_lists_100k(b: Bench) -> None:
    """Start time, RSS and daytime CPU per connection with 100,000-entry lists."""
    busy = daemons.ports_in_use(list(LISTS_PORTS))
    if busy:
        raise RuntimeError(f"lists-100k ports in use: {busy}")
    names = ("superd", "xinetd") if b.superd is not None else ("xinetd",)
    started = {n: _start_lists(b, n) for n in names}
    try:
        _measure_lists(b, started)
    finally:
        for srv, _, _ in started.values():
            srv.stop()


def _measure_lists(b: Bench, started: dict[str, tuple[procs.Server, float | None, str]]) -> None:
    n = f"{_list_size(b):,}"
    why = {k: w for k, (_, secs, w) in started.items() if secs is None}
    if b.superd is None:
        why["superd"] = b.na_reason()
    b.report.rows.append(
        Row(
            f"{n}-entry only_from+no_access: start until listening",
            "s",
            {k: secs for k, (_, secs, _) in started.items()},
            "; ".join(f"{k}: {w}" for k, w in why.items()),
        )
    )
    up = {k: srv for k, (srv, secs, _) in started.items() if secs is not None}
    time.sleep(SETTLE if up else 0)
    rss = {k: procs.rss_kib(srv.pid) / 1024 for k, srv in up.items()}
    b.report.rows.append(Row(f"  RSS with {n}-entry lists", "MiB", dict(rss)))
    runs: dict[str, Callable[[], Sample] | None] = {}
    for k, srv in up.items():
        base = LISTS_SUPERD_BASE if k == "superd" else LISTS_XINETD_BASE
        for offset, tag in ((1, ""), (2, " lists")):
            port = base + offset
            runs[k + tag] = _daytime(b, port, srv.pid)
    s = b.interleave(runs)
    plain = {k: s.get(k, Series()) for k in ("superd", "xinetd")}
    listed = {k: s.get(k + " lists", Series()) for k in ("superd", "xinetd")}
    unenforced = [k for k in up if not refused(b, _lists_port(k), GOOD_SOURCE)]
    note = "; ".join(f"{k} served 127.0.0.2: LISTS NOT ENFORCED" for k in unenforced)
    b.report.rows.append(
        Row(
            f"  daytime CPU per conn, {n}-entry lists",
            "us",
            values(listed, lambda x: x.cpu_per_conn_us),
            note or errors_note(listed),
        )
    )
    b.report.rows.append(
        Row("  daytime CPU per conn, same daemon, no lists", "us",
            values(plain, lambda x: x.cpu_per_conn_us))
    )
    kept = {k: paired_ratio(listed[k], plain[k], capacity) for k in plain}
    b.report.rows.append(
        Row(
            "  kept with lists (1/CPU, lists / no lists)",
            "%",
            {k: None if v is None else 100 * v for k, v in kept.items()},
        )
    )


def _lists_port(name: str) -> int:
    return (LISTS_SUPERD_BASE if name == "superd" else LISTS_XINETD_BASE) + 2


def _daytime(b: Bench, port: int, pid: int) -> Callable[[], Sample]:
    return lambda: b.loadgen.sample("read", port, pid, conc=32)
