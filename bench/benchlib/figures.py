"""
The benchmark figures: each runs the same load against every server in one
run, interleaving the repetitions (A B C A B C ...) so slow drift on the
machine touches every server alike, and adds rows and targets to the report.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from typing import Callable

from . import confgen, daemons, procs
from .load import Loadgen, Sample, Series
from .report import Report, Row, Target, ratio

__all__ = ["FIGURES", "Bench"]

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
    superd_missing: str = ""

    def port(self, server: str, offset: int) -> int:
        if server == "spawnloop":
            return daemons.SPAWNLOOP_PORT
        base = confgen.SUPERD_BASE if server == "superd" else confgen.XINETD_BASE
        return base + offset

    def server(self, name: str) -> procs.Server | None:
        return {"superd": self.superd, "xinetd": self.xinetd, "spawnloop": self.spawnloop}[name]

    def runner(
        self, name: str, mode: str, offset: int, conc: int = 1, bind: str | None = None
    ) -> Callable[[], Sample] | None:
        """A callable taking one sample against ``name``, or None if it is not running."""
        srv = self.server(name)
        if srv is None or not srv.alive():
            return None
        port = self.port(name, offset)
        return lambda: self.loadgen.sample(mode, port, srv.pid, conc=conc, bind=bind)

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


def _errors_note(series: dict[str, Series]) -> str:
    bad = {name: s.errors for name, s in series.items() if s.errors}
    return ", ".join(f"{n}: {e} failed conns" for n, e in bad.items())


def _values(
    series: dict[str, Series], key: Callable[[Series], float | None]
) -> dict[str, float | None]:
    return {name: key(s) if s.samples else None for name, s in series.items()}


def fig_echo(b: Bench) -> None:
    """(a) issue 2: echo conn/s, 64 bytes, 32 concurrent."""
    runs = {n: b.runner(n, "echo", 1, conc=32) for n in ("superd", "xinetd")}
    s = b.interleave(runs)
    b.report.rows.append(
        Row("echo conn/s (64 B, 32 conc)", "conn/s", _values(s, lambda x: x.rate), _errors_note(s))
    )
    b.report.rows.append(
        Row("echo server CPU per conn", "us", _values(s, lambda x: x.cpu_per_conn_us))
    )
    r = ratio(s["superd"].rate, s["xinetd"].rate)
    b.report.targets.append(Target(2, "echo conn/s: superd / xinetd", r, 3.0, why_na=b.na_reason()))


def fig_daytime(b: Bench) -> None:
    """(b) issue 2: daytime conn/s and server CPU per connection."""
    runs = {n: b.runner(n, "read", 2, conc=32) for n in ("superd", "xinetd")}
    s = b.interleave(runs)
    b.report.rows.append(
        Row("daytime conn/s (32 conc)", "conn/s", _values(s, lambda x: x.rate), _errors_note(s))
    )
    b.report.rows.append(
        Row("daytime server CPU per conn", "us", _values(s, lambda x: x.cpu_per_conn_us))
    )


def fig_chargen(b: Bench) -> None:
    """(c) issue 2: chargen MB/s over one connection."""
    runs = {n: b.runner(n, "stream", 3) for n in ("superd", "xinetd")}
    s = b.interleave(runs)
    b.report.rows.append(
        Row("chargen over one connection", "MB/s", _values(s, lambda x: x.mbps), _errors_note(s))
    )
    r = ratio(s["superd"].mbps, s["xinetd"].mbps)
    b.report.targets.append(
        Target(2, "chargen MB/s: superd / xinetd", r, 10.0, why_na=b.na_reason())
    )


def fig_spawn(b: Bench) -> None:
    """(d) issue 3: spawned /bin/cat per connection, 64-byte echo, 16 concurrent."""
    if b.spawnloop is None:
        b.spawnloop = daemons.start_spawnloop(b.paths, b.server_cpu)
    runs = {n: b.runner(n, "echo", 5, conc=16) for n in ("superd", "xinetd", "spawnloop")}
    s = b.interleave(runs)
    b.report.rows.append(
        Row(
            "spawned /bin/cat conn/s (16 conc)",
            "conn/s",
            _values(s, lambda x: x.rate),
            _errors_note(s),
        )
    )
    b.report.rows.append(
        Row(
            "spawned cat: server+children CPU per conn",
            "us",
            _values(s, lambda x: x.cpu_per_conn_us),
        )
    )
    na = b.na_reason()
    b.report.targets.append(
        Target(
            3,
            "spawned cat: superd / xinetd",
            ratio(s["superd"].rate, s["xinetd"].rate),
            1.2,
            why_na=na,
        )
    )
    b.report.targets.append(
        Target(
            3,
            "spawned cat: superd / C posix_spawn loop",
            ratio(s["superd"].rate, s["spawnloop"].rate),
            0.85,
            why_na=na,
        )
    )


def _hold(b: Bench, port: int, count: int) -> subprocess.Popen[str]:
    """Open ``count`` idle connections to ``port``; returns once they are open."""
    argv = b.loadgen.argv("hold", port, conc=count, duration=600)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith(f"held={count} "):
        _stop(proc)
        raise RuntimeError(f"could not hold {count} connections: {line!r}")
    return proc


def _stop(proc: subprocess.Popen[str]) -> str:
    """SIGTERM the given PID and return what it printed."""
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=10)
    return out or ""


def fig_idle(b: Bench) -> None:
    """(e) issue 3: the spawn figure while superd holds 1,000 idle connections."""
    run = b.runner("superd", "echo", 5, conc=16)
    plain, held = Series(), Series()
    for _ in range(b.reps if run else 0):
        assert run is not None
        plain.samples.append(run())
        holder = _hold(b, b.port("superd", 4), HELD_CONNECTIONS)
        time.sleep(0.2)  # let superd accept the backlog before measuring
        try:
            held.samples.append(run())
        finally:
            _stop(holder)
    s = {"superd": plain, f"superd+{HELD_CONNECTIONS} idle": held}
    b.report.rows.append(
        Row("spawned cat (same phase, no idle conns)", "conn/s", {"superd": plain.rate})
    )
    b.report.rows.append(
        Row(
            f"spawned cat, holding {HELD_CONNECTIONS} idle discard conns",
            "conn/s",
            {"superd": held.rate},
            _errors_note(s),
        )
    )
    b.report.targets.append(
        Target(
            3,
            f"spawn rate with {HELD_CONNECTIONS} idle conns / without",
            ratio(held.rate, plain.rate),
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
            _values(s, lambda x: x.rate),
            _errors_note(s),
        )
    )


def _refused(b: Bench, port: int, source: str) -> bool:
    """True when a short daytime run from ``source`` gets no data at all."""
    probe = Loadgen(b.loadgen.binary, b.loadgen.cpu, 0.3, 0.0)
    return probe.sample("read", port, None, conc=1, bind=source).conns == 0


def fig_lists(b: Bench) -> None:
    """(f) issue 4: daytime with 10,000-entry only_from/no_access lists vs none."""
    runs: dict[str, Callable[[], Sample] | None] = {}
    for n in ("superd", "xinetd"):
        runs[n] = b.runner(n, "read", 2, conc=32)
        runs[n + " lists"] = b.runner(n, "read", 7, conc=32)
    s = b.interleave(runs)
    enforced = [
        n for n in ("superd", "xinetd") if b.server(n) and _refused(b, b.port(n, 7), GOOD_SOURCE)
    ]
    note = "" if "superd" in enforced else "superd served 127.0.0.2: LISTS NOT ENFORCED"
    plain = {n: s[n].rate for n in ("superd", "xinetd")}
    lists = {n: s[n + " lists"].rate for n in ("superd", "xinetd")}
    b.report.rows.append(Row("daytime conn/s, no address lists", "conn/s", plain))
    b.report.rows.append(
        Row(
            f"daytime conn/s, {confgen.LIST_SIZE:,}-entry only_from+no_access",
            "conn/s",
            lists,
            note or _errors_note({n: s[n + " lists"] for n in plain}),
        )
    )
    b.report.rows.append(Row("  kept with lists (lists / no lists)", "%", _shares(lists, plain)))
    na = b.na_reason() or ("" if "superd" in enforced else "superd does not enforce the lists yet")
    b.report.targets.append(
        Target(
            4,
            "daytime with 10k lists / without (superd)",
            ratio(lists["superd"], plain["superd"]),
            0.95,
            why_na=na,
        )
    )


def _shares(num: dict[str, float | None], den: dict[str, float | None]) -> dict[str, float | None]:
    """Per-column num/den as a percentage."""
    return {k: None if (r := ratio(num[k], den[k])) is None else 100 * r for k in den}


def _trip_sensor(port: int) -> None:
    with socket.socket() as s:
        s.bind((BANNED_SOURCE, 0))
        s.settimeout(2)
        try:
            s.connect(("127.0.0.1", port))
            s.recv(1)
        except OSError:
            pass
    time.sleep(0.3)


def _fairness(b: Bench, name: str) -> tuple[Series, Series, float | None, bool]:
    """Good client alone vs under a banned flood; flood rate; ban effective."""
    run = b.runner(name, "read", 2, conc=4, bind=GOOD_SOURCE)
    alone, loaded, flood_rates = Series(), Series(), []
    if run is None:
        return alone, loaded, None, False
    _trip_sensor(b.port(name, 8))
    banned = _refused(b, b.port(name, 2), BANNED_SOURCE)
    for _ in range(b.reps):
        alone.samples.append(run())
        flood = subprocess.Popen(
            b.loadgen.argv("flood", b.port(name, 2), conc=64, bind=BANNED_SOURCE, duration=600),
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            time.sleep(0.3)
            loaded.samples.append(run())
        finally:
            out = _stop(flood).strip()
        if out:
            flood_rates.append(float(dict(kv.split("=", 1) for kv in out.split())["rate"]))
    flood_rate = sorted(flood_rates)[len(flood_rates) // 2] if flood_rates else None
    return alone, loaded, flood_rate, banned


def fig_fairness(b: Bench) -> None:
    """(f) issue 4: a well-behaved source's daytime rate while a banned source floods."""
    alone: dict[str, float | None] = {}
    loaded: dict[str, float | None] = {}
    flood: dict[str, float | None] = {}
    notes = []
    for n in ("superd", "xinetd"):
        s_alone, s_loaded, flood[n], banned = _fairness(b, n)
        alone[n], loaded[n] = s_alone.rate, s_loaded.rate
        if s_alone.samples and not banned:
            notes.append(f"{n}: BAN NOT EFFECTIVE")
    shares = _shares(loaded, alone)
    b.report.rows.append(Row("fairness: 127.0.0.2 daytime alone (4 conc)", "conn/s", alone))
    b.report.rows.append(
        Row("fairness: same, banned 127.0.0.3 flooding", "conn/s", loaded, "; ".join(notes))
    )
    b.report.rows.append(Row("  kept under flood (flooded / alone)", "%", shares))
    b.report.rows.append(Row("  flood: banned connects completed", "conn/s", flood))
    na = b.na_reason() or (
        "superd: ban not effective" if notes and notes[0].startswith("superd") else ""
    )
    s_share, x_share = shares["superd"], shares["xinetd"]
    b.report.targets.append(
        Target(
            4,
            "banned flood: good client keeps (superd)",
            None if s_share is None else s_share / 100,
            0.5,
            why_na=na,
        )
    )
    b.report.targets.append(
        Target(
            4,
            "banned flood: superd share / xinetd share",
            ratio(s_share, x_share),
            1.0 + 1e-9,
            why_na=na,
        )
    )
    b.report.notes.append(
        "fairness: the flood (64 concurrent connect, wait for close) and the good client"
        " share the load CPU"
    )


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
            _errors_note({n: s[n + " logged"] for n in plain}),
        )
    )
    b.report.rows.append(Row("  kept with log (log / no log)", "%", _shares(logged, plain)))
    b.report.targets.append(
        Target(
            5,
            "echo with FILE log / without (superd)",
            ratio(logged["superd"], plain["superd"]),
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
    b.report.targets.append(
        Target(2, "superd idle RSS with conf/", value, 40.0, at_most=True, unit="MiB", why_na=why)
    )


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
}
