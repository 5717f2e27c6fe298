"""
The benchmark figures of issues 2, 3, 5 and 16: each runs the same load
against every server in one run, interleaving the repetitions (A B C A B C
...) so slow drift on the machine touches every server alike, and adds rows
and targets to the report.  Issue 4's figures are in ``access_figures``, the
scale figures in ``scale_figures``, issue 13's latency under a UDP flood in
``latency_figure``.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import time
from typing import Callable

from . import confgen, daemons, procs
from .access_figures import fig_fairness, fig_lists
from .context import (
    HELD_CONNECTIONS,
    Bench,
    add_cpu_rows,
    errors_note,
    hold,
    kept,
    stop,
    values,
    wait_fds,
    warm_up,
)
from .fleet_figures import fig_metrics, fig_propagation
from .latency_figure import fig_latency
from .load import Loadgen, Sample, Series, capacity, paired_ratio
from .reload_figure import fig_reload
from .report import Row, Target
from .scale_figures import fig_idle_10k, fig_lists_100k
from .tls_figures import fig_redirect, fig_tls

__all__ = ["ECHO_PEERS", "FIGURES", "SPAWN_SERVERS", "Bench", "warm_up"]

# The spawn figures' columns: the daemons, then the C and Python floors.
SPAWN_SERVERS = ("superd", "xinetd", "spawnloop", "pyloop")
# The echo figure's extra columns: plain twistd inetd and the C epoll echo loop.
ECHO_PEERS = ("twinetd", "echoloop")


def _start_echo_peers(b: Bench) -> None:
    """Plain twistd inetd and the C echo loop, started once; a failure is a reason, not a crash."""
    starters = {
        "twinetd": daemons.start_twistd_inetd,
        "echoloop": daemons.start_echoloop,
    }
    for name, start in starters.items():
        if name in b.peers or name in b.peers_missing:
            continue
        try:
            b.peers[name] = start(b.paths, b.server_cpu)
        except (OSError, RuntimeError) as e:
            b.peers_missing[name] = str(e).splitlines()[0] if str(e) else type(e).__name__
            b.report.notes.append(f"{name} did not start: {e}")
            continue
        # A fresh interpreter pays its first connections' costs here, not in the figure.
        short = Loadgen(b.loadgen.binary, b.loadgen.cpu, 1.0, 0.0)
        srv = b.peers[name]
        short.sample("echo", b.port(name, 1), None, conc=32, netns=srv.netns)


def fig_echo(b: Bench) -> None:
    """Issues 2 and 16: echo conn/s, 64 bytes, 32 concurrent, with plain twistd
    inetd (Twisted's own echo) and the C epoll echo loop as peers."""
    _start_echo_peers(b)
    names = ("superd", "xinetd", *ECHO_PEERS)
    s = b.interleave({n: b.runner(n, "echo", 1, conc=32) for n in names})
    b.report.rows.append(
        Row("echo conn/s (64 B, 32 conc)", "conn/s", values(s, lambda x: x.rate), errors_note(s))
    )
    add_cpu_rows(b, "echo", s)
    na = b.na_reason()
    r = paired_ratio(s["superd"], s["xinetd"])
    b.report.targets.append(Target(2, "echo conn/s: superd / xinetd", r, 3.0, why_na=na))
    peers = (
        ("twinetd", "echo conn/s: superd / plain twistd inetd", 1.0),
        ("echoloop", "echo conn/s: superd / C epoll echo (on the way)", 0.7),
    )
    for peer, text, goal in peers:
        why = na or b.peers_missing.get(peer, "")
        ratio = paired_ratio(s["superd"], s[peer])
        b.report.targets.append(Target(16, text, ratio, goal, why_na=why))
    why = na or b.peers_missing.get("twinetd", "")
    b.report.targets.append(
        Target(
            16,
            "echo, 1/CPU: superd / plain twistd inetd",
            paired_ratio(s["superd"], s["twinetd"], capacity),
            None,
            why_na=why,
        )
    )


def fig_daytime(b: Bench) -> None:
    """Issues 2 and 16: daytime conn/s and server CPU per connection (xinetd
    answers daytime in-process too, so CPU per connection compares like with like)."""
    runs = {n: b.runner(n, "read", 2, conc=32) for n in ("superd", "xinetd")}
    s = b.interleave(runs)
    b.report.rows.append(
        Row("daytime conn/s (32 conc)", "conn/s", values(s, lambda x: x.rate), errors_note(s))
    )
    add_cpu_rows(b, "daytime", s)
    b.report.targets.append(
        Target(
            16,
            "daytime CPU per conn: superd / xinetd",
            paired_ratio(s["superd"], s["xinetd"], lambda x: x.cpu_per_conn_us),
            1.0,
            at_most=True,
            why_na=b.na_reason(),
        )
    )


def fig_chargen(b: Bench) -> None:
    """(c) issue 2: chargen MB/s over one connection."""
    runs = {n: b.runner(n, "stream", 3) for n in ("superd", "xinetd")}
    s = b.interleave(runs)
    b.report.rows.append(
        Row("chargen over one connection", "MB/s", values(s, lambda x: x.mbps), errors_note(s))
    )
    r = paired_ratio(s["superd"], s["xinetd"], lambda x: x.mbps)
    b.report.targets.append(
        Target(2, "chargen MB/s: superd / xinetd", r, 10.0, why_na=b.na_reason())
    )


def fig_spawn(b: Bench) -> None:
    """(d) issue 3: spawned /bin/cat per connection, 64-byte echo, 16 concurrent.

    Beside superd and xinetd run the two floors: the C accept-and-posix_spawn
    loop of the issue's target and the same loop in Python (bench/pyspawnloop.py),
    whose ratios are informational: they show where any Python inetd tops out.
    """
    _start_floors(b)
    runs = {n: b.runner(n, "echo", 5, conc=16) for n in SPAWN_SERVERS}
    s = b.interleave(runs)
    b.report.rows.append(
        Row(
            "spawned /bin/cat conn/s (16 conc)",
            "conn/s",
            values(s, lambda x: x.rate),
            errors_note(s),
        )
    )
    add_cpu_rows(b, "spawn, server+children", s)
    na = b.na_reason()
    # Issue 3's goals, restated unpinned by issue 16 (which raises the C-loop one).
    for text, other, goal in (("xinetd", "xinetd", 1.2), ("C posix_spawn loop", "spawnloop", 0.9)):
        b.report.targets.append(
            Target(
                16,
                f"spawned cat: superd / {text}",
                paired_ratio(s["superd"], s[other]),
                goal,
                why_na=na,
            )
        )
    _floor_targets(b, s, "")


def _start_floors(b: Bench) -> None:
    """The C and Python spawn loops, started once and kept for later spawn figures."""
    if b.spawnloop is None:
        b.spawnloop = daemons.start_spawnloop(b.paths, b.server_cpu)
    if b.pyloop is None:
        b.pyloop = daemons.start_pyloop(b.paths, b.server_cpu)


def _floor_targets(b: Bench, s: dict[str, Series], view: str, what: str = "spawned cat") -> None:
    """Informational ratios (no goal in the issues) placing the Python floor."""
    pairs = (
        ("Python floor / xinetd", "pyloop", "xinetd", ""),
        ("Python floor / C loop", "pyloop", "spawnloop", ""),
        ("superd / Python floor", "superd", "pyloop", b.na_reason()),
    )
    for text, num, den, na in pairs:
        label = f"{what}{view}: {text}"
        b.report.targets.append(Target(3, label, paired_ratio(s[num], s[den]), None, why_na=na))


def fig_spawn_pinned(b: Bench) -> None:
    """Issue 3's old view, secondary: the spawn figure with every server (and so
    every child it spawns) pinned to the first CPU and the load generator to the
    second, restored to all CPUs afterwards.

    The issues' targets are judged unpinned (the spawn figure); here exec and
    exit of the children share the server's core, which compresses every
    ratio toward the C floor, so its ratios are informational.  Under --pin
    the whole run is pinned and this figure would repeat spawn.
    """
    cpus = sorted(os.sched_getaffinity(0))
    why = ""
    if b.pinned:
        why = "the whole run is pinned (--pin): see the spawn figure"
    elif len(cpus) < 2:
        why = "fewer than 2 CPUs"
    if why:
        b.report.notes.append(f"spawn-pinned skipped: {why}")
        return
    _start_floors(b)
    servers = [srv for n in SPAWN_SERVERS if (srv := b.server(n)) and srv.alive()]
    for srv in servers:
        procs.set_affinity(srv.pid, {cpus[0]})
    unpinned_load = b.loadgen
    b.loadgen = dataclasses.replace(b.loadgen, cpu=cpus[1])
    try:
        s = b.interleave({n: b.runner(n, "echo", 5, conc=16) for n in SPAWN_SERVERS})
    finally:
        b.loadgen = unpinned_load
        for srv in servers:
            if srv.alive():
                procs.unpin(srv.pid)
    label = f"spawned /bin/cat conn/s, PINNED (CPU {cpus[0]}; load {cpus[1]})"
    b.report.rows.append(Row(label, "conn/s", values(s, lambda x: x.rate), errors_note(s)))
    add_cpu_rows(b, "pinned spawn", s)
    na = b.na_reason()
    for text, other in (("xinetd", "xinetd"), ("C posix_spawn loop", "spawnloop")):
        ratio = paired_ratio(s["superd"], s[other])
        label = f"spawn, pinned view: superd / {text}"
        b.report.targets.append(Target(3, label, ratio, None, why_na=na))


def fig_spawn_tiny(b: Bench) -> None:
    """Issue 3, informational: the spawn figure with a child that costs next to nothing.

    bench/tinycat.c is cat without a C library (static, -nostdlib): its exec
    skips the dynamic loader, whose CPUID-based cache detection a virtual
    machine traps (on the machines this was written on, ~0.7 ms of the ~1.1 ms
    each /bin/cat costs).  Every server pays that for /bin/cat alike, so it
    dilutes their differences; with tinycat what is left is each server's own
    work plus the kernel's clone, exec and exit.  The floors are restarted on
    tinycat for this figure and on /bin/cat again for any later one.
    """
    _stop_floors(b)
    tinycat = os.path.join(b.paths.build, "tinycat")
    b.spawnloop = daemons.start_spawnloop(b.paths, b.server_cpu, tinycat)
    b.pyloop = daemons.start_pyloop(b.paths, b.server_cpu, tinycat)
    try:
        s = b.interleave({n: b.runner(n, "echo", 12, conc=16) for n in SPAWN_SERVERS})
    finally:
        _stop_floors(b)
    label = "spawned tinycat (no libc) conn/s (16 conc)"
    b.report.rows.append(Row(label, "conn/s", values(s, lambda x: x.rate), errors_note(s)))
    add_cpu_rows(b, "tinycat, server+children", s)
    na = b.na_reason()
    for text, other in (("xinetd", "xinetd"), ("C posix_spawn loop", "spawnloop")):
        ratio = paired_ratio(s["superd"], s[other])
        b.report.targets.append(
            Target(3, f"spawned tinycat: superd / {text}", ratio, None, why_na=na)
        )
    _floor_targets(b, s, "", what="spawned tinycat")


def _stop_floors(b: Bench) -> None:
    """Stop the spawn floors if they run; ``_start_floors`` starts them on /bin/cat."""
    for srv in (b.spawnloop, b.pyloop):
        if srv is not None:
            srv.stop()
    b.spawnloop = b.pyloop = None


def fig_idle(b: Bench) -> None:
    """(e) issue 3: the spawn figure while superd holds 1,000 idle connections."""
    run = b.runner("superd", "echo", 5, conc=16)
    plain, held, fds = Series(), Series(), []
    for _ in range(b.reps if run else 0):
        assert run is not None and b.superd is not None
        plain.samples.append(run())
        holder = hold(b, b.port("superd", 4), HELD_CONNECTIONS)
        try:
            fds.append(wait_fds(b.superd.pid, HELD_CONNECTIONS))
            held.samples.append(run())
        finally:
            stop(holder)
    s = {"superd": plain, f"superd+{HELD_CONNECTIONS} idle": held}
    fd_note = f"superd had {min(fds):,}+ fds open" if fds else ""
    b.report.rows.append(
        Row("spawned cat (same phase, no idle conns)", "conn/s", {"superd": plain.rate})
    )
    b.report.rows.append(
        Row(
            f"spawned cat, holding {HELD_CONNECTIONS} idle discard conns",
            "conn/s",
            {"superd": held.rate},
            "; ".join(n for n in (fd_note, errors_note(s)) if n),
        )
    )
    b.report.targets.append(
        Target(
            16,
            f"spawn rate with {HELD_CONNECTIONS} idle conns / without",
            paired_ratio(held, plain),
            0.90,
            why_na=b.na_reason(),
        )
    )


def fig_nobody(b: Bench) -> None:
    """(e) issue 3: spawn rate for a service with ``user = nobody``."""
    runs = {n: b.runner(n, "echo", 6, conc=16) for n in ("superd", "xinetd")}
    s = b.interleave(runs)
    b.report.rows.append(
        Row(
            "spawned cat as user=nobody conn/s",
            "conn/s",
            values(s, lambda x: x.rate),
            errors_note(s),
        )
    )
    add_cpu_rows(b, "nobody, server+children", s)


def fig_logging(b: Bench) -> None:
    """Issue 5: echo with a FILE service log (HOST PID EXIT DURATION) vs without."""
    runs: dict[str, Callable[[], Sample] | None] = {}
    for n in ("superd", "xinetd"):
        runs[n] = b.runner(n, "echo", 1, conc=32)
        runs[n + " logged"] = b.runner(n, "echo", 9, conc=32)
    s = b.interleave(runs)
    plain = {n: s[n].rate for n in ("superd", "xinetd")}
    logged = {n: s[n + " logged"].rate for n in ("superd", "xinetd")}
    b.report.rows.append(Row("echo conn/s, no service log", "conn/s", plain))
    b.report.rows.append(
        Row(
            "echo conn/s, FILE log HOST PID EXIT DURATION",
            "conn/s",
            logged,
            errors_note({n: s[n + " logged"] for n in plain}),
        )
    )
    kept_pct = kept({n: s[n + " logged"] for n in plain}, {n: s[n] for n in plain})
    b.report.rows.append(Row("  kept with log (log / no log)", "%", kept_pct))
    b.report.targets.append(
        Target(
            5,
            "echo with FILE log / without (superd)",
            paired_ratio(s["superd logged"], s["superd"]),
            0.80,
            why_na=b.na_reason(),
        )
    )


def fig_rss(b: Bench) -> None:
    """Issues 2 and 16: superd's idle RSS with the sample conf/ (goal: 40 MB, taken
    as 10^6 bytes, the stricter reading), beside the bench configuration's."""
    conf = os.path.join(b.paths.repo, "conf")
    value, why = None, b.na_reason() if b.superd is None else ""
    if not why and not any(f.endswith(".conf") or not f.startswith(".") for f in os.listdir(conf)):
        why = "conf/ is empty"
    if not why:
        value, why = _idle_rss(b, conf)
    b.report.rows.append(Row("superd idle RSS, sample conf/", "MiB", {"superd": value}))
    b.report.rows.append(
        Row(
            "superd RSS, bench configuration, just started",
            "MiB",
            {"superd": b.start_rss},
            f"{confgen.LIST_SIZE:,}-entry lists x 2 included",
        )
    )
    for label, code in _BASELINES:
        rss = _python_rss(b, code)
        b.report.rows.append(Row(f"  baseline: venv python, {label}", "MiB", {"superd": rss}))
    mb = None if value is None else value * 1024 * 1024 / 1e6
    b.report.targets.append(
        Target(16, "superd idle RSS with conf/", mb, 40.0, at_most=True, unit="MB", why_na=why)
    )


# What the interpreter alone costs, to tell superd's own memory from its imports'.
# twisted.internet.tcp imports the TLS layer (OpenSSL, cryptography) when pyOpenSSL is
# installed; the second line shows the reactor with that import blocked.
_BASELINES = (
    ("epoll reactor imported", "import twisted.internet.epollreactor"),
    (
        "same, OpenSSL blocked",
        "import sys; sys.modules['OpenSSL'] = None; import twisted.internet.epollreactor",
    ),
)


def _python_rss(b: Bench, code: str) -> float | None:
    probe = "import re; print(re.search(r'VmRSS:\\s+(\\d+)', open('/proc/self/status').read())[1])"
    done = subprocess.run(
        [b.paths.python, "-c", f"{code}; {probe}"], capture_output=True, text=True, check=False
    )
    return int(done.stdout) / 1024 if done.returncode == 0 and done.stdout.strip() else None


def _idle_rss(b: Bench, conf: str) -> tuple[float | None, str]:
    work = os.path.join(b.paths.tmp, "rss")
    os.makedirs(os.path.join(work, "state"), exist_ok=True)
    argv = daemons.superd_argv(b.paths, conf, os.path.join(work, "state"), b.server_cpu)
    srv = procs.start("superd-conf", argv, os.path.join(work, "superd.log"), cwd=work)
    try:
        time.sleep(4)
        if not srv.alive():
            return None, "superd exited on conf/: " + srv.log_tail(3).strip().replace("\n", " | ")
        return procs.rss_kib(srv.pid) / 1024, ""
    finally:
        srv.stop()


FIGURES: dict[str, Callable[[Bench], None]] = {
    "echo": fig_echo,
    "daytime": fig_daytime,
    "chargen": fig_chargen,
    "spawn": fig_spawn,
    "idle": fig_idle,
    "nobody": fig_nobody,
    "lists": fig_lists,
    "fairness": fig_fairness,
    "logging": fig_logging,
    "rss": fig_rss,
    "reload": fig_reload,
    "spawn-pinned": fig_spawn_pinned,
    "tiny": fig_spawn_tiny,
    "tls": fig_tls,
    "redirect": fig_redirect,
    "propagation": fig_propagation,
    "metrics": fig_metrics,
    "latency": fig_latency,
    "idle-10k": fig_idle_10k,
    "lists-100k": fig_lists_100k,
}
