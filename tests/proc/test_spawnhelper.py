"""
Tests for superd.proc.spawnhelper, superd's side of the spawn helpers: the
helper is played by the test on the other end of a real socket pair.
"""

from __future__ import annotations

import errno
import marshal
import os
import socket
from typing import Any, Dict, List, Optional, Tuple, Union

import pytest
from twisted.internet.testing import MemoryReactorClock

from superd.observe import events as ev
from superd.observe.events import REASON_EXEC, REASON_FORK
from superd.proc.credentials import CredentialPlan, SpawningThread
from superd.proc.helpermain import EXITED, FAILED, READY, STARTED
from superd.proc.reaping import ExitStatus
from superd.proc.spawner import PosixSpawner, SpawnError, SpawnRequest
from superd.proc.spawnhelper import (
    MAX_PENDING,
    RESTART_DELAY,
    HelperSpawner,
    _Helper,
)
from tests.fakes import ROOT, USER
from tests.proc.test_credentials import RecordingSyscalls
from tests.proc.test_spawner import FakePosixSpawn

Outcome = Union[int, SpawnError]


class FakeReaping:
    """Records what superd asks to be told about (the helpers themselves)."""

    def __init__(self) -> None:
        self.watched: Dict[int, Any] = {}

    def watch(self, pid: int, on_exit: Any) -> None:
        self.watched[pid] = on_exit

    def reap_ended(self) -> None:
        pass


class Launcher:
    """Starts fake helpers: socket pairs whose far end the test holds."""

    def __init__(self) -> None:
        self.far: List[socket.socket] = []
        self.error: Optional[OSError] = None
        self.sndbuf: Optional[int] = None

    def __call__(self) -> Tuple[int, socket.socket]:
        if self.error is not None:
            raise self.error
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        if self.sndbuf is not None:
            ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.sndbuf)
        self.far.append(theirs)
        return 7000 + len(self.far), ours

    def close(self) -> None:
        for sock in self.far:
            sock.close()


class Rig:
    """A HelperSpawner with fake helpers, a memory reactor and pidfds."""

    def __init__(self, *, count: int = 1, thread: Optional[SpawningThread] = None) -> None:
        self.reactor = MemoryReactorClock()
        self.reaping = FakeReaping()
        self.reniced: List[Tuple[int, int]] = []
        self.inline_spawn = FakePosixSpawn()
        self.inline = PosixSpawner(
            thread or SpawningThread(USER, None), setpriv="/usr/bin/setpriv",
            posix_spawn=self.inline_spawn, reaping=self.reaping,  # type: ignore[arg-type]
            setpriority=lambda which, pid, nice: self.reniced.append((pid, nice)))
        self.launch = Launcher()
        self.pidfds: Dict[int, int] = {}
        self.gone: set[int] = set()
        self.spawner = HelperSpawner(self.reactor, self.inline, count=count,
                                     launch=self.launch, pidfd_open=self._pidfd_open)
        self.outcomes: List[Outcome] = []
        self.exits: List[ExitStatus] = []

    def _pidfd_open(self, pid: int) -> int:
        if pid in self.gone:
            raise ProcessLookupError(errno.ESRCH, "No such process")
        r, w = os.pipe()
        self.pidfds[pid] = w
        return r

    def helper(self, index: int = 0) -> _Helper:
        return self.spawner._helpers[index]

    def ready(self, index: int = 0) -> None:
        """The helper says it is ready."""
        self.reply(index, (READY, 7001 + index, 0))

    def reply(self, index: int, *replies: Tuple[int, int, int]) -> None:
        self.launch.far[index].send(marshal.dumps(list(replies)))
        self.helper(index).doRead()

    def request(self, index: int = 0) -> Tuple[Tuple[Any, ...], List[int]]:
        """The next request the helper received, and its descriptors."""
        data, fds, _, _ = socket.recv_fds(self.launch.far[index], 1 << 16, 16)
        return marshal.loads(data), fds

    def start(self, request: SpawnRequest) -> bool:
        if not self.spawner.spawns_in_background(request):
            return False
        return self.spawner.spawn_in_background(request, self.outcomes.append,
                                                self.exits.append)

    def close(self) -> None:
        self.spawner.close()
        self.launch.close()
        for fd in self.pidfds.values():
            os.close(fd)


@pytest.fixture
def rig() -> Any:
    made: List[Rig] = []

    def make(**kw: Any) -> Rig:
        made.append(Rig(**kw))
        return made[-1]
    yield make
    for r in made:
        r.close()


@pytest.fixture
def devnull() -> Any:
    fd = os.open(os.devnull, os.O_RDWR)
    yield fd
    os.close(fd)


def request_on(fd: int, **kw: Any) -> SpawnRequest:
    return SpawnRequest("/bin/cat", ("cat",), {"A": "1"}, {0: fd, 1: fd, 2: fd}, **kw)


def test_no_helper_before_the_first_spawn(rig: Any) -> None:
    """A spawner that never spawns starts no helper."""
    r = rig(count=2)
    assert r.launch.far == [] and r.spawner.helpers == ()


def test_spawns_inline_until_a_helper_is_ready(rig: Any, devnull: int) -> None:
    """The first request starts every helper and is refused (the caller
    spawns on the reactor thread); once a helper said READY it takes them."""
    r = rig(count=2)
    assert not r.spawner.spawns_in_background(request_on(devnull))
    assert r.spawner.helpers == (7001, 7002)
    assert set(r.reaping.watched) == {7001, 7002}
    assert len(r.reactor.getReaders()) == 2
    r.ready(1)
    assert r.start(request_on(devnull))
    assert r.spawner.helpers == (7001, 7002)  # no more started


def test_a_request_carries_the_descriptors_and_settings(rig: Any, devnull: int) -> None:
    """The message says what to run and where each descriptor goes; the
    descriptor itself travels (the same open file), once for three numbers."""
    r = rig()
    r.spawner.spawns_in_background(request_on(devnull))
    r.ready()
    assert r.start(request_on(devnull, umask=0o77))
    (rid, executable, argv, env, targets, plan, nice, umask), fds = r.request()
    try:
        assert (executable, argv, env, targets, plan, nice, umask) == (
            "/bin/cat", ("cat",), {"A": "1"}, [[0, 1, 2]], None, None, 0o77)
        assert len(fds) == 1 and os.fstat(fds[0]).st_ino == os.fstat(devnull).st_ino
    finally:
        for fd in fds:
            os.close(fd)


def test_started_then_exited(rig: Any, devnull: int) -> None:
    """STARTED gives the pid to ``started``; EXITED its status to ``on_exit``."""
    r = rig()
    r.spawner.spawns_in_background(request_on(devnull))
    r.ready()
    assert r.start(request_on(devnull))
    (rid, *_), fds = r.request()
    for fd in fds:
        os.close(fd)
    r.reply(0, (STARTED, rid, 555))
    assert r.outcomes == [555] and r.exits == []
    r.reply(0, (EXITED, 555, 3 << 8))
    assert r.exits == [ExitStatus.from_raw(3 << 8)] and r.exits[0].code == 3
    assert r.helper().pending == {} and r.helper().children == {}


@pytest.mark.parametrize(("err", "reason"), [(errno.ENOENT, REASON_EXEC),
                                             (errno.EAGAIN, REASON_FORK)])
def test_failed_is_a_spawn_error(rig: Any, devnull: int, err: int, reason: str) -> None:
    """FAILED(errno) becomes SpawnError with xinetd's reason word."""
    r = rig()
    r.spawner.spawns_in_background(request_on(devnull))
    r.ready()
    r.start(request_on(devnull))
    (rid, *_), fds = r.request()
    for fd in fds:
        os.close(fd)
    r.reply(0, (FAILED, rid, err))
    (error,) = r.outcomes
    assert isinstance(error, SpawnError)
    assert (error.reason, error.errno) == (reason, err)


def test_nice_without_root_is_set_after_the_start(rig: Any, devnull: int) -> None:
    """Not root: the helper gets no nice value; superd renices the child."""
    r = rig()
    r.spawner.spawns_in_background(request_on(devnull))
    r.ready()
    r.start(request_on(devnull, nice=5))
    (rid, *_, nice, umask), fds = r.request()
    for fd in fds:
        os.close(fd)
    assert nice is None
    r.reply(0, (STARTED, rid, 556))
    assert r.reniced == [(556, 5)]


def test_credentials_and_nice_go_to_the_helper_when_it_can_switch(rig: Any,
                                                                  devnull: int) -> None:
    """Root with per-thread credentials: the plan and the nice value travel."""
    r = rig(thread=SpawningThread(ROOT, RecordingSyscalls()))
    r.spawner.spawns_in_background(request_on(devnull))
    r.ready()
    r.start(request_on(devnull, nice=5, credentials=CredentialPlan(65534, 65534, (1, 2))))
    (rid, executable, argv, env, targets, plan, nice, umask), fds = r.request()
    for fd in fds:
        os.close(fd)
    assert (executable, plan, nice) == ("/bin/cat", (65534, 65534, (1, 2)), 5)
    r.reply(0, (STARTED, rid, 557))
    assert r.reniced == []


def test_a_missing_wrapped_server_is_left_to_the_inline_spawn(rig: Any,
                                                              devnull: int) -> None:
    """A request that cannot be prepared is refused, so that ``spawn``
    raises its SpawnError synchronously; nothing is sent."""
    r = rig()
    r.spawner.spawns_in_background(request_on(devnull))
    r.ready()
    assert not r.start(request_on(devnull, wrapped="/nonexistent/server"))
    with pytest.raises(SpawnError) as caught:
        r.spawner.spawn(request_on(devnull, wrapped="/nonexistent/server"), r.exits.append)
    assert caught.value.reason == REASON_EXEC
    r.launch.far[0].setblocking(False)
    with pytest.raises(BlockingIOError):
        r.launch.far[0].recv(1)


def test_a_helper_behind_takes_no_more(rig: Any, devnull: int) -> None:
    """MAX_PENDING unanswered requests: the next one is spawned inline."""
    r = rig()
    r.spawner.spawns_in_background(request_on(devnull))
    r.ready()
    received = []
    for _ in range(MAX_PENDING):
        assert r.start(request_on(devnull))
        received.append(r.request())  # keep the kernel's queue short
    assert not r.spawner.spawns_in_background(request_on(devnull))
    for _, fds in received:
        for fd in fds:
            os.close(fd)


def test_requests_go_to_the_least_busy_helper(rig: Any, devnull: int) -> None:
    r = rig(count=2)
    r.spawner.spawns_in_background(request_on(devnull))
    r.ready(0)
    r.ready(1)
    assert r.start(request_on(devnull)) and r.start(request_on(devnull))
    assert [len(h.pending) for h in r.spawner._helpers] == [1, 1]
    for index in (0, 1):
        for fd in r.request(index)[1]:
            os.close(fd)


def test_a_dead_helper_fails_its_requests_and_its_children_are_followed(
        rig: Any, devnull: int, events: List[Dict[str, Any]]) -> None:
    """The helper's end closes: its unanswered request fails (fork), its
    running child is followed by pidfd until it ends (unknown status), a
    child already gone is reported at once, and the death is logged."""
    r = rig()
    r.spawner.spawns_in_background(request_on(devnull))
    r.ready()
    for _ in range(3):
        assert r.start(request_on(devnull))
    ids = []
    for _ in range(3):
        (rid, *_), fds = r.request()
        ids.append(rid)
        for fd in fds:
            os.close(fd)
    r.gone.add(602)
    r.reply(0, (STARTED, ids[0], 601), (STARTED, ids[1], 602))
    r.launch.far[0].close()
    r.launch.far[0] = socket.socket()  # closed by the rig's cleanup
    r.spawner._helpers[0].doRead()
    assert r.outcomes[:2] == [601, 602]
    refused = r.outcomes[2]
    assert isinstance(refused, SpawnError) and refused.reason == REASON_FORK
    assert r.exits == [ExitStatus(None)]  # 602, gone before its pidfd
    assert r.spawner.helpers == () and r.spawner.orphans == 1
    (lost,) = [e for e in events if e.get("event") == ev.EV_SPAWN_HELPER
               and e.get("state") == ev.HELPER_LOST]
    assert (lost["pid"], lost["requests"], lost["children"]) == (7001, 1, 2)
    # The orphan ends: its pidfd becomes readable.
    (orphan,) = r.spawner._orphans.values()
    os.close(r.pidfds.pop(601))
    orphan.doRead()
    assert r.exits == [ExitStatus(None), ExitStatus(None)] and r.spawner.orphans == 0
    assert orphan not in r.reactor.getReaders()


def test_a_dead_helper_is_restarted_after_a_delay(rig: Any, devnull: int) -> None:
    """A helper that was ready and died is replaced RESTART_DELAY later."""
    r = rig()
    r.spawner.spawns_in_background(request_on(devnull))
    r.ready()
    r.launch.far[0].close()
    r.helper().doRead()
    assert not r.spawner.spawns_in_background(request_on(devnull))
    assert len(r.launch.far) == 1  # not yet
    r.reactor.advance(RESTART_DELAY)  # no spawn needed
    assert len(r.launch.far) == 2 and r.spawner.helpers == (7002,)


def test_helpers_dying_before_they_answer_back_off(rig: Any, devnull: int) -> None:
    """Each helper that dies before READY doubles the wait for the next."""
    r = rig()
    waits = []
    for _ in range(4):
        r.reactor.advance(1000)
        r.spawner.spawns_in_background(request_on(devnull))
        launched = len(r.launch.far)
        r.launch.far[-1].close()
        r.helper().doRead()
        began = r.reactor.seconds()
        while len(r.launch.far) == launched:
            r.reactor.advance(RESTART_DELAY / 4)
            r.spawner.spawns_in_background(request_on(devnull))
        waits.append(r.reactor.seconds() - began)
        r.launch.far[-1].close()
        r.helper().doRead()
    assert waits == sorted(waits) and waits[-1] >= 4 * waits[0]


def test_a_helper_that_cannot_start_is_logged_and_retried_later(
        rig: Any, devnull: int, events: List[Dict[str, Any]]) -> None:
    r = rig()
    r.launch.error = OSError(errno.EAGAIN, "Resource temporarily unavailable")
    assert not r.spawner.spawns_in_background(request_on(devnull))
    assert not r.spawner.spawns_in_background(request_on(devnull))
    unstartable = [e for e in events if e.get("state") == ev.HELPER_UNSTARTABLE]
    assert len(unstartable) == 1
    r.launch.error = None
    r.reactor.advance(RESTART_DELAY)
    assert r.spawner.helpers == (7001,)


def test_a_full_socket_means_inline(rig: Any, devnull: int) -> None:
    """When the helper's queue is full, sendmsg fails and the caller spawns."""
    r = rig()
    r.launch.sndbuf = 4096
    r.spawner.spawns_in_background(request_on(devnull))
    r.ready()
    sent = 0
    while r.start(request_on(devnull)):
        sent += 1
        assert sent < MAX_PENDING
    assert sent >= 1 and len(r.helper().pending) == sent


def test_shutdown_lets_the_helper_go_quietly(rig: Any, devnull: int,
                                             events: List[Dict[str, Any]]) -> None:
    """The reactor's disconnectAll at shutdown: no death logged, no restart."""
    r = rig()
    r.spawner.spawns_in_background(request_on(devnull))
    r.ready()
    helper = r.helper()
    helper.connectionLost(None)  # type: ignore[arg-type]
    assert r.spawner.helpers == () and helper.sock.fileno() == -1
    assert not [e for e in events if e.get("state") == ev.HELPER_LOST]


def test_the_helpers_exit_is_logged(rig: Any, devnull: int,
                                    events: List[Dict[str, Any]]) -> None:
    r = rig()
    r.spawner.spawns_in_background(request_on(devnull))
    r.reaping.watched[7001](ExitStatus.from_raw(9))
    (exited,) = [e for e in events if e.get("state") == ev.HELPER_EXITED]
    assert (exited["pid"], exited["status"]) == (7001, 9)


def test_kill_group_and_spawn_stay_superds(rig: Any, devnull: int) -> None:
    """Signalling a group and the inline spawn are the PosixSpawner's."""
    r = rig()
    assert r.spawner.spawn(request_on(devnull), r.exits.append) == 4242
    assert r.inline_spawn.calls[0]["setsid"] is True
    assert r.spawner.kill_group(2 ** 22 + 12345, 0) is False
