"""
The spawn helper process: starts superd's children and tells superd when
they end (superd's side is ``superd.proc.spawnhelper``).

Why a separate process: ``posix_spawn`` returns only once the child has
executed its program, and the thread calling it waits for that.  In superd's
reactor thread the wait stalls every other connection; in a worker thread of
superd it costs a switch of the interpreter lock per spawn, which costs more
CPU than the spawn itself.  A helper process has its own interpreter: the
reactor hands it the request and the descriptors (one ``sendmsg``) and goes
on, and two helpers start two children at once on two CPUs.

The loop is single-threaded, so what ``superd.proc.spawner`` must arrange
per thread (credentials, nice) or hold everyone off for (the umask) is the
helper's own to change around one spawn.

Keep the imports small: this runs as ``python -c`` in a fresh interpreter,
with no Twisted; ``superd.proc.credentials`` (ctypes, attrs) is imported by
the first request that needs it.

The protocol (both ends are this package, under the same interpreter, so
``marshal``) over a ``SOCK_SEQPACKET`` socket on descriptor ``SOCKET_FD``:

* superd -> helper, one request per message, its descriptors attached
  (``SCM_RIGHTS``): ``(id, executable, argv, env, targets, plan, nice,
  umask)``, ``targets`` giving for each attached descriptor the child's
  descriptor numbers, ``plan`` None or ``(uid, gid, groups)``;
* helper -> superd, batches (one message per loop turn, or per few turns
  while requests wait): a list of
  ``(kind, a, b)``: ``(READY, pid, 0)`` once, then ``(STARTED, id, pid)``,
  ``(FAILED, id, errno)`` and ``(EXITED, pid, raw wait status)``.  A
  child's ``STARTED`` always comes before its ``EXITED``.

The helper ignores SIGINT, SIGTERM and SIGHUP: whoever signals superd's
whole process group wants superd to stop its children, which it does
through this helper; it exits when superd closes the socket (or dies).
"""

from __future__ import annotations

import errno
import fcntl
import marshal
import os
import select
import signal
import socket
import sys
from collections import deque
from typing import Any, Deque, Dict, List, Optional, Sequence, Tuple

#: The helper's end of the socket, in the helper.
SOCKET_FD = 3
#: Reply kinds.
READY, STARTED, FAILED, EXITED = 0, 1, 2, 3
#: The largest request (marshalled) and how many descriptors it may carry.
MAX_REQUEST = 1 << 20
MAX_FDS = 16
#: Replies held back at most while requests wait to be served: each is
#: late by one spawn per reply after it (START, EXIT and the service's
#: instance count learn of it that much later).
HOLD_REPLIES = 8
#: Replies per message at most, well inside a socket buffer.
REPLIES_PER_MESSAGE = 2048

Reply = Tuple[int, int, int]
_RECV_FLAGS = int(socket.MSG_DONTWAIT | socket.MSG_CMSG_CLOEXEC)
_DUP2 = os.POSIX_SPAWN_DUP2
#: A child's credentials: uid, gid, supplementary groups.
Plan = Tuple[int, int, Tuple[int, ...]]


def _default_signals() -> frozenset[int]:
    # As superd.proc.spawner: every signal back to its default disposition.
    return frozenset(signal.valid_signals()) - {signal.SIGKILL, signal.SIGSTOP}


class Helper:
    """The helper's loop: requests in, children out, exits reported."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._sigdef = _default_signals()
        self._thread: Any = None  # superd.proc.credentials.SpawningThread, when needed
        self._wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        # The C-level handler writes to the pipe; the no-op Python handler
        # only has to exist for SIGCHLD to be delivered at all.
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)

    def run(self) -> None:
        """Serve until superd closes its end."""
        poll = select.poll()
        sock_fd = self._sock.fileno()
        poll.register(sock_fd, select.POLLIN)
        poll.register(self._wake_r, select.POLLIN)
        self._send([(READY, os.getpid(), 0)])
        # Requests are taken off the socket as soon as they arrive and
        # served one per turn: superd's send buffer holds only so many
        # (each carries an environment), and a full one makes superd spawn
        # on the reactor thread.
        queue: Deque[Tuple[bytes, List[int]]] = deque()
        done = False
        replies: List[Reply] = []
        while not done:
            for fd, _ in poll.poll(0 if queue else None):
                if fd == sock_fd:
                    done = self._receive(queue)
                else:
                    self._reap(replies)
            if queue and not done:
                data, fds = queue.popleft()
                try:
                    replies.append(self._serve(marshal.loads(data), fds))
                finally:
                    for fd in fds:
                        os.close(fd)
            # While requests wait, replies gather (up to HOLD_REPLIES): one
            # message and one wake-up of superd for several children.
            if replies and (not queue or done or len(replies) >= HOLD_REPLIES):
                self._send(replies)
                replies = []
        for _, fds in queue:
            for fd in fds:
                os.close(fd)

    def _receive(self, queue: Deque[Tuple[bytes, List[int]]]) -> bool:
        """Queue every request waiting on the socket; True once superd has gone."""
        cmsg_space = socket.CMSG_SPACE(MAX_FDS * 4)
        while True:
            try:
                data, ancdata, _flags, _ = self._sock.recvmsg(MAX_REQUEST, cmsg_space, _RECV_FLAGS)
            except BlockingIOError:
                return False
            except ConnectionError:
                return True
            fds: List[int] = []
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    usable = len(payload) - len(payload) % 4
                    fds.extend(memoryview(payload)[:usable].cast("i"))
            if not data:
                for fd in fds:
                    os.close(fd)
                return True
            queue.append((data, fds))

    def _serve(self, request: Tuple[Any, ...], fds: Sequence[int]) -> Reply:
        rid, executable, argv, env, targets, plan, nice, umask = request
        moved: List[int] = []
        try:
            try:
                actions = self._actions(targets, fds, moved)
                pid = self._spawn(executable, argv, env, actions, plan, nice, umask)
            finally:
                for fd in moved:
                    os.close(fd)
        except OSError as e:
            return (FAILED, rid, e.errno or 0)
        return (STARTED, rid, pid)

    @staticmethod
    def _actions(targets: Sequence[Sequence[int]], fds: Sequence[int],
                 moved: List[int]) -> List[Tuple[int, int, int]]:
        """The dup2 actions putting ``fds`` on the child's numbers; copies
        made on the way are appended to ``moved`` (the caller closes them)."""
        if len(targets) != len(fds):  # descriptors lost on the way (MSG_CTRUNC)
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        if len(fds) == 1 and targets[0] == [0, 1, 2] and fds[0] > 2:
            fd = fds[0]  # the usual request: the connection as 0, 1 and 2
            return [(_DUP2, fd, 0), (_DUP2, fd, 1), (_DUP2, fd, 2)]
        highest = max((child for numbers in targets for child in numbers), default=2)
        actions: List[Tuple[int, int, int]] = []
        for fd, numbers in zip(fds, targets, strict=True):
            if fd <= highest:
                # A dup2 onto a child's number must not overwrite a
                # descriptor that a later action still reads from.
                fd = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, highest + 1)
                moved.append(fd)
            actions.extend((os.POSIX_SPAWN_DUP2, fd, child) for child in numbers)
        actions.sort(key=lambda action: action[2])
        return actions

    def _spawn(self, executable: str, argv: Tuple[str, ...], env: Dict[str, str],
               actions: List[Tuple[int, int, int]], plan: Optional[Plan],
               nice: Optional[int], umask: Optional[int]) -> int:
        def call(resetids: bool = False) -> int:
            return os.posix_spawn(executable, argv, env, file_actions=actions, setsid=True,
                                  setsigdef=self._sigdef, setsigmask=(), resetids=resetids)

        old_umask = None if umask is None else os.umask(umask)
        try:
            if plan is None and nice is None:
                return call()
            thread = self._spawning_thread()
            from superd.proc.credentials import CredentialPlan
            credentials = None if plan is None else CredentialPlan(plan[0], plan[1], tuple(plan[2]))
            return int(thread.run_as(credentials, nice, lambda: call(plan is not None)))
        finally:
            if old_umask is not None:
                os.umask(old_umask)

    def _spawning_thread(self) -> Any:
        if self._thread is None:
            from superd.proc.credentials import Identity, SpawningThread
            self._thread = SpawningThread.for_this_machine(Identity.current())
        return self._thread

    def _reap(self, replies: List[Reply]) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            replies.append((EXITED, pid, status))

    def _send(self, replies: List[Reply]) -> None:
        for start in range(0, len(replies), REPLIES_PER_MESSAGE):
            try:
                self._sock.send(marshal.dumps(replies[start:start + REPLIES_PER_MESSAGE]))
            except OSError:
                # superd has gone: the next read of the socket says so.
                return


def _close_inherited(keep: int) -> None:
    """Close every descriptor but 0-2 and ``keep``: whatever the helper
    inherited by mistake (superd's own are close-on-exec) would otherwise
    reach every child it starts."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd != keep:
            try:
                os.close(fd)
            except OSError:
                pass  # the listing's own descriptor, closed already


def main(fd: int = SOCKET_FD) -> None:
    """Run the helper on the socket at ``fd`` until superd closes it."""
    _close_inherited(fd)
    sock = socket.socket(fileno=fd)
    sock.set_inheritable(False)
    sock.setblocking(True)
    Helper(sock).run()


if __name__ == "__main__":  # pragma: no cover - started with -c by superd
    main(int(sys.argv[1]) if len(sys.argv) > 1 else SOCKET_FD)
