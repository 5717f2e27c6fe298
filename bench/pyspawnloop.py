"""
pyspawnloop: the Python floor for "spawn a server per connection" in the
superd benchmark -- the least a Python inetd can do, measured beside superd,
xinetd and the C loop (bench/spawnloop.c) in the spawn figures.

It mirrors spawnloop.c: listen on 127.0.0.1:PORT; on each wake-up accept the
pending connections, ``os.posix_spawn`` the program with the socket as fds 0, 1
and 2 in a new session, drop its own copy; reap finished children.  Where it
has to choose, it does what superd does for a child, so the difference to
superd is superd's own work and nothing else: every catchable signal back to
its default disposition (Python leaves SIGPIPE and SIGXFSZ ignored, and that
survives exec), an empty signal mask, and its own environment plus the peer's
numeric ``REMOTE_HOST``.  Children are reaped on SIGCHLD, as superd reaps
them (superd peeks with ``waitid(WNOWAIT)`` because it may share the process
with other owners' children; this loop owns every child, so ``waitpid(-1)``).

It deliberately has no access control, no accounting, no logging, no limits,
no configuration and no Twisted: whatever superd spends above this loop is
what those cost, and whatever this loop falls short of the C loop is the
interpreter's share, which no Python inetd can avoid.

    python bench/pyspawnloop.py PORT PROGRAM [ARGS...]

Runs until SIGTERM/SIGINT, then exits 0.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import sys
from typing import Mapping, Sequence

# Everything a child should find at its default disposition (as superd.proc.spawner).
SIGDEF = frozenset(signal.valid_signals()) - {signal.SIGKILL, signal.SIGSTOP}
BACKLOG = 1024  # as spawnloop.c
# Accepts per wake-up, as Twisted's tcp.Port.numberAccepts starts (superd's port
# inherits it).  Unbounded, the loop never returns to epoll under steady load
# (a new connection is always pending by the time one is spawned): no child is
# reaped until the load stops, and its CPU is missing from the figure.
ACCEPTS_PER_WAKE = 100


def listen_on(port: int) -> socket.socket:
    """A non-blocking TCP listener on 127.0.0.1:port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(BACKLOG)
    sock.setblocking(False)
    return sock


def spawn_one(conn: int, host: str, argv: Sequence[str], base: Mapping[str, str]) -> int | None:
    """Start ``argv`` on the connected descriptor ``conn``; its pid, or None if it failed."""
    env = dict(base)
    env["REMOTE_HOST"] = host
    # dup2 clears FD_CLOEXEC on 0, 1 and 2; ``conn`` itself is close-on-exec (PEP 446).
    actions = [(os.POSIX_SPAWN_DUP2, conn, target) for target in (0, 1, 2)]
    try:
        return os.posix_spawn(
            argv[0], argv, env, file_actions=actions, setsid=True, setsigdef=SIGDEF, setsigmask=()
        )
    except OSError as e:
        print(f"posix_spawn: {e.strerror}", file=sys.stderr)
        return None


class Loop:
    """The listener and the signal wake-up pipe in one epoll; children by pid."""

    def __init__(self, port: int, argv: Sequence[str]) -> None:
        self.argv = list(argv)
        self.base = dict(os.environ)
        self.listener = listen_on(port)
        self.epoll = select.epoll()
        self.children: set[int] = set()
        self.wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        # The C-level handler writes the signal number here; poll() wakes on it.
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(signum, lambda signum, frame: None)
        self.epoll.register(self.listener.fileno(), select.EPOLLIN)
        self.epoll.register(self.wake_r, select.EPOLLIN)

    def run(self) -> None:
        """Serve until SIGTERM or SIGINT arrives."""
        lfd = self.listener.fileno()
        while True:
            for fd, _ in self.epoll.poll():
                if fd == lfd:
                    self.accept_all()
                elif self.signalled():
                    return

    def signalled(self) -> bool:
        """Reap ended children; True once SIGTERM or SIGINT arrived."""
        try:
            numbers = os.read(self.wake_r, 4096)
        except BlockingIOError:
            numbers = b""
        self.reap()
        return signal.SIGTERM in numbers or signal.SIGINT in numbers

    def accept_all(self) -> None:
        """Accept and hand off the pending connections (up to ACCEPTS_PER_WAKE)."""
        # socket._accept() gives the bare descriptor: no socket object per connection.
        accept = self.listener._accept  # type: ignore[attr-defined]
        for _ in range(ACCEPTS_PER_WAKE):
            try:
                conn, addr = accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # EMFILE, ECONNABORTED ...: as spawnloop.c, say so, go on
                print(f"accept: {e.strerror}", file=sys.stderr)
                return
            pid = spawn_one(conn, addr[0], self.argv, self.base)
            os.close(conn)
            if pid is not None:
                self.children.add(pid)

    def reap(self) -> None:
        """Reap every ended child."""
        while self.children:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.children.discard(pid)

    def close(self) -> None:
        """Stop listening and reap the children that have already finished."""
        self.listener.close()
        self.reap()


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: pyspawnloop PORT PROGRAM [ARGS...]", file=sys.stderr)
        return 2
    loop = Loop(int(argv[0]), argv[1:])
    try:
        loop.run()
    finally:
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
