"""
Running the C load generator and turning its output into samples.

A sample is one bounded run of ``loadgen`` against one port, with the
server's CPU time (its own plus its reaped children's) read from /proc
before and after, so CPU per connection comes from the same run.
"""

from __future__ import annotations

import dataclasses
import statistics
import subprocess
from dataclasses import dataclass, field
from typing import Callable, Sequence

from . import procs

__all__ = [
    "Loadgen",
    "Probe",
    "Sample",
    "Series",
    "capacity",
    "paired_ratio",
    "parse_probes",
    "parse_result",
]


@dataclass(frozen=True)
class Sample:
    """One loadgen run: connections, errors, bytes, seconds, server CPU."""

    conns: int
    errors: int
    nbytes: int
    secs: float
    # Completions including the warm-up: the denominator of CPU per connection.
    total: int = 0
    cpu: float | None = None
    # Flood attempts abandoned unanswered (the server dropped the SYN).
    timeouts: int = 0

    @property
    def rate(self) -> float:
        return self.conns / self.secs if self.secs else 0.0

    @property
    def mbps(self) -> float:
        return self.nbytes / self.secs / 1e6 if self.secs else 0.0

    @property
    def cpu_per_conn_us(self) -> float | None:
        if self.cpu is None or not self.total:
            return None
        return self.cpu / self.total * 1e6


@dataclass
class Series:
    """Repeated samples of one measurement; figures use the median."""

    samples: list[Sample] = field(default_factory=list)

    def median(self, key: Callable[[Sample], float | None]) -> float | None:
        values = [v for v in (key(s) for s in self.samples) if v is not None]
        return statistics.median(values) if values else None

    @property
    def rate(self) -> float | None:
        return self.median(lambda s: s.rate)

    @property
    def mbps(self) -> float | None:
        return self.median(lambda s: s.mbps)

    @property
    def cpu_per_conn_us(self) -> float | None:
        return self.median(lambda s: s.cpu_per_conn_us)

    @property
    def errors(self) -> int:
        return sum(s.errors for s in self.samples)


def paired_ratio(
    num: Series, den: Series, key: Callable[[Sample], float | None] = lambda s: s.rate
) -> float | None:
    """Median of the per-repetition ratios num[i] / den[i].

    Repetitions are interleaved, so pairing them cancels load that comes and
    goes on a shared machine better than a ratio of two medians does.  A pair
    where either side has no value (no CPU reading) or the denominator is 0
    is left out.
    """
    ratios = []
    for a, b in zip(num.samples, den.samples, strict=False):
        top, bottom = key(a), key(b)
        if top is not None and bottom:
            ratios.append(top / bottom)
    return statistics.median(ratios) if ratios else None


def capacity(sample: Sample) -> float | None:
    """The conn/s one fully used core allows at this sample's CPU per connection."""
    cpu = sample.cpu_per_conn_us
    return 1e6 / cpu if cpu else None


@dataclass(frozen=True)
class Probe:
    """One latency probe of loadgen's probe mode: succeeded or not, and how long."""

    ok: bool
    us: float


def parse_probes(text: str) -> list[Probe]:
    """The ``probe ok=0|1 us=N`` lines of loadgen's probe mode, in order."""
    probes = []
    for line in text.splitlines():
        if line.startswith("probe "):
            values = dict(item.split("=", 1) for item in line.split()[1:])
            probes.append(Probe(values["ok"] == "1", float(values["us"])))
    return probes


def parse_result(line: str) -> Sample:
    """Parse loadgen's ``key=value`` result line."""
    values = dict(item.split("=", 1) for item in line.split())
    return Sample(
        conns=int(values["conns"]),
        errors=int(values["errors"]),
        nbytes=int(values["bytes"]),
        secs=float(values["secs"]),
        total=int(values.get("total", values["conns"])),
        timeouts=int(values.get("timeouts", 0)),
    )


@dataclass(frozen=True)
class Loadgen:
    """How to run the compiled load generator (binary, CPU, durations)."""

    binary: str
    cpu: int | None
    duration: float
    warmup: float

    def argv(
        self,
        mode: str,
        port: int,
        *,
        conc: int = 1,
        bind: str | None = None,
        duration: float | None = None,
        netns: str | None = None,
    ) -> list[str]:
        """``netns``: the network namespace to enter first (a server running in its own)."""
        enter = ["nsenter", f"--net={netns}"] if netns else []
        argv = [*procs.pin_prefix(self.cpu), *enter, self.binary, "-m", mode, "-p", str(port)]
        argv += ["-c", str(conc), "-d", str(duration or self.duration), "-w", str(self.warmup)]
        if bind:
            argv += ["-b", bind]
        return argv

    def sample(
        self,
        mode: str,
        port: int,
        server_pid: int | None,
        *,
        conc: int = 1,
        bind: str | None = None,
        netns: str | None = None,
    ) -> Sample:
        """One bounded run; the server's CPU delta is attached when its PID is given."""
        before = procs.cpu_seconds(server_pid) if server_pid else None
        out = self._run(self.argv(mode, port, conc=conc, bind=bind, netns=netns))
        sample = parse_result(out)
        if server_pid and before is not None:
            procs.wait_reaped(server_pid)
            sample = dataclasses.replace(sample, cpu=procs.cpu_seconds(server_pid) - before)
        return sample

    def probes(self, port: int, secs: float, rate: float, timeout_ms: float) -> list[Probe]:
        """Latency probes (connect, 64-byte echo, close) at ``rate``/s for ``secs``."""
        argv = self.argv("probe", port, duration=secs)
        argv[argv.index("-w") + 1] = "0"
        argv += ["-r", str(rate), "-t", str(timeout_ms)]
        return parse_probes(self._output(argv, secs + timeout_ms / 1000 + 30))

    def _output(self, argv: Sequence[str], timeout: float) -> str:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0 or not done.stdout.strip():
            raise RuntimeError(f"loadgen failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout

    def _run(self, argv: Sequence[str]) -> str:
        out = self._output(argv, self.duration + self.warmup + 30)
        return out.strip().splitlines()[-1]
