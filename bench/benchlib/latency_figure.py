"""
Issue 13's figure: TCP echo latency while a tiny-datagram UDP flood hits a
UDP builtin of the same daemon.

Probes come from loadgen's probe mode: 50 per second on a fixed schedule,
each a fresh connect, 64-byte echo and close, failed when not done within
2 s (a failure counts as 2,000 ms in the percentiles, a lower bound, so a
daemon that starves TCP cannot show a good p99 by losing its slow probes).
The flood is bench/udpflood.c (sendmmsg of 0 to 8 byte datagrams) at the
UDP echo service of the same daemon, from an ordinary source port, and from
source port 7 of 127.0.0.4 (a UDP builtin with a reflection guard sends
nothing back there).  For each daemon and repetition the three conditions
run back to back; the probes of all repetitions are pooled per condition.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from typing import Sequence

from . import confgen, procs
from .context import Bench
from .fleet_figures import percentile
from .load import Probe
from .report import Row, Target

__all__ = [
    "FLOODS",
    "Latency",
    "fig_latency",
    "flood_argv",
    "summarize",
]

# 50/s gives 500 probes per condition in a default run (5 x 2 s), so p99
# is the fifth-worst probe, not the second-worst: a tail, not one hiccup of
# a shared machine.  The probes themselves are a negligible load.
PROBE_RATE = 50.0
PROBE_TIMEOUT_MS = 2000.0
# The flood's variants: label -> (source address, source port; 0 = any).
FLOODS = {
    "UDP flood": ("127.0.0.1", 0),
    "UDP flood from port 7": ("127.0.0.4", 7),
}
# Lets the flood reach full speed before the probes start, and the daemon
# drain what is queued after it.
SETTLE = 0.3


@dataclass(frozen=True)
class Latency:
    """The pooled probes of one server under one condition."""

    p50_ms: float
    p99_ms: float
    failed: int
    probes: int


def summarize(probes: Sequence[Probe], timeout_ms: float = PROBE_TIMEOUT_MS) -> Latency | None:
    """p50 and p99 in ms with failed probes counted as ``timeout_ms``; None without probes."""
    if not probes:
        return None
    ms = sorted(p.us / 1000 if p.ok else timeout_ms for p in probes)
    failed = sum(1 for p in probes if not p.ok)
    return Latency(percentile(ms, 0.5), percentile(ms, 0.99), failed, len(probes))


def flood_argv(
    binary: str, port: int, secs: float, source: str, source_port: int, cpu: int | None
) -> list[str]:
    """The udpflood command line for one bounded flood."""
    argv = [*procs.pin_prefix(cpu), binary, "-p", str(port), "-d", f"{secs:g}"]
    if source != "127.0.0.1" or source_port:
        argv += ["-b", source, "-P", str(source_port)]
    return argv


@dataclass
class _Runs:
    """One server's probes per condition, flood rates per variant, and why a variant failed."""

    probes: dict[str, list[Probe]] = field(default_factory=dict)
    sent_per_s: dict[str, list[float]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


def _flooded(b: Bench, name: str, variant: str, secs: float, runs: _Runs) -> None:
    source, source_port = FLOODS[variant]
    binary = os.path.join(b.paths.build, "udpflood")
    port = b.port(name, confgen.UDP_ECHO_OFFSET)
    argv = flood_argv(binary, port, secs + 2 * SETTLE, source, source_port, b.loadgen.cpu)
    flood = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(SETTLE)
        if flood.poll() is not None:  # could not bind or send: no figure for this variant
            runs.failed[variant] = (flood.stderr.read() if flood.stderr else "").strip()
            return
        got = b.loadgen.probes(b.port(name, 1), secs, PROBE_RATE, PROBE_TIMEOUT_MS)
        runs.probes.setdefault(variant, []).extend(got)
    finally:
        if flood.poll() is None:
            flood.send_signal(signal.SIGTERM)
        out, _ = flood.communicate(timeout=30)
    values = dict(item.split("=", 1) for item in out.split())
    if "rate" in values:
        runs.sent_per_s.setdefault(variant, []).append(float(values["rate"]))
    time.sleep(SETTLE)


def _measure(b: Bench, name: str, secs: float) -> _Runs:
    runs = _Runs()
    srv = b.server(name)
    for _ in range(b.reps):
        if srv is None or not srv.alive():
            break
        got = b.loadgen.probes(b.port(name, 1), secs, PROBE_RATE, PROBE_TIMEOUT_MS)
        runs.probes.setdefault("unflooded", []).extend(got)
        for variant in FLOODS:
            if variant not in runs.failed:
                _flooded(b, name, variant, secs, runs)
    return runs


def _median(xs: list[float]) -> float | None:
    return sorted(xs)[len(xs) // 2] if xs else None


def fig_latency(b: Bench) -> None:
    """TCP echo p50/p99 unflooded and under a UDP flood, superd and xinetd."""
    secs = max(1.0, b.loadgen.duration)
    names = ("superd", "xinetd")
    runs = {n: _measure(b, n, secs) for n in names}
    stats = {n: {c: summarize(r.probes.get(c, [])) for c in ("unflooded", *FLOODS)}
             for n, r in runs.items()}
    rate = f"{PROBE_RATE:g} probes/s, {PROBE_TIMEOUT_MS / 1000:g} s timeout"
    for condition in ("unflooded", *FLOODS):
        label = "echo probe latency, no flood" if condition == "unflooded" else (
            f"echo probe latency, {condition} (0-8 B)")
        got = {n: stats[n][condition] for n in names}
        failed = ", ".join(
            f"{n}: {runs[n].failed[condition]}" for n in names if condition in runs[n].failed
        )
        b.report.rows.append(
            Row(f"{label}: p50", "ms", {n: v.p50_ms if v else None for n, v in got.items()},
                rate if condition == "unflooded" else failed)
        )
        b.report.rows.append(
            Row("  p99 (failed probes count as 2,000 ms)", "ms",
                {n: v.p99_ms if v else None for n, v in got.items()})
        )
        counts = ", ".join(f"{n} {v.failed} of {v.probes}" for n, v in got.items() if v)
        b.report.rows.append(
            Row("  failed probes", "probes",
                {n: float(v.failed) if v else None for n, v in got.items()}, counts)
        )
        if condition != "unflooded":
            sent = {n: _median(runs[n].sent_per_s.get(condition, [])) for n in names}
            b.report.rows.append(Row("  flood: datagrams sent per second", "dgram/s", sent))
    for condition in FLOODS:
        for n in names:
            base, flooded = stats[n]["unflooded"], stats[n][condition]
            ratio = flooded.p99_ms / base.p99_ms if base and flooded and base.p99_ms else None
            why = runs[n].failed.get(condition, "")
            if n == "superd":
                why = b.na_reason() or why
            b.report.targets.append(
                Target(
                    13,
                    f"echo p99 {condition} / no flood ({n})",
                    ratio,
                    2.0 if n == "superd" else None,
                    at_most=True,
                    why_na=why,
                )
            )
