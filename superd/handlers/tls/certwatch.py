"""
Watching the certificate files of every running TLS service, so that they
are re-read when they change (``superd.handlers.tls.livecert``), without a
reload.

certbot and other ACME clients renew a certificate by writing new files and
swapping symbolic links: one per file in ``live/NAME/``, or one to a whole
directory.  ``CertificateFiles`` watches the files, and every symbolic link
on the way to them, with inotify (``superd.access.changewatch``, its
descriptor registered with the reactor, so a change is heard when it is
written), and acts ``SETTLE`` seconds after the last event -- at most
``MAX_SETTLE`` after the first -- so that the certificate and the key of one
renewal, written one after the other, are read together.  As a bounded
fallback for what inotify cannot see (a network file system, a link swapped
where nothing watches, no inotify at all), it also looks every ``FALLBACK``
seconds.  Looking costs a ``stat`` per file; only files that changed are
read.

One watch serves the whole daemon (an inotify instance is a per-user
resource), over the files of the services that run now: each TLS handler
adds itself while it serves a socket and removes itself after.
"""

from __future__ import annotations

import os
from pathlib import PurePosixPath
from typing import Any, Callable, List, Optional, Protocol, Sequence, Tuple

from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import LoopingCall

from superd.access.changewatch import ChangeWatch

__all__ = ["FALLBACK", "MAX_SETTLE", "SETTLE", "CertificateFiles", "Watched",
           "file_state", "links_to"]

#: Seconds after the last change before the files are read.
SETTLE = 0.5
#: A stream of changes is read at most this long after its first.
MAX_SETTLE = 2.0
#: Seconds between looks at the files whatever inotify says.
FALLBACK = 5.0

FileState = Tuple[object, ...]


class Watched(Protocol):
    """What ``CertificateFiles`` watches for: one service's files."""

    def watched_paths(self) -> Sequence[str]:
        """The files, and what must be watched to see them replaced."""

    def check(self) -> None:
        """Look at the files; reload them if they changed."""


def file_state(paths: Sequence[str]) -> FileState:
    """What ``stat`` says of each file (following links), or why it cannot."""
    found: List[object] = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError as e:
            found.append(("error", e.errno))
        else:
            found.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return tuple(found)


def links_to(path: str) -> List[str]:
    """``path`` and every directory on the way to it that is a symbolic link:
    replacing any of them replaces the file."""
    found, current = [path], PurePosixPath("/")
    for part in PurePosixPath(path).parts[1:-1]:
        current = current / part
        if os.path.islink(current):
            found.append(str(current))
    return found


class CertificateFiles:
    """The daemon's watch over the certificate files of its TLS services."""

    def __init__(self, reactor: Any,
                 start_watch: Callable[..., Optional[ChangeWatch]] = ChangeWatch.start) -> None:
        self._reactor = reactor
        self._start_watch = start_watch
        self._members: List[Watched] = []
        self._watch: Optional[ChangeWatch] = None
        self._paths: Tuple[str, ...] = ()
        self._pending: Optional[IDelayedCall] = None
        self._first = 0.0
        self._fallback: Optional[LoopingCall] = None

    def add(self, member: Watched) -> None:
        """Watch ``member``'s files from now on (and look at them now)."""
        self._members.append(member)
        member.check()
        self._update()

    def remove(self, member: Watched) -> None:
        """Stop watching ``member``'s files."""
        if member in self._members:
            self._members.remove(member)
        self._update()

    def check(self) -> None:
        """Look at every member's files now."""
        pending, self._pending = self._pending, None
        if pending is not None and pending.active():
            pending.cancel()
        if self._watch is not None:
            self._watch.changed()  # reads the events and follows moved links
        for member in list(self._members):
            member.check()
        self._update()  # a link may lead elsewhere now

    def _changed(self) -> None:
        now = self._reactor.seconds()
        if self._pending is None:
            self._first = now
            self._pending = self._reactor.callLater(SETTLE, self.check)
        elif now - self._first < MAX_SETTLE:
            self._pending.reset(SETTLE)

    def _update(self) -> None:
        if not self._members:
            self._stop()
            return
        paths = tuple(sorted({p for m in self._members for p in m.watched_paths()}))
        if paths != self._paths:
            self._close_watch()
            self._paths = paths
            self._watch = self._start_watch(self._reactor, paths, self._reactor.seconds,
                                            self._changed)
        if self._fallback is None:
            self._fallback = LoopingCall(self.check)
            self._fallback.clock = self._reactor
            self._fallback.start(FALLBACK, now=False)

    def _close_watch(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.stop()

    def _stop(self) -> None:
        self._close_watch()
        self._paths = ()
        fallback, self._fallback = self._fallback, None
        if fallback is not None and fallback.running:
            fallback.stop()
        pending, self._pending = self._pending, None
        if pending is not None and pending.active():
            pending.cancel()
