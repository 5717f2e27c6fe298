"""
Run the real daemon for integration tests.

``start_superd(conf_dir)`` starts ``twistd -n --pidfile= --logger
superd.logs.json_stdout superd -c DIR --state-dir TMP`` from the test
interpreter's environment, reads its JSON log as it is written (checking
every line against the log's schema, ``tests.logschema``), and returns
once the daemon logs ``ready``.  Configurations in tests use ``type =
UNLISTED`` and ``port = 0``; ``Superd.port()`` reads the ports the kernel
chose from the ``listening`` events.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from superd.access import banstore
from tests import logschema

__all__ = [
    "Superd",
    "SuperdStartError",
    "on_free_ports",
    "require_program",
    "run_twistd",
    "start_command",
    "start_superd",
    "twistd_command",
]

#: Set by CI: a missing system program fails the test instead of skipping it.
REQUIRE_ALL = os.environ.get("SUPERD_REQUIRE_ALL") == "1"

_SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")

Event = dict[str, Any]


def require_program(name: str) -> str:
    """The path of system program ``name``; skip (or, in CI, fail) if it is missing."""
    path = shutil.which(name) or shutil.which(
        name, path=os.pathsep.join((os.environ.get("PATH", ""), *_SBIN)))
    if path is not None:
        return path
    message = f"system program {name!r} is not installed"
    if REQUIRE_ALL:
        pytest.fail(f"{message} (SUPERD_REQUIRE_ALL=1)")
    pytest.skip(message)


def twistd_program() -> list[str]:
    """The environment's own ``twistd`` script, run by this interpreter."""
    script = os.path.join(os.path.dirname(sys.executable), "twistd")
    if os.path.exists(script):
        return [sys.executable, script]
    # twisted.scripts.twistd has no __main__ block; call its entry point.
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def twistd_command(conf: str, *extra_args: str, state_dir: str) -> list[str]:
    """The command line that runs superd in the foreground with JSON logs."""
    return [
        *twistd_program(), "-n", "--pidfile=",
        "--logger", "superd.logs.json_stdout", "superd", "-c", conf,
        "--state-dir", state_dir, *extra_args,
    ]


def run_twistd(conf: str, *extra_args: str, env: Mapping[str, str] | None = None,
               timeout: float = 30, state_dir: str | None = None,
               ) -> subprocess.CompletedProcess[str]:
    """Run the daemon to completion (for startup failures); never left running."""
    with tempfile.TemporaryDirectory(prefix="superd-state-") as tmp:
        command = twistd_command(conf, *extra_args, state_dir=state_dir or tmp)
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              env=_environment(env), stdin=subprocess.DEVNULL, check=False)


def _environment(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("NOTIFY_SOCKET", None)
    env.update(extra or {})
    return env


def level_of(event: Event) -> str:
    """The ``level`` of a JSON-decoded event."""
    return str(event.get("level", ""))


def seconds_of(event: Event) -> float:
    """The ``time`` of a JSON-decoded event, in seconds since the epoch."""
    return logschema.parse_time(str(event["time"]))


class SuperdStartError(AssertionError):
    """The daemon exited or stalled before it was ready."""


class Superd:
    """One running daemon, its JSON log and its standard error."""

    def __init__(self, process: subprocess.Popen[str], state_dir: str,
                 owns_state_dir: bool) -> None:
        self.process = process
        self.pid = process.pid
        self.state_dir = state_dir
        self._owns_state_dir = owns_state_dir
        self._events: list[Event] = []
        #: Every line of standard output as it was written.
        self.stdout_lines: list[str] = []
        self._stderr: list[str] = []
        self._noise: list[str] = []
        #: Lines of standard output that break the JSON log's schema, with why.
        self.schema_problems: list[str] = []
        self._changed = threading.Condition()
        self.stopped_by_test = False
        #: Tests that provoke errors on purpose set this so teardown does not fail.
        self.allow_errors = False
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    # -- reading the daemon's output ----------------------------------------

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.stdout_lines.append(line)
            wrong = logschema.problems(line)
            if wrong:
                self.schema_problems.append(f"{line.rstrip()}: {'; '.join(wrong)}")
            try:
                event = json.loads(line)
            except ValueError:
                self._noise.append(line)
                continue
            with self._changed:
                self._events.append(event)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._stderr.append(line)

    def events(self) -> list[Event]:
        """Every log event so far, in order."""
        with self._changed:
            return list(self._events)

    def stderr(self) -> str:
        """What the daemon wrote to its standard error so far."""
        return "".join(self._stderr)

    def wait_for_event(self, pred: Callable[[Event], bool], timeout: float = 10,
                       after: int = 0) -> Event:
        """The first event (from index ``after``) matching ``pred``; fails after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                # Each event is looked at once: with many events, rescanning
                # them all on every new one would starve the reader thread.
                for event in self._events[after:]:
                    after += 1
                    if pred(event):
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.process.poll() is not None and
                                      not self._readers[0].is_alive()):
                    raise AssertionError(
                        f"no matching event within {timeout}s (superd pid {self.pid}, "
                        f"exit {self.process.poll()}); stderr:\n{self.stderr()}")
                self._changed.wait(min(remaining, 0.2))

    def wait_for_events(self, pred: Callable[[Event], bool], count: int,
                        timeout: float = 10, after: int = 0) -> list[Event]:
        """The first ``count`` events (from index ``after``) matching ``pred``;
        fails after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [event for event in self._events[after:] if pred(event)]
                if len(found) >= count:
                    return found[:count]
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.process.poll() is not None and
                                      not self._readers[0].is_alive()):
                    raise AssertionError(
                        f"{len(found)} of {count} matching events within {timeout}s"
                        f" (superd pid {self.pid}, exit {self.process.poll()});"
                        f" stderr:\n{self.stderr()}")
                self._changed.wait(min(remaining, 0.2))

    def xinetd_lines(self) -> list[str]:
        """The xinetd-format service log lines (START/EXIT/FAIL ...) so far."""
        return [str(e["xinetd_line"]) for e in self.events() if e.get("xinetd_line")]

    def errors(self) -> list[Event]:
        """Events logged at error or critical level (unhandled failures among them)."""
        return [e for e in self.events() if level_of(e) in ("error", "critical")]

    def port(self, service_id: str, proto: str = "tcp", host: str | None = None) -> int:
        """The port a service listens on (from its ``listening`` event)."""
        for event in self.events():
            if (event.get("event") == "listening" and event.get("service_id") == service_id
                    and event.get("protocol") == proto
                    and (host is None or event.get("host") == host)):
                return int(event["port"])
        raise KeyError(f"service {service_id!r} does not listen on {proto}"
                       + (f" at {host}" if host else ""))

    # -- the process ---------------------------------------------------------

    def reload(self) -> None:
        """Ask the daemon to reload (SIGHUP)."""
        os.kill(self.pid, signal.SIGHUP)

    def stop(self, timeout: float = 10) -> int:
        """SIGTERM, wait, and return the exit status (negative: killed by signal)."""
        self.stopped_by_test = True
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            status = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            raise AssertionError(
                f"superd pid {self.pid} did not stop within {timeout}s") from None
        finally:
            self._finish()
        return status

    def _finish(self) -> None:
        for reader in self._readers:
            reader.join(5)
        if self._owns_state_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def fds(self) -> Counter[str]:
        """What the daemon's descriptors refer to now (their ``/proc/PID/fd``
        links: a path, ``socket:[inode]``, ``pipe:[inode]``...), counted;
        without its ends of the spawn helpers' sockets, which it opens with
        its first spawn and keeps."""
        held: Counter[str] = Counter()
        directory = f"/proc/{self.pid}/fd"
        for name in os.listdir(directory):
            try:
                held[os.readlink(os.path.join(directory, name))] += 1
            except FileNotFoundError:
                pass  # closed while we listed
        for link in self.helper_sockets():
            del held[link]
        return held

    def helper_sockets(self) -> set[str]:
        """The daemon's ends of its live spawn helpers' sockets, named as in
        ``fds``: the peers (``ss``) of each helper's descriptor 3."""
        theirs = set()
        for pid in self.helpers():
            try:
                link = os.readlink(f"/proc/{pid}/fd/3")
            except FileNotFoundError:
                continue
            theirs.add(link.removeprefix("socket:[").removesuffix("]"))
        if not theirs:
            return set()
        listing = subprocess.run(["ss", "-x", "-a"], capture_output=True, text=True,
                                 check=True, timeout=30).stdout
        ours = set()
        for line in listing.splitlines():
            # u_seq ESTAB 0 0 * LOCAL_INODE * PEER_INODE
            fields = line.split()
            if len(fields) >= 8 and fields[0] == "u_seq" and fields[5] in theirs:
                ours.add(f"socket:[{fields[7]}]")
        return ours

    def idle_fds(self, timeout: float = 10) -> Counter[str]:
        """
        The descriptors the daemon holds at rest: the baseline of a leak
        check (``fds_beyond``).  Right after ``ready`` the daemon's database
        thread closes the ban database it read at startup and opens it
        afresh, so a baseline taken then may lack its three files for good;
        this waits until each is open once.  (A state directory without a
        database has none to wait for: superd opens it with the first ban.)
        """
        database = banstore.db_path(os.path.realpath(self.state_dir))
        if not os.path.exists(database):
            return self.fds()
        files = (database, f"{database}-wal", f"{database}-shm")
        deadline = time.monotonic() + timeout
        while True:
            held = self.fds()
            if all(held[name] == 1 for name in files):
                return held
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"superd pid {self.pid} did not have {database} open within"
                    f" {timeout}s; it holds {sorted(held.elements())}")
            time.sleep(0.02)

    def fds_beyond(self, idle: Counter[str], timeout: float = 10) -> Counter[str]:
        """
        What the daemon holds beyond ``idle`` (from ``idle_fds``) once that
        is nothing or ``timeout`` has passed, empty if nothing: closes the
        daemon has yet to see (a slow machine) are not leaks, but a
        descriptor still open after ``timeout`` is, and it is named.
        """
        deadline = time.monotonic() + timeout
        extra = self.fds() - idle
        while extra and time.monotonic() < deadline:
            time.sleep(0.05)
            extra = self.fds() - idle
        return extra

    def rss_kib(self) -> int:
        """The daemon's resident memory now, in KiB (VmRSS)."""
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError(f"no VmRSS for pid {self.pid}")

    def maps(self, library: str) -> bool:
        """Whether a file whose path contains ``library`` is mapped into the
        daemon (a shared library it loaded)."""
        with open(f"/proc/{self.pid}/maps") as maps:
            return library in maps.read()

    def children(self) -> list[int]:
        """PIDs of the live (not zombie) servers the daemon started: its
        child processes, and those of its spawn helpers, which start them
        (``superd.proc.spawnhelper``), but not the helpers."""
        own = _cmdline(self.pid)
        helpers = set(self.helpers())
        parents = helpers | {self.pid}
        # A child still showing superd's command line has not executed its
        # program yet (posix_spawn's child shares superd's memory until then):
        # it may be a helper being started, not a server.
        return sorted(pid for pid, parent in _live_processes()
                      if parent in parents and pid not in helpers and _cmdline(pid) != own)

    def helpers(self) -> list[int]:
        """PIDs of the daemon's live spawn helpers."""
        return sorted(pid for pid, parent in _live_processes()
                      if parent == self.pid and b"superd.proc.helpermain" in _cmdline(pid))


def _cmdline(pid: int) -> bytes:
    """``/proc/PID/cmdline``, empty if the process has gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except (FileNotFoundError, ProcessLookupError):
        return b""


def _live_processes() -> list[tuple[int, int]]:
    """(pid, parent pid) of every process that is not a zombie."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _read_stat(entry)
            if stat is not None and stat[0] != "Z":
                found.append((int(entry), stat[1]))
    return found


def _read_stat(pid: str) -> tuple[str, int] | None:
    """(state, ppid) from /proc/PID/stat, or None if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: split after the last ')'.
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1])


def start_superd(conf_dir: str, *extra_args: str, env: Mapping[str, str] | None = None,
                 timeout: float = 20, state_dir: str | None = None) -> Superd:
    """Start the daemon on ``conf_dir`` and return once it logged ``ready``."""
    owns = state_dir is None
    state = state_dir or tempfile.mkdtemp(prefix="superd-state-")
    return start_command(twistd_command(str(conf_dir), *extra_args, state_dir=state),
                         state, owns_state_dir=owns, env=env, timeout=timeout)


def start_command(command: list[str], state_dir: str, *, owns_state_dir: bool = False,
                  env: Mapping[str, str] | None = None, timeout: float = 20,
                  cwd: str | None = None) -> Superd:
    """Start a command that runs the daemon with JSON logs on stdout
    (``twistd_command``, ``superd run --json-log``); return once it is ready."""
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=_environment(env), bufsize=1, cwd=cwd)
    superd = Superd(process, state_dir, owns_state_dir)
    try:
        superd.wait_for_event(lambda e: e.get("event") == "ready", timeout)
    except AssertionError as e:
        if process.poll() is None:
            process.kill()
        process.wait(5)
        superd._finish()
        raise SuperdStartError(
            f"superd did not become ready (exit {process.returncode}):\n"
            f"{superd.stderr()}{''.join(superd._noise)}") from e
    return superd



#: Candidate ports tried by ``on_free_ports`` before giving up.
PORT_ATTEMPTS = 5


def _candidate_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def on_free_ports(start: Callable[[list[int]], Superd], count: int = 1,
                  kind: int = socket.SOCK_STREAM) -> Superd:
    """
    ``start(ports)`` with ``count`` ports the kernel reported free, for a
    configuration that must name fixed ports (a port 0 is not one the
    daemon can protect, say).  The daemon binds them itself: if another
    process took one in between, its startup fails on that bind and fresh
    ports are tried, so a test never talks to someone else's socket.
    """
    for _ in range(PORT_ATTEMPTS):
        ports = [_candidate_port(kind) for _ in range(count)]
        try:
            return start(ports)
        except SuperdStartError as e:
            if "Address already in use" not in str(e):
                raise
    raise AssertionError(f"no free ports for superd in {PORT_ATTEMPTS} attempts")
