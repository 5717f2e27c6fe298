"""Tests for superd.proc.spawner: posix_spawn arguments, errors, reaping."""

from __future__ import annotations

import errno
import os
import signal
import socket
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest
from twisted.internet.task import Clock

from superd.observe.events import REASON_EXEC, REASON_FORK
from superd.proc.clonespawn import CloneSpawn
from superd.proc.credentials import CredentialPlan, Identity, SpawningThread
from superd.proc.execwait import SLOW, ExecWait
from superd.proc.spawner import (
    DESCRIPTOR_RESERVE,
    MAX_IN_FLIGHT,
    SETTLE_INTERVAL,
    ExitStatus,
    PosixSpawner,
    SpawnError,
    SpawnRequest,
    classify_spawn_error,
)
from superd.proc.table import prepare_process
from tests.fakes import ROOT, USER
from tests.proc.test_credentials import RecordingSyscalls


class FakePosixSpawn:
    """Records os.posix_spawn calls and the umask at call time."""

    def __init__(self, error: Optional[OSError] = None) -> None:
        self.calls: List[Dict[str, Any]] = []
        self.error = error

    def __call__(self, path: str, argv: List[str], env: Dict[str, str],
                 **kw: Any) -> int:
        umask = os.umask(0o22)
        os.umask(umask)
        self.calls.append(dict(path=path, argv=argv, env=env, umask=umask, **kw))
        if self.error is not None:
            raise self.error
        return 4242


def make(thread: SpawningThread, fake: FakePosixSpawn,
         registered: Optional[List[Any]] = None, **kw: Any) -> PosixSpawner:
    reg = registered if registered is not None else []
    return PosixSpawner(thread, setpriv="/usr/bin/setpriv", posix_spawn=fake,
                        register=lambda pid, r: reg.append((pid, r)),
                        unregister=lambda pid, r: None, **kw)


REQUEST = SpawnRequest("/usr/sbin/sshd", ("sshd", "-i"), {"A": "1"}, {0: 9, 1: 9, 2: 9})


def test_spawn_maps_fds_and_starts_session() -> None:
    """The socket is dup2'd onto 0, 1 and 2, the child is a session leader,
    SIGPIPE is reset to default and the signal mask emptied."""
    fake = FakePosixSpawn()
    registered: List[Any] = []
    pid = make(SpawningThread(USER, None), fake, registered).spawn(REQUEST, print)
    call = fake.calls[0]
    assert pid == 4242 and registered[0][0] == 4242
    assert call["path"] == "/usr/sbin/sshd" and list(call["argv"]) == ["sshd", "-i"]
    assert call["env"] == {"A": "1"}
    assert call["file_actions"] == [(os.POSIX_SPAWN_DUP2, 9, c) for c in (0, 1, 2)]
    assert call["setsid"] is True and call["setsigmask"] == ()
    assert signal.SIGPIPE in call["setsigdef"] and signal.SIGKILL not in call["setsigdef"]


def test_umask_is_set_around_spawn_only() -> None:
    """The child's umask is in effect during the spawn and restored after."""
    fake = FakePosixSpawn()
    before = os.umask(0o22)
    os.umask(before)
    make(SpawningThread(USER, None), fake).spawn(
        SpawnRequest("/bin/true", ("true",), {}, {0: 0, 1: 1, 2: 2}, umask=0o027), print)
    assert fake.calls[0]["umask"] == 0o027
    after = os.umask(0o22)
    os.umask(after)
    assert after == before


def test_thread_credentials_used_when_possible() -> None:
    """As root with a syscall table, credentials are taken by the spawning
    thread (as its real ids) and the spawn resets the child's effective ids
    to them: the program itself is spawned, no wrapper."""
    syscalls = RecordingSyscalls()
    fake = FakePosixSpawn()
    request = SpawnRequest("/bin/cat", ("cat",), {}, {0: 5, 1: 5, 2: 5},
                           credentials=CredentialPlan(65534, 65534, ()))
    make(SpawningThread(ROOT, syscalls), fake).spawn(request, print)
    assert list(fake.calls[0]["argv"]) == ["cat"]
    assert fake.calls[0]["resetids"] is True
    assert ("setresuid", 65534, -1, -1) in syscalls.calls


def test_setpriv_fallback_without_thread_switch() -> None:
    """Without per-thread switching, the setpriv wrapper runs the server."""
    fake = FakePosixSpawn()
    request = SpawnRequest("/bin/cat", ("cat", "-u"), {}, {0: 5, 1: 5, 2: 5},
                           credentials=CredentialPlan(1, 2, (3,)))
    make(SpawningThread(ROOT, None), fake).spawn(request, print)
    assert fake.calls[0]["path"] == "/usr/bin/setpriv"
    assert list(fake.calls[0]["argv"]) == ["/usr/bin/setpriv", "--reuid=1", "--regid=2",
                                     "--groups=3", "--", "/bin/cat", "-u"]


def test_nice_after_spawn_when_not_root() -> None:
    """Not root: nice is applied to the child right after it started."""
    calls: List[Tuple[int, ...]] = []
    spawner = make(SpawningThread(USER, None), FakePosixSpawn(),
                   setpriority=lambda *a: calls.append(a))
    spawner.spawn(SpawnRequest("/bin/true", ("true",), {}, {}, nice=5), print)
    assert calls == [(os.PRIO_PROCESS, 4242, 5)]


@pytest.mark.parametrize("code,reason", [
    (errno.ENOENT, REASON_EXEC), (errno.EACCES, REASON_EXEC),
    (errno.ENOEXEC, REASON_EXEC), (errno.EAGAIN, REASON_FORK),
    (errno.ENOMEM, REASON_FORK), (errno.EMFILE, REASON_FORK),
])
def test_errors_are_classified(code: int, reason: str) -> None:
    """A failed spawn raises SpawnError at once, as xinetd's fork/exec word."""
    assert classify_spawn_error(OSError(code, os.strerror(code))) == reason
    fake = FakePosixSpawn(OSError(code, os.strerror(code)))
    with pytest.raises(SpawnError) as info:
        make(SpawningThread(USER, None), fake).spawn(REQUEST, print)
    assert info.value.reason == reason and info.value.errno == code


def test_exit_status_decoding() -> None:
    """Wait statuses decode to exit code or signal (with core flag)."""
    assert ExitStatus.from_raw(3 << 8) == ExitStatus(768, 3, None, False)
    assert ExitStatus.from_raw(signal.SIGTERM) == ExitStatus(15, None, 15, False)
    assert ExitStatus.from_raw(None) == ExitStatus(None)


def wait_reaped(reapers: List[Any], statuses: List[ExitStatus],
                count: int = 1) -> None:
    """Poll the registered reapers (what Twisted's SIGCHLD handler does)."""
    deadline = time.monotonic() + 10
    while len(statuses) < count and time.monotonic() < deadline:
        for _, reaper in list(reapers):
            reaper.reapProcess()
        time.sleep(0.005)


def real_spawner(reapers: List[Any], thread: Optional[SpawningThread] = None
                 ) -> PosixSpawner:
    return PosixSpawner(thread or SpawningThread(Identity.current(), None),
                        register=lambda pid, r: reapers.append((pid, r)),
                        unregister=lambda pid, r: reapers.remove((pid, r)))


def run_shell(script: str, spawner: PosixSpawner,
              on_exit: Callable[[ExitStatus], None], **kw: Any) -> bytes:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        spawner.spawn(SpawnRequest("/bin/sh", ("sh", "-c", script), {"X": "y"},
                                   {0: theirs.fileno(), 1: theirs.fileno(),
                                    2: theirs.fileno()}, **kw), on_exit)
        theirs.close()
        ours.settimeout(10)
        chunks = []
        while chunk := ours.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_real_child_gets_only_its_fds_and_env() -> None:
    """A real child sees exactly fds 0-2 even with 500 extra descriptors open
    in superd, its own session, the requested environment, and is reaped
    with its exit status."""
    prepare_process()
    extra = [socket.socket() for _ in range(500)]
    reapers: List[Any] = []
    statuses: List[ExitStatus] = []
    try:
        out = run_shell("echo X=$X; ls /proc/self/fd | sort -n | tr '\\n' ' ';"
                        " echo; ps -o sid= -o pgid= -p $$; exit 3",
                        real_spawner(reapers), statuses.append)
    finally:
        for s in extra:
            s.close()
    wait_reaped(reapers, statuses)
    lines = out.decode().splitlines()
    assert lines[0] == "X=y"
    # fd 3 is ls's own directory handle.
    assert lines[1].split() == ["0", "1", "2", "3"]
    sid, pgid = lines[2].split()
    assert sid == pgid
    assert statuses == [ExitStatus(3 << 8, 3)]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_real_child_as_nobody() -> None:
    """Root superd, service user nobody: the child runs as nobody with no
    groups and no capabilities, and superd is root again afterwards."""
    thread = SpawningThread.for_this_machine(Identity.current())
    if not thread.can_switch:
        pytest.skip("no per-thread credential syscalls on this machine")
    reapers: List[Any] = []
    statuses: List[ExitStatus] = []
    out = run_shell("id -u; id -g; id -G; grep CapEff /proc/self/status; umask",
                    real_spawner(reapers, thread), statuses.append,
                    credentials=CredentialPlan(65534, 65534, ()), umask=0o027)
    wait_reaped(reapers, statuses)
    lines = out.decode().split("\n")
    assert lines[:3] == ["65534", "65534", "65534"]
    assert lines[3].split() == ["CapEff:", "0000000000000000"]
    assert lines[4] == "0027"
    assert os.getresuid() == (0, 0, 0)


def test_real_missing_program_raises_exec() -> None:
    """posix_spawn reports a missing program synchronously: FAIL exec."""
    with pytest.raises(SpawnError) as info:
        real_spawner([]).spawn(SpawnRequest("/nonexistent/prog", ("prog",), {},
                                            {0: 0, 1: 1, 2: 2}), print)
    assert info.value.reason == REASON_EXEC and info.value.errno == errno.ENOENT


def test_kill_group_reports_missing_group() -> None:
    """Signalling a process group that no longer exists returns False."""
    def gone(pgid: int, sig: int) -> None:
        raise ProcessLookupError(errno.ESRCH, "No such process")
    spawner = make(SpawningThread(USER, None), FakePosixSpawn(), killpg=gone)
    assert spawner.kill_group(123, signal.SIGTERM) is False


@pytest.mark.parametrize("mode,code", [(None, errno.ENOENT), (0o644, errno.EACCES)])
def test_server_behind_a_wrapper_is_checked_first(tmp_path: Any, mode: Optional[int],
                                                  code: int) -> None:
    """Started through prlimit (rlimit_*) or setpriv, a server that is
    missing or not executable is a SpawnError(exec) with its errno, as for
    a direct exec -- not just the wrapper's exit status 127 or 126."""
    server = tmp_path / "server"
    if mode is not None:
        server.write_text("#!/bin/sh\n")
        server.chmod(mode)
    fake = FakePosixSpawn()
    limited = SpawnRequest("/usr/bin/prlimit", ("/usr/bin/prlimit", "--nofile=8:8", "--",
                                                str(server)), {}, {0: 5, 1: 5, 2: 5},
                           wrapped=str(server))
    other_user = SpawnRequest(str(server), ("server",), {}, {0: 5, 1: 5, 2: 5},
                              credentials=CredentialPlan(1, 2, (3,)))
    spawner = make(SpawningThread(ROOT, None), fake)
    for request in (limited, other_user):
        with pytest.raises(SpawnError) as caught:
            spawner.spawn(request, print)
        assert caught.value.reason == REASON_EXEC and caught.value.errno == code
    assert fake.calls == []
    server.write_text("#!/bin/sh\n")
    server.chmod(0o755)
    spawner.spawn(limited, print)
    assert fake.calls[0]["path"] == "/usr/bin/prlimit"


class InlinePool:
    """A SpawnPool stand-in: submitted work runs when the test says."""

    size = 4

    def __init__(self) -> None:
        self.jobs: List[Tuple[Callable[[], Any], Callable[[Any], None]]] = []
        self.quiet_entered = 0

    def submit(self, work: Callable[[], Any], done: Callable[[Any], None]) -> None:
        self.jobs.append((work, done))

    def run(self) -> None:
        jobs, self.jobs = self.jobs, []
        for work, done in jobs:
            try:
                result = work()
            except BaseException as e:
                result = e
            done(result)

    def quiet(self) -> Any:
        pool = self

        class Quiet:
            def __enter__(self) -> None:
                pool.quiet_entered += 1

            def __exit__(self, *exc: object) -> None:
                pass

        return Quiet()


class RecordingCall:
    """LibcSpawn stand-in: records each call, checks the copies it is given."""

    def __init__(self, error: Optional[OSError] = None) -> None:
        self.calls: List[Dict[str, Any]] = []
        self.error = error

    def __call__(self, executable: str, argv: Tuple[str, ...], env: Any,
                 fds: Any, *, resetids: bool = False) -> int:
        inodes = {child: os.fstat(fd).st_ino for child, fd in fds.items()}
        self.calls.append(dict(executable=executable, argv=argv, env=dict(env),
                               fds=dict(fds), inodes=inodes, resetids=resetids))
        if self.error is not None:
            raise self.error
        return 5151


def background(thread: Optional[SpawningThread] = None, call: Optional[RecordingCall] = None,
               limit: int = 1 << 20) -> Tuple[PosixSpawner, InlinePool, RecordingCall]:
    pool, call = InlinePool(), call or RecordingCall()
    watched: List[Tuple[int, Any]] = []
    spawner = PosixSpawner(thread or SpawningThread(USER, None), posix_spawn=FakePosixSpawn(),
                           register=lambda pid, r: watched.append((pid, r)),
                           unregister=lambda pid, r: None, pool=pool,  # type: ignore[arg-type]
                           background=call, descriptor_limit=lambda: limit)
    return spawner, pool, call


def test_background_spawn_uses_copies_of_the_callers_descriptors() -> None:
    """The caller may close its descriptor at once: the worker spawns on a
    copy of it (same socket), which is closed afterwards; the pid comes back
    through started()."""
    spawner, pool, call = background()
    ours, theirs = socket.socketpair()
    with ours, theirs:
        inode = os.fstat(theirs.fileno()).st_ino
        request = SpawnRequest("/bin/cat", ("cat",), {"A": "1"},
                               {0: theirs.fileno(), 1: theirs.fileno(), 2: theirs.fileno()})
        started: List[Any] = []
        assert spawner.spawns_in_background(request)
        assert spawner.spawn_in_background(request, started.append, print)
        theirs.close()
        pool.run()
        ((recorded),) = call.calls
        assert set(recorded["inodes"].values()) == {inode}
        assert len(set(recorded["fds"].values())) == 1
        copy = recorded["fds"][0]
        with pytest.raises(OSError):
            os.fstat(copy)
        assert recorded["argv"] == ("cat",) and recorded["resetids"] is False
        assert started == [5151]


def test_background_failure_is_a_spawn_error() -> None:
    """An exec failure in the worker comes back as SpawnError(exec)."""
    spawner, pool, _ = background(call=RecordingCall(OSError(errno.ENOENT, "No such file")))
    started: List[Any] = []
    assert spawner.spawn_in_background(
        SpawnRequest("/nope", ("nope",), {}, {0: 0, 1: 1, 2: 2}), started.append, print)
    pool.run()
    (error,) = started
    assert isinstance(error, SpawnError) and error.reason == REASON_EXEC


def test_background_credentials_switch_the_worker_and_reset_ids() -> None:
    """user= services: the worker thread takes the real ids and the child
    resets its effective ids to them (resetids)."""
    syscalls = RecordingSyscalls()
    spawner, pool, call = background(SpawningThread(ROOT, syscalls))
    request = SpawnRequest("/bin/cat", ("cat",), {}, {0: 0, 1: 1, 2: 2},
                           credentials=CredentialPlan(65534, 65534, ()))
    assert spawner.spawn_in_background(request, lambda outcome: None, print)
    assert syscalls.calls == []  # nothing on the calling thread
    pool.run()
    assert call.calls[0]["resetids"] is True
    assert ("setresuid", 65534, -1, -1) in syscalls.calls


def test_umask_is_never_spawned_in_background() -> None:
    """A umask belongs to the whole process: the reactor thread spawns it,
    with every worker held off."""
    spawner, pool, _ = background()
    request = SpawnRequest("/bin/true", ("true",), {}, {0: 0, 1: 1, 2: 2}, umask=0o027)
    assert not spawner.spawns_in_background(request)
    spawner.spawn(request, print)
    assert pool.quiet_entered == 1


def test_background_declines_when_full_or_short_of_descriptors() -> None:
    """Past MAX_IN_FLIGHT requests, or when a copy would use one of the last
    descriptors: False, nothing queued, no descriptor kept."""
    spawner, pool, _ = background()
    request = SpawnRequest("/bin/true", ("true",), {}, {0: 0, 1: 1, 2: 2})
    for _ in range(MAX_IN_FLIGHT):
        assert spawner.spawn_in_background(request, lambda outcome: None, print)
    assert not spawner.spawn_in_background(request, lambda outcome: None, print)
    pool.run()
    assert spawner.spawn_in_background(request, lambda outcome: None, print)
    pool.run()
    probe = os.dup(0)
    os.close(probe)
    tight, tight_pool, _ = background(limit=probe + DESCRIPTOR_RESERVE)
    assert not tight.spawn_in_background(request, lambda outcome: None, print)
    assert tight_pool.jobs == []
    again = os.dup(0)
    os.close(again)
    assert again == probe  # the copy was closed


class SlowExec(FakePosixSpawn):
    """os.posix_spawn whose exec takes ``delay`` seconds of ``clock``."""

    def __init__(self, clock: List[float], delay: float) -> None:
        super().__init__()
        self.clock = clock
        self.delay = delay

    def __call__(self, path: str, argv: List[str], env: Dict[str, str], **kw: Any) -> int:
        self.clock[0] += self.delay
        return super().__call__(path, argv, env, **kw)


def waiting_spawner(delay: float) -> Tuple[PosixSpawner, InlinePool, ExecWait, SlowExec]:
    clock = [0.0]
    waits = ExecWait(lambda: clock[0])
    fake = SlowExec(clock, delay)
    pool = InlinePool()
    spawner = PosixSpawner(SpawningThread(USER, None), posix_spawn=fake,
                           register=lambda pid, r: None, unregister=lambda pid, r: None,
                           pool=pool,  # type: ignore[arg-type]
                           background=RecordingCall(), exec_wait=waits)
    return spawner, pool, waits, fake


def test_quick_execs_are_spawned_on_the_calling_thread() -> None:
    """With an ExecWait, the workers are not offered while execs are quick."""
    spawner, _, waits, fake = waiting_spawner(SLOW / 10)
    request = SpawnRequest("/bin/cat", ("cat",), {}, {0: 0, 1: 1, 2: 2})
    for _ in range(50):
        assert not spawner.spawns_in_background(request)
        spawner.spawn(request, print)
    assert len(fake.calls) == 50
    assert waits.average == pytest.approx(SLOW / 10, rel=0.01)


def test_slow_execs_move_spawns_to_the_workers() -> None:
    """Once the calling thread's waits for exec are long, the workers spawn."""
    spawner, pool, waits, _ = waiting_spawner(SLOW * 3)
    request = SpawnRequest("/bin/cat", ("cat",), {}, {0: 0, 1: 1, 2: 2})
    spawns = 0
    while not spawner.spawns_in_background(request):
        spawner.spawn(request, print)
        spawns += 1
    assert 1 < spawns < 20 and waits.offloading
    assert spawner.spawn_in_background(request, lambda outcome: None, print)
    pool.run()


def test_a_umask_spawn_is_not_an_exec_wait() -> None:
    """A umask spawn first waits for the workers: its time is not counted."""
    spawner, pool, waits, _ = waiting_spawner(SLOW * 100)
    spawner.spawn(SpawnRequest("/bin/true", ("true",), {}, {0: 0, 1: 1, 2: 2}, umask=0o27),
                  print)
    assert waits.average == 0.0 and pool.quiet_entered == 1


class FakeClone:
    """CloneSpawn stand-in: records each call; the test settles the children."""

    takes = staticmethod(CloneSpawn.takes)

    def __init__(self, error: Optional[OSError] = None) -> None:
        self.calls: List[Dict[str, Any]] = []
        self.error = error
        self.ready: List[Tuple[int, int]] = []
        self.next_pid = 6000

    def __call__(self, executable: str, argv: Tuple[str, ...], env: Any,
                 fds: Any, *, resetids: bool = False) -> int:
        umask = os.umask(0o22)
        os.umask(umask)
        self.calls.append(dict(executable=executable, argv=argv, env=dict(env),
                               fds=dict(fds), resetids=resetids, umask=umask))
        if self.error is not None:
            raise self.error
        self.next_pid += 1
        return self.next_pid

    def settle(self) -> List[Tuple[int, int]]:
        ready, self.ready = self.ready, []
        return ready


class WatchingReaping:
    """ExitReaping stand-in: the test says when a watched child exits."""

    def __init__(self) -> None:
        self.watched: Dict[int, Callable[[ExitStatus], None]] = {}

    def watch(self, pid: int, on_exit: Callable[[ExitStatus], None]) -> None:
        self.watched[pid] = on_exit

    def exit(self, pid: int, raw: int = 0) -> None:
        self.watched.pop(pid)(ExitStatus.from_raw(raw))


def cloning(thread: Optional[SpawningThread] = None, clone: Optional[FakeClone] = None
            ) -> Tuple[PosixSpawner, FakeClone, WatchingReaping, Clock]:
    clock, clone, reaping = Clock(), clone or FakeClone(), WatchingReaping()
    spawner = PosixSpawner(thread or SpawningThread(USER, None), posix_spawn=FakePosixSpawn(),
                           reaping=reaping, clone=clone,  # type: ignore[arg-type]
                           later=clock.callLater)
    return spawner, clone, reaping, clock


CAT = SpawnRequest("/bin/cat", ("cat",), {"A": "1"}, {0: 7, 1: 7, 2: 7})


def test_cloned_child_is_started_once_its_exec_is_settled() -> None:
    """The clone returns at once; started(pid) comes on a later turn, once
    settle() reports the exec, and on_exit only after that."""
    spawner, clone, reaping, clock = cloning()
    started: List[Any] = []
    exits: List[ExitStatus] = []
    assert spawner.spawns_in_background(CAT)
    assert spawner.spawn_in_background(CAT, started.append, exits.append)
    (call,) = clone.calls
    assert call["fds"] == {0: 7, 1: 7, 2: 7} and call["resetids"] is False
    pid = clone.next_pid
    assert started == [] and pid in reaping.watched
    clock.advance(0)
    assert started == []  # not settled yet: looked at again shortly
    clone.ready.append((pid, 0))
    clock.advance(SETTLE_INTERVAL)
    assert started == [pid]
    assert not clock.getDelayedCalls()  # nothing left to settle: no more looks
    reaping.exit(pid, 0)
    assert [e.code for e in exits] == [0]


def test_exit_before_the_settle_look_still_starts_first() -> None:
    """A child that executed and exited before the next look: its exit
    settles it first, so started comes before on_exit."""
    spawner, clone, reaping, clock = cloning()
    order: List[str] = []
    spawner.spawn_in_background(CAT, lambda outcome: order.append(f"started {outcome}"),
                                lambda status: order.append(f"exit {status.code}"))
    pid = clone.next_pid
    clone.ready.append((pid, 0))
    reaping.exit(pid, 3 << 8)
    assert order == [f"started {pid}", "exit 3"]
    assert not [c for c in clock.getDelayedCalls() if c.active()]


def test_cloned_exec_failure_is_a_spawn_error_and_its_exit_is_swallowed() -> None:
    """The child could not execute its program: started(SpawnError(exec))
    with its errno, and its exit (127) is reported to nobody."""
    spawner, clone, reaping, clock = cloning()
    started: List[Any] = []
    exits: List[Any] = []
    spawner.spawn_in_background(CAT, started.append, exits.append)
    pid = clone.next_pid
    clone.ready.append((pid, errno.ENOENT))
    clock.advance(0)
    (error,) = started
    assert isinstance(error, SpawnError) and error.reason == REASON_EXEC
    assert error.errno == errno.ENOENT
    reaping.exit(pid, 127 << 8)
    assert exits == []


def test_cloned_fork_failure_is_reported_on_a_later_turn() -> None:
    """No child could be made (EAGAIN): SpawnError(fork), never synchronously
    (the process table counts the start only after spawn_in_background)."""
    spawner, _, reaping, clock = cloning(clone=FakeClone(OSError(errno.EAGAIN, "busy")))
    started: List[Any] = []
    assert spawner.spawn_in_background(CAT, started.append, print)
    assert started == [] and reaping.watched == {}
    clock.advance(0)
    (error,) = started
    assert isinstance(error, SpawnError) and error.reason == REASON_FORK


def test_cloned_credentials_and_umask_stay_on_the_calling_thread() -> None:
    """user= services: the calling thread takes the real ids around the
    clone and the child resets its effective ids (resetids); a umask is set
    around the clone only."""
    syscalls = RecordingSyscalls()
    spawner, clone, _, _ = cloning(SpawningThread(ROOT, syscalls))
    request = SpawnRequest("/bin/cat", ("cat",), {}, {0: 0, 1: 1, 2: 2},
                           credentials=CredentialPlan(65534, 65534, ()), umask=0o027)
    assert spawner.spawns_in_background(request)
    spawner.spawn_in_background(request, print, print)
    assert clone.calls[0]["resetids"] is True and clone.calls[0]["umask"] == 0o027
    assert ("setresuid", 65534, -1, -1) in syscalls.calls
    assert os.umask(0o022) != 0o027


def test_clone_declines_descriptors_it_cannot_map() -> None:
    """A child descriptor beyond the module's range goes the usual way."""
    spawner, _, _, _ = cloning()
    assert not spawner.spawns_in_background(SpawnRequest("/bin/cat", ("cat",), {}, {40: 3}))


def test_one_failing_start_callback_does_not_lose_the_others() -> None:
    spawner, clone, _, clock = cloning()
    started: List[Any] = []

    def broken(outcome: Any) -> None:
        raise RuntimeError("bookkeeping")

    spawner.spawn_in_background(CAT, broken, print)
    first = clone.next_pid
    spawner.spawn_in_background(CAT, started.append, print)
    clone.ready += [(first, 0), (clone.next_pid, 0)]
    clock.advance(0)
    assert started == [clone.next_pid]


def test_an_exit_never_settled_still_reports_the_start_first() -> None:
    """Should the module not report a child that has exited (the kernel
    settles it first), the start is still reported before the exit."""
    spawner, clone, reaping, clock = cloning()
    order: List[str] = []
    spawner.spawn_in_background(CAT, lambda outcome: order.append(f"started {outcome}"),
                                lambda status: order.append(f"exit {status.code}"))
    pid = clone.next_pid
    reaping.exit(pid, 0)
    assert order == [f"started {pid}", "exit 0"]
    clock.advance(SETTLE_INTERVAL)
    assert order == [f"started {pid}", "exit 0"]
