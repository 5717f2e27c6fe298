"""
Whether some files may have changed since superd last looked, answered
without touching them: the per-connection check of hosts.allow and
hosts.deny costs a ``poll()`` of an inotify descriptor instead of two
``stat()`` calls, which are slow where each path lookup is (an overlay
file system).

The promise stays the one ``stat()`` gave: a change written before a
connection arrives applies to that connection (the caller asks after
accepting it, or after accepting a whole batch).  The kernel queues an
inotify event in the writer's own ``write()``/``rename()``, and
``changed()`` looks
at the queue synchronously, so an event can never be "on its way".  The
watches are on the files' directories (an editor that writes a new file and
renames it over the old one replaces the inode) and on those of their
symlink targets (a file managed elsewhere and linked into /etc); any event
in them counts, so even a change of an intermediate symlink (Kubernetes
swaps ``..data``) is seen when it happens in a watched directory.

Where inotify cannot see a change -- a network file system changed by
another host, a symlink in an unwatched directory -- ``changed()`` also says
yes once ``MAX_TRUST`` seconds have passed, so such a change takes effect
within a second.  A directory that cannot be watched (it does not exist:
a dangling symlink; the watch limit) makes every answer yes, as does a
failed rebuild, and watching is tried again once a ``MAX_TRUST``.  Without
inotify at all (``start`` returns None) the caller stats on every check.

Twisted's ``INotify`` does the system calls and the parsing; it is not
registered with the reactor, because its events are read here, when asked.
It gives up (closes itself) when a watched directory is deleted; the watch
is then rebuilt on the next question.

A watch made with ``on_change`` is for callers that are not asked per
connection (the certificate files of TLS services): its descriptor is
registered with the reactor, which calls ``on_change()`` for each event as
it arrives; the caller then asks ``changed()`` as usual.
"""

from __future__ import annotations

import os
import select
from collections.abc import Callable, Sequence
from typing import Any

from twisted.logger import Logger
from twisted.python.filepath import FilePath

from superd.observe import events

__all__ = ["MAX_TRUST", "ChangeWatch"]

_log = Logger(namespace="superd.access")

#: Seconds an answer of "nothing changed" may rest on inotify alone.
MAX_TRUST = 1.0


def _inotify() -> Any:
    # Imported when used: the module raises ImportError where there is no
    # inotify (not Linux, or no libc symbol).
    from twisted.internet import inotify
    return inotify


class ChangeWatch:
    """Tells whether any of ``paths`` may have changed since last asked."""

    def __init__(self, reactor: Any, paths: Sequence[str],
                 clock: Callable[[], float],
                 on_change: Callable[[], object] | None = None) -> None:
        inotify = _inotify()
        self._mask: int = (
            inotify.IN_MODIFY | inotify.IN_ATTRIB | inotify.IN_CLOSE_WRITE
            | inotify.IN_MOVED_FROM | inotify.IN_MOVED_TO | inotify.IN_CREATE
            | inotify.IN_DELETE | inotify.IN_DELETE_SELF | inotify.IN_MOVE_SELF)
        self._reactor = reactor
        self._on_change = on_change
        self._paths = tuple(paths)
        self._clock = clock
        self._poll = select.poll()
        self._dirty = False
        self._since = 0.0
        #: Every directory that must be watched is (else: always "changed").
        self._complete = False
        self._watched: set[str] = set()
        self._notify: Any = None
        self._registered = -1
        self._open()  # raises when there is no inotify at all
        self._dirty = True  # nobody has looked yet

    @classmethod
    def start(cls, reactor: Any, paths: Sequence[str], clock: Callable[[], float],
              on_change: Callable[[], object] | None = None) -> ChangeWatch | None:
        """A watch over ``paths``, or None where inotify is unavailable."""
        try:
            return cls(reactor, paths, clock, on_change)
        except Exception as e:  # ImportError, INotifyError (instance limit) ...
            _log.info("cannot watch {paths} with inotify ({error}); checking"
                      " them on every connection", event=events.EV_HOSTS_WATCH,
                      paths=list(paths), error=str(e))
            return None

    def changed(self) -> bool:
        """
        True if the files may have changed since the last True (and the
        first time): the caller then looks at them.
        """
        now = self._clock()
        notify = self._notify
        if notify is None or not notify.connected:
            # A watched directory was deleted (Twisted's INotify then closes
            # itself), or a rebuild failed (then retried once a MAX_TRUST):
            # until a new watch stands, every answer is "changed".
            if notify is not None or now - self._since >= MAX_TRUST:
                self._since = now
                self._reopen()
            return True
        if self._poll.poll(0):
            notify.doRead()  # runs _event for each queued event
        if self._dirty or now - self._since >= MAX_TRUST:
            # Cleared before the caller looks: a change made from now on
            # leaves an event that the next question sees.
            self._dirty = False
            self._since = now
            self._watch_targets()  # a symlink may point elsewhere now
            return True
        return not self._complete  # a directory could not be watched

    def stop(self) -> None:
        """Close the inotify descriptor."""
        self._close()

    def _open(self) -> None:
        notify = _inotify().INotify(self._reactor)
        self._notify = notify
        self._watched = set()
        self._registered = notify.fileno()
        self._poll.register(self._registered, select.POLLIN)
        self._watch_targets()
        self._dirty = False  # the caller looks now
        if self._on_change is not None:
            notify.startReading()

    def _close(self) -> None:
        notify, self._notify = self._notify, None
        if notify is None:
            return
        self._poll.unregister(self._registered)
        self._registered = -1
        if notify.connected:
            notify.loseConnection()

    def _reopen(self) -> None:
        self._close()
        try:
            self._open()
        except Exception:
            self._close()

    def _watch_targets(self) -> None:
        notify = self._notify
        if notify is None or not notify.connected:
            self._complete = False
            return
        complete = True
        for path in self._paths:
            for directory in {os.path.dirname(os.path.abspath(path)),
                              os.path.dirname(os.path.realpath(path))}:
                if directory in self._watched:
                    continue
                try:
                    notify.watch(FilePath(directory), mask=self._mask,
                                 callbacks=[self._event])
                except Exception as e:  # INotifyError: no such directory, watch limit
                    if os.path.isdir(directory):
                        _log.info("cannot watch {directory}: {error}",
                                  event=events.EV_HOSTS_WATCH, directory=directory, error=str(e))
                    complete = False
                    continue
                self._watched.add(directory)
        self._complete = complete

    def _event(self, ignored: object, path: FilePath[Any], mask: int) -> None:
        self._dirty = True
        if self._on_change is not None:
            self._on_change()
