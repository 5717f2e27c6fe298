"""
The benchmark figures of issues 2, 3 and 5: each runs the same load against
every server in one run, interleaving the repetitions (A B C A B C ...) so
slow drift on the machine touches every server alike, and adds rows and
targets to the report.  Issue 4's figures are in ``access_figures``.
"""

from __future__ import annotations

import os
import subprocess
import time
from typing import Callable

from . import daemons, procs
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
    warm_up,
)
from .fleet_figures import fig_metrics, fig_propagation
from .load import Sample, Series, paired_ratio
from .reload_figure import fig_reload
from .report import Row, Target
from .tls_figures import fig_redirect, fig_tls

__all__ = ["FIGURES", "SPAWN_SERVERS", "Bench", "warm_up"]

# The spawn figures' columns: the daemons, then the C and Python floors.
SPAWN_SERVERS = ("superd", "xinetd", "spawnloop", "pyloop")


def fig_echo(b: Bench) -> None:
    """(a) issue 2: echo conn/s, 64 bytes, 32 concurrent."""
    runs = {n: b.runner(n, "echo", 1, conc=32) for n in ("superd", "xinetd")}
    s = b.interleave(runs)
    b.report.rows.append(
        Row("echo conn/s (64 B, 32 conc)", "conn/s", values(s, lambda x: x.rate), errors_note(s))
    )
    add_cpu_rows(b, "echo", s)
    r = paired_ratio(s["superd"], s["xinetd"])
    b.report.targets.append(Target(2, "echo conn/s: superd / xinetd", r, 3.0, why_na=b.na_reason()))


def fig_daytime(b: Bench) -> None:
    """(b) issue 2: daytime conn/s and server CPU per connection."""
    runs = {n: b.runner(n, "read", 2, conc=32) for n in ("superd", "xinetd")}
    s = b.interleave(runs)
    b.report.rows.append(
        Row("daytime conn/s (32 conc)", "conn/s", values(s, lambda x: x.rate), errors_note(s))
    )
    add_cpu_rows(b, "daytime", s)


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
    b.report.targets.append(
        Target(
            3,
            "spawned cat: superd / xinetd",
            paired_ratio(s["superd"], s["xinetd"]),
            1.2,
            why_na=na,
        )
    )
    b.report.targets.append(
        Target(
            3,
            "spawned cat: superd / C posix_spawn loop",
            paired_ratio(s["superd"], s["spawnloop"]),
            0.85,
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


def fig_spawn_free(b: Bench) -> None:
    """Issue 3, second view: the spawn figure with the servers and their children unpinned.

    The primary figure pins each daemon and so every /bin/cat it spawns to one
    core, where exec and exit dominate; here the daemons (and the children they
    fork) may run on every CPU while the load generator stays on its own, as on
    a real host.  The pinning is restored afterwards.
    """
    _start_floors(b)
    servers = [srv for n in SPAWN_SERVERS if (srv := b.server(n)) and srv.alive()]
    for srv in servers:
        procs.unpin(srv.pid)
    try:
        s = b.interleave({n: b.runner(n, "echo", 5, conc=16) for n in SPAWN_SERVERS})
    finally:
        for srv in servers:
            if b.server_cpu is not None and srv.alive():
                procs.set_affinity(srv.pid, {b.server_cpu})
    label = "spawned /bin/cat conn/s, children unpinned (16 conc)"
    b.report.rows.append(Row(label, "conn/s", values(s, lambda x: x.rate), errors_note(s)))
    add_cpu_rows(b, "unpinned spawn, server+children", s)
    na = b.na_reason()
    for text, other, goal in (("xinetd", "xinetd", 1.2), ("C posix_spawn loop", "spawnloop", 0.85)):
        b.report.targets.append(
            Target(
                3,
                f"spawned cat, unpinned: superd / {text} (2nd view)",
                paired_ratio(s["superd"], s[other]),
                goal,
                why_na=na,
            )
        )
    _floor_targets(b, s, ", unpinned")


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
            fds.append(_wait_fds(b.superd.pid, HELD_CONNECTIONS))
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
            3,
            f"spawn rate with {HELD_CONNECTIONS} idle conns / without",
            paired_ratio(held, plain),
            0.90,
            why_na=b.na_reason(),
        )
    )


def _wait_fds(pid: int, at_least: int, timeout: float = 10.0) -> int:
    """Wait until ``pid`` holds ``at_least`` descriptors (it has accepted them all)."""
    deadline = time.monotonic() + timeout
    while (n := procs.fd_count(pid)) < at_least and time.monotonic() < deadline:
        time.sleep(0.05)
    return n


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
    """(g) issue 2: superd's idle RSS with the sample conf/."""
    conf = os.path.join(b.paths.repo, "conf")
    value, why = None, b.na_reason() if b.superd is None else ""
    if not why and not any(f.endswith(".conf") or not f.startswith(".") for f in os.listdir(conf)):
        why = "conf/ is empty"
    if not why:
        value, why = _idle_rss(b, conf)
    b.report.rows.append(Row("superd idle RSS, sample conf/", "MiB", {"superd": value}))
    for label, code in _BASELINES:
        rss = _python_rss(b, code)
        b.report.rows.append(Row(f"  baseline: venv python, {label}", "MiB", {"superd": rss}))
    b.report.targets.append(
        Target(2, "superd idle RSS with conf/", value, 40.0, at_most=True, unit="MiB", why_na=why)
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
    "spawn-free": fig_spawn_free,
    "tiny": fig_spawn_tiny,
    "tls": fig_tls,
    "redirect": fig_redirect,
    "propagation": fig_propagation,
    "metrics": fig_metrics,
}
