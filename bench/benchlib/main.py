"""
The ``bench/run`` command: parse options, build, start the servers, run the
chosen figures, stop everything by PID, print the report.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import platform
import shutil
import tempfile
import time
from typing import IO

from . import build, confgen, daemons, figures, fleet_figures, procs, scale_figures, tls_figures
from .load import Loadgen
from .report import Report

__all__ = ["main"]

BENCH_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(BENCH_DIR)
LOCK_PATH = "/tmp/superd-bench.lock"
# The ports of the daemons the issue 6 and 7 figures start for themselves.
EXTRA_PORTS = (
    tls_figures.STUNNEL_PORT,
    tls_figures.SUPERD_TLS_PORT,
    fleet_figures.REDIS_PORT,
    *fleet_figures.FLEET_PORTS,
    *fleet_figures.ECHO_PORTS.values(),
    fleet_figures.METRICS_PORT,
    daemons.ECHOLOOP_PORT,
    scale_figures.IDLE_PORT,
    *scale_figures.LISTS_PORTS,
)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/run", description="superd vs xinetd benchmark (loopback)"
    )
    p.add_argument("--quick", action="store_true", help="1 repetition of 0.5 s each (smoke run)")
    p.add_argument("--only", default=",".join(figures.FIGURES), help="comma-separated figures")
    p.add_argument("--reps", type=int, default=5, help="repetitions per measurement (median)")
    p.add_argument("--duration", type=float, default=2.0, help="seconds per measurement")
    p.add_argument("--no-superd", action="store_true", help="measure xinetd and the loops only")
    p.add_argument(
        "--pin",
        action="store_true",
        help="pin servers to one CPU and load to another (a secondary view; targets are"
        " judged unpinned)",
    )
    p.add_argument(
        "--nice",
        type=int,
        default=0,
        help="run servers and load generators at this nice value (e.g. -10 on a shared host)",
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.add_argument(
        "--superd-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="one more command-line argument for the main superd (repeat for each), for A/B"
        " runs, e.g. --superd-arg=--spawn-helpers=0",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.reps, args.duration = 1, 0.5
    args.only = [f.strip() for f in args.only.split(",") if f.strip()]
    unknown = set(args.only) - set(figures.FIGURES)
    if unknown:
        p.error(f"unknown figure(s) {sorted(unknown)}; known: {', '.join(figures.FIGURES)}")
    return args


UNPINNED = (
    "nothing pinned: servers, their children and load generators run on any CPU"
    " (the headline view; the issues' targets are judged on it)"
)


def pinning(pin: bool) -> tuple[int | None, int | None, str]:
    """(server CPU, load CPU, sentence saying so); unpinned unless ``pin``."""
    cpus = sorted(os.sched_getaffinity(0))
    if not pin:
        return None, None, UNPINNED
    if len(cpus) < 2 or not shutil.which("taskset"):
        return None, None, UNPINNED + "; --pin ignored: taskset unavailable or fewer than 2 CPUs"
    return (
        cpus[0],
        cpus[1],
        f"PINNED (--pin, a secondary view): servers and their children on CPU {cpus[0]},"
        f" load generators on CPU {cpus[1]}",
    )


def machine_facts(paths: daemons.Paths, pin_text: str, args: argparse.Namespace) -> list[str]:
    py = paths.python
    with open("/proc/cpuinfo") as f:
        models = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
    version = "import sys, twisted; print(sys.version.split()[0], twisted.__version__)"
    py_version, _, tw_version = daemons.version_of([py, "-c", version]).partition(" ")
    method = f"{args.reps} x {args.duration:g} s per measurement (+0.3 s warm-up)"
    return [
        f"date        {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}",
        f"machine     nproc={os.cpu_count()} ({models[0] if models else '?'}),"
        f" kernel {platform.release()}",
        f"python      {py_version} ({py})",
        f"twisted     {tw_version}",
        f"xinetd      {daemons.version_of([daemons.XINETD, '-version'])}",
        f"gcc         {daemons.version_of(['gcc', '-dumpfullversion'])}",
        f"pinning     {pin_text}",
        f"method      {method}, servers interleaved, median reported",
        *([f"superd args {' '.join(args.superd_arg)}"] if args.superd_arg else []),
    ]


def load_average() -> float:
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def busy_note(start: float, end: float) -> str:
    """A warning when something else was using the machine during the run."""
    text = f"1-min load average {start:.2f} at start, {end:.2f} at end"
    if max(start, end) > 1.5:
        text += " (a 2-core run saturates ~2 by itself: other work on the machine adds noise)"
    return text


def superd_log_note(bench: figures.Bench) -> str | None:
    if bench.superd is None:
        return None
    size = os.path.getsize(bench.superd.log_path)
    with open(bench.superd.log_path, "rb") as f:
        lines = sum(1 for _ in f)
    return f"superd's main log (twistd stdout) grew to {size / 1e6:.1f} MB, {lines:,} lines"


def _inherited_lock() -> int | None:
    """A descriptor on LOCK_PATH this process inherited (``flock LOCK_PATH bench/run``)."""
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}") == LOCK_PATH:
                return int(name)
        except OSError:
            continue
    return None


def wait_turn() -> IO[str]:
    """Hold an exclusive lock so two bench runs on one machine queue, not collide."""
    inherited = _inherited_lock()
    # Run under flock(1), the lock is held on the inherited open file, so
    # locking it again is a no-op; a second open file would wait for
    # ourselves forever.  Either is held until the process exits.
    target: str | int = LOCK_PATH if inherited is None else inherited
    lock = open(target, "w", closefd=inherited is None)  # noqa: SIM115
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"waiting for another bench/run to finish ({LOCK_PATH}) ...", flush=True)
        fcntl.flock(lock, fcntl.LOCK_EX)
    return lock


def save_result(facts: list[str], text: str) -> str:
    """Keep the run's output in bench/results/ (git-ignored) for later comparison."""
    results = os.path.join(BENCH_DIR, "results")
    os.makedirs(results, exist_ok=True)
    path = os.path.join(results, time.strftime("%Y%m%d-%H%M%S.txt", time.gmtime()))
    with open(path, "w") as f:
        f.write("\n".join(facts) + "\n" + text + "\n")
    return path


def check_ports() -> None:
    wanted = [confgen.XINETD_BASE + i for i in range(1, 200)] + [
        confgen.SUPERD_BASE + i for i in range(1, 200)
    ]
    floors = [daemons.SPAWNLOOP_PORT, daemons.PYLOOP_PORT]
    extra = [*floors, *daemons.UPSTREAM_PORTS.values(), *EXTRA_PORTS]
    busy = daemons.ports_in_use([*wanted, *extra])
    busy += sorted(set(wanted) & procs.udp_ports())
    if busy:
        raise SystemExit(f"bench/run: ports already in use: {busy}; stop whatever listens there")


def start_servers(
    bench: figures.Bench,
    services: list[confgen.Service],
    no_superd: bool,
    superd_args: list[str],
) -> None:
    bench.xinetd = daemons.start_xinetd(bench.paths, services, bench.server_cpu)
    if no_superd:
        bench.superd_missing = "--no-superd"
        return
    try:
        bench.superd = daemons.start_superd(
            bench.paths, services, bench.server_cpu, superd_args
        )
    except RuntimeError as e:
        bench.superd_missing = str(e).splitlines()[0]
        bench.report.notes.append("superd did not start: " + " | ".join(str(e).splitlines()[-4:]))


def run_figures(bench: figures.Bench, names: list[str]) -> None:
    for name in names:
        t0 = time.monotonic()
        print(f"  running {name} ...", flush=True)
        try:
            figures.FIGURES[name](bench)
        except Exception as e:  # one broken figure must not lose the others
            bench.report.notes.append(f"figure {name} failed: {type(e).__name__}: {e}")
        print(f"    done in {time.monotonic() - t0:.1f} s", flush=True)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit(
            "bench/run: run as root (xinetd's user = root services, the nobody figure)"
        )
    lock = wait_turn()
    check_ports()
    binaries = build.build_all(BENCH_DIR, os.path.join(BENCH_DIR, "build"))
    # Children (daemons, load generators) inherit it: the idle-10k figure needs it.
    procs.raise_nofile(scale_figures.NOFILE_WANTED)
    server_cpu, load_cpu, pin_text = pinning(args.pin)
    procs.set_nice(args.nice)
    if args.nice:
        pin_text += f"; all at nice {args.nice}"
    tmp = tempfile.mkdtemp(prefix="superd-bench-")
    paths = daemons.Paths(REPO, os.path.join(BENCH_DIR, "build"), tmp)
    facts = machine_facts(paths, pin_text, args)
    print("\n".join(facts), flush=True)
    loadgen = Loadgen(binaries["loadgen"], load_cpu, args.duration, 0.3)
    columns = [*figures.SPAWN_SERVERS]
    columns += [*figures.ECHO_PEERS] if "echo" in args.only else []
    columns += ["stunnel4"] if "tls" in args.only else []
    report = Report(columns=columns)
    if server_cpu is not None:
        report.targets_title = (
            "TARGETS (PINNED run: a secondary view; the issues' targets are judged on an"
            " unpinned run, bench/run without --pin)"
        )
    bench = figures.Bench(loadgen, args.reps, report, paths, server_cpu, None, None)
    load_start = load_average()
    try:
        start_servers(
            bench,
            confgen.bench_services(tinycat=binaries["tinycat"]),
            args.no_superd,
            args.superd_arg,
        )
        if bench.superd:
            bench.start_rss = procs.rss_kib(bench.superd.pid) / 1024
            report.notes.append(f"superd RSS with the bench config: {bench.start_rss:.1f} MiB")
        figures.warm_up(bench)
        run_figures(bench, args.only)
        report.notes.append(busy_note(load_start, load_average()))
        log_note = superd_log_note(bench)
        if log_note:
            report.notes.append(log_note)
    finally:
        others = (bench.spawnloop, bench.pyloop, *bench.helpers, *bench.peers.values())
        for srv in (bench.superd, bench.xinetd, *others):
            if srv is not None:
                srv.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    lock.close()
    print(report.render())
    if not args.quick:  # smoke runs (and the test suite's) leave nothing behind
        print(f"\nsaved to {save_result(facts, report.render())}")
    if args.keep:
        print(f"\nlogs and configs kept in {tmp}")
    return 0
