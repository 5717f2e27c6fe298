"""
Starting, watching and stopping the processes a benchmark runs.

Every process is started here, remembered by PID, and stopped by that PID
(SIGTERM, then SIGKILL after a grace period); nothing is ever killed by name.
Readiness is read from /proc/PID/net/tcp (a LISTEN entry for each port) and
/proc/PID/net/udp (a bound socket), so no probe connection is made (a probe
to the sensor port would ban 127.0.0.1); reading them through the server's
PID sees its own network namespace, where one runs in a private one.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import IO, Any, Sequence

__all__ = [
    "Server",
    "cpu_seconds",
    "fd_count",
    "json_events",
    "listening_ports",
    "nofile_limits",
    "pin_prefix",
    "raise_nofile",
    "rss_kib",
    "set_affinity",
    "set_nice",
    "start",
    "start_timed",
    "udp_ports",
    "unpin",
    "unreaped_children",
    "wait_listening",
    "wait_reaped",
]

_CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    """One started daemon: its name, process handle and log file."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: str
    log_file: IO[bytes]
    #: The network namespace it runs in (/proc/PID/ns/net) when not the host's.
    netns: str | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM this PID, SIGKILL it after ``grace`` seconds; its exit status."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log_file.close()
        return self.proc.returncode

    def log_tail(self, lines: int = 15) -> str:
        with open(self.log_path, "rb") as f:
            return b"".join(f.readlines()[-lines:]).decode(errors="replace")


# ``--nice N`` of bench/run: one setting for every process a run starts, so the
# compared daemons and the load generators always share the same priority.
_priority = {"nice": 0}


def set_nice(increment: int) -> None:
    """Start every later process with ``nice -n increment`` (0: unchanged)."""
    _priority["nice"] = increment


def pin_prefix(cpu: int | None) -> list[str]:
    """``nice -n N`` when set, then ``taskset -c CPU`` when pinning is possible."""
    prefix = ["nice", "-n", str(_priority["nice"])] if _priority["nice"] else []
    if cpu is None:
        return prefix
    return [*prefix, "taskset", "-c", str(cpu)]


def start(name: str, argv: Sequence[str], log_path: str, cwd: str | None = None) -> Server:
    """Start ``argv`` with stdout and stderr going to ``log_path``."""
    log_file = open(log_path, "wb")  # noqa: SIM115 (closed by Server.stop)
    proc = subprocess.Popen(
        list(argv), stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd
    )
    return Server(name, proc, log_path, log_file)


def _local_ports(table: str, state: str | None, pid: int | None) -> set[int]:
    """Local ports of /proc/[PID/]net/TABLE{,6} entries, in ``state`` if given."""
    ports = set()
    base = f"/proc/{pid}/net" if pid else "/proc/net"
    for path in (f"{base}/{table}", f"{base}/{table}6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if state is None or fields[3] == state:
                        ports.add(int(fields[1].rsplit(":", 1)[1], 16))
        except (FileNotFoundError, ProcessLookupError):
            continue
    return ports


def listening_ports(pid: int | None = None) -> set[int]:
    """Local TCP ports in LISTEN state (IPv4 and IPv6), in ``pid``'s network namespace."""
    return _local_ports("tcp", "0A", pid)


def udp_ports(pid: int | None = None) -> set[int]:
    """Local UDP ports some socket is bound to, in ``pid``'s network namespace."""
    return _local_ports("udp", None, pid)


def wait_listening(
    server: Server, ports: Sequence[int], timeout: float = 30.0, udp: Sequence[int] = ()
) -> None:
    """Return once every TCP port listens and every UDP port is bound; raise
    if the server dies or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.alive():
            raise RuntimeError(f"{server.name} exited:\n{server.log_tail()}")
        if set(ports) <= listening_ports(server.pid) and set(udp) <= udp_ports(server.pid):
            return
        time.sleep(0.02)
    missing = sorted(set(ports) - listening_ports(server.pid))
    missing += sorted(set(udp) - udp_ports(server.pid))
    raise RuntimeError(f"{server.name} not listening on {missing}:\n{server.log_tail()}")


def start_timed(
    name: str,
    argv: Sequence[str],
    log_path: str,
    ports: Sequence[int],
    timeout: float,
    cwd: str | None = None,
) -> tuple[Server, float | None, str]:
    """Start ``argv`` and time it until every port listens: (server, seconds, why not).

    The server is returned running even when it did not listen in time (seconds
    None, the reason in the third item): the caller stops it by PID.
    """
    server = start(name, argv, log_path, cwd=cwd)
    t0 = time.monotonic()
    try:
        wait_listening(server, ports, timeout=timeout)
    except RuntimeError as e:
        why = str(e).splitlines()[0]
        if server.alive():
            why = f"not listening after {timeout:g} s"
        return server, None, why
    return server, time.monotonic() - t0, ""


def cpu_seconds(pid: int) -> float:
    """utime+stime of ``pid`` plus cutime+cstime of its reaped children, and
    the same of every live descendant: a server's long-lived helper processes
    (superd's spawn helpers) reap the children they start, so their CPU and
    their children's reaches the server's own counters only when they end."""
    with open(f"/proc/{pid}/stat") as f:
        # The command name may contain spaces; fields resume after ')'.
        rest = f.read().rsplit(")", 1)[1].split()
    # rest[0] is field 3 (state); fields 14..17 are rest[11..14].
    total = sum(int(x) for x in rest[11:15]) / _CLK_TCK
    for kid in _children(pid):
        try:
            total += cpu_seconds(kid)
        except (FileNotFoundError, ProcessLookupError):  # reaped meanwhile
            continue
    return total


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except (FileNotFoundError, ProcessLookupError):
        return kids
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids.extend(int(k) for k in f.read().split())
        except (FileNotFoundError, ProcessLookupError):  # a thread that just ended
            continue
    return kids


def unreaped_children(pid: int) -> int:
    """How many children of ``pid`` have ended and wait to be reaped (zombies)."""
    count = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids = f.read().split()
        except (FileNotFoundError, ProcessLookupError):  # a thread that just ended
            continue
        for kid in kids:
            try:
                with open(f"/proc/{kid}/stat") as f:
                    count += f.read().rsplit(")", 1)[1].split()[0] == "Z"
            except (FileNotFoundError, ProcessLookupError):  # reaped meanwhile
                continue
    return count


def wait_reaped(pid: int, timeout: float = 0.5) -> None:
    """Give ``pid`` up to ``timeout`` seconds to reap its ended children.

    A child's CPU reaches its parent's cutime/cstime only when it is reaped, and
    a daemon that reaps in batches after accepting (Twisted's ports, the Python
    loop) may hold a hundred ended children when the load stops: reading its CPU
    at once would leave theirs out.
    """
    deadline = time.monotonic() + timeout
    while unreaped_children(pid) and time.monotonic() < deadline:
        time.sleep(0.005)


def nofile_limits(soft: int, hard: int, want: int, may_raise_hard: bool) -> tuple[int, int]:
    """The (soft, hard) RLIMIT_NOFILE giving at least ``want`` descriptors if allowed.

    Never lowers a limit; the hard limit is raised (to ``want`` exactly, so the
    run stays bounded) only by a process allowed to (root).
    """
    infinite = resource.RLIM_INFINITY
    if hard != infinite and hard < want and may_raise_hard:
        hard = want
    ceiling = want if hard == infinite else min(hard, want)
    if soft != infinite and soft < ceiling:
        soft = ceiling
    return soft, hard


def raise_nofile(want: int) -> int:
    """Raise this process's descriptor limit toward ``want`` (children inherit it);
    returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    new = nofile_limits(soft, hard, want, os.geteuid() == 0)
    if new != (soft, hard):
        resource.setrlimit(resource.RLIMIT_NOFILE, new)
    return new[0]


def fd_count(pid: int) -> int:
    """How many descriptors ``pid`` has open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid: int) -> int:
    """VmRSS of ``pid`` in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def json_events(log_path: str) -> list[dict[str, Any]]:
    """The JSON events of a daemon started with ``--logger superd.logs.json_stdout``."""
    events = []
    with open(log_path, "rb") as f:
        for line in f:
            try:
                event = json.loads(line)
            except ValueError:  # twistd's own non-JSON lines, a torn last line
                continue
            if isinstance(event, dict):
                events.append(event)
    return events


def unpin(pid: int) -> None:
    """Let every thread of ``pid`` run on any CPU (children forked later inherit it)."""
    set_affinity(pid, os.sched_getaffinity(0))


def set_affinity(pid: int, cpus: set[int]) -> None:
    """Set the CPU affinity of every thread of ``pid``."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except ProcessLookupError:  # a thread that just ended
            continue
