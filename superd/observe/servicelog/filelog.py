"""
``log_type = FILE path [soft [hard]]``: one append-only service log file.

A ``FileSink`` owns one descriptor opened ``O_CREAT|O_APPEND|O_WRONLY``, mode
0644, as xinetd does.  Lines are written with ``os.write`` on the
``O_APPEND`` descriptor, so the kernel appends each write atomically.

Without ``after_turn`` each line is one write, done before ``write()``
returns.  With ``after_turn`` (the daemon passes the reactor's
``callLater(0, ...)``), the lines of one reactor turn are joined and written
by one ``os.write`` when the turn's I/O is handled, before the reactor waits
again: a busy daemon serves many connections per turn, and on a journalled
file system each write (which also updates the file's times) costs more
than rendering the line.  A line is therefore in the file at most one
reactor turn after it was logged; ``flush()`` writes at once, and
``close()``/``reopen()`` (stop, reload, rotation) flush first, so a rotated
file gets every line logged before the reopen.  Only a superd killed
in the middle of a turn loses that turn's lines.  A sink with size limits
writes each line at once (limits are counted per line, as below).

Size limits follow ``xlog/filelog.c``: the size is taken with ``fstat`` on
open and after each EXIT line and counted per write; once it is above
``soft`` one alert is logged, once it is above ``hard`` an alert is logged and
the sink stops writing until ``reopen()``.  A failed open or write (full
disk, unwritable path) never raises: it is logged once through the main log
and the sink is suspended until ``reopen()``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Callable

from twisted.logger import Logger

from superd.config.model import FileLog
from superd.observe.events import EV_LIMIT, EV_SERVICE_LOG_ERROR

__all__ = [
    "AfterTurn",
    "FileSink",
    "effective_limits",
    "one_line",
    "xinetd_timestamp",
]


#: ``open(2)`` flags.  O_NONBLOCK keeps a FIFO without a reader from
#: blocking the reactor (it has no effect on regular files); O_CLOEXEC keeps
#: the descriptor out of spawned servers.
OPEN_FLAGS = (os.O_CREAT | os.O_APPEND | os.O_WRONLY | os.O_NONBLOCK
              | os.O_CLOEXEC | os.O_NOCTTY)
FILE_MODE = 0o644

_KIB = 1024

Opener = Callable[[str, int, int], int]
Writer = Callable[[int, bytes], int]
LocalTime = Callable[[float], time.struct_time]
#: Calls its argument once the reactor has handled the current turn's I/O
#: (``lambda f: reactor.callLater(0, f)``).
AfterTurn = Callable[[Callable[[], None]], object]

_log = Logger(namespace="superd.servicelog")


def effective_limits(target: FileLog) -> tuple[int | None, int | None]:
    """
    ``(soft, hard)`` in bytes for ``target``.

    With only ``soft`` given, ``hard = soft + clamp(soft / 100, 5 KiB,
    20 KiB)``, as xinetd.  A lone ``hard`` (not writable in xinetd syntax)
    is honoured as both limits.
    """
    soft, hard = target.soft, target.hard
    if soft is None:
        return hard, hard
    if hard is None:
        hard = soft + min(max(soft // 100, 5 * _KIB), 20 * _KIB)
    return soft, hard


def xinetd_timestamp(tm: time.struct_time) -> str:
    """xinetd's ``YY/M/D@HH:MM:SS`` (month and day not zero-padded)."""
    return (f"{tm.tm_year % 100:02d}/{tm.tm_mon}/{tm.tm_mday}"
            f"@{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d}")


def one_line(line: str) -> str:
    """``line`` with CR and LF escaped, so one record is one line of the file."""
    if "\n" in line or "\r" in line:
        return line.replace("\r", "\\r").replace("\n", "\\n")
    return line


class FileSink:
    """One open service log file, shared by every service naming the same target."""

    def __init__(self, target: FileLog, owner: str, *,
                 opener: Opener = os.open, writer: Writer = os.write,
                 localtime: LocalTime = time.localtime,
                 after_turn: AfterTurn | None = None) -> None:
        """
        ``owner`` is the id of the first service using the file, named in
        messages about the file itself (open failures).  ``after_turn``
        gathers each reactor turn's lines into one write (see the module).
        Call ``open()``.
        """
        self.target = target
        self.owner = owner
        self._soft, self._hard = effective_limits(target)
        self._opener = opener
        self._writer = writer
        self._localtime = localtime
        # Limits are counted line by line: such a sink writes each at once.
        self._after_turn = after_turn if self._soft is None else None
        #: Lines of this turn not written yet, and who logged the last one.
        self._pending: list[bytes] = []
        self._pending_owner = owner
        self._fd: int | None = None
        self._size = 0
        self._warned = False
        self._stamp_second: int | None = None
        self._stamp = ""

    @property
    def is_open(self) -> bool:
        """True while lines are being written (not closed, failed or full)."""
        return self._fd is not None

    @property
    def size(self) -> int:
        """Bytes in the file as last counted (only tracked with limits)."""
        return self._size

    def open(self) -> None:
        """Open the file (logging the failure once if it cannot be opened)."""
        if self._fd is not None:
            return
        try:
            self._fd = self._opener(self.target.path, OPEN_FLAGS, FILE_MODE)
        except OSError as error:
            self._report_failure(self.owner, "open", error)
            return
        self._warned = False
        self._restat(self.owner)

    def reopen(self) -> None:
        """Close and open again: picks up a rotated file, resumes a suspended log."""
        self.close()
        self.open()

    def close(self) -> None:
        """Write what is pending, then close the descriptor; later writes
        are dropped until ``open()``."""
        self.flush()
        fd, self._fd = self._fd, None
        if fd is not None:
            # Nothing useful to do on error: the descriptor is gone either way.
            with contextlib.suppress(OSError):
                os.close(fd)

    def write(self, service_id: str, line: str, now: float) -> None:
        """Append ``line`` with xinetd's time prefix; never raises."""
        fd = self._fd
        if fd is None:
            return
        stamp = self._stamp if int(now) == self._stamp_second else self._prefix(now)
        if "\n" in line or "\r" in line:  # one_line's test, without its call
            line = one_line(line)
        data = f"{stamp}{line}\n".encode("utf-8", "backslashreplace")
        if self._after_turn is not None:
            pending = self._pending
            if not pending:
                self._after_turn(self.flush)
            pending.append(data)
            self._pending_owner = service_id
            return
        try:
            written = self._writer(fd, data)
        except OSError as error:
            self._suspend(service_id, "write", error)
            return
        if written != len(data):
            # A short append to a regular file means the disk filled up.
            self._suspend(service_id, "write",
                          OSError(errno.ENOSPC, "short write"))
            return
        self._account(service_id, line, written)

    def flush(self) -> None:
        """Write the lines gathered in this turn (one write); never raises."""
        pending = self._pending
        if not pending:
            return
        self._pending = []
        fd = self._fd
        if fd is None:
            return
        data = b"".join(pending)
        try:
            written = self._writer(fd, data)
        except OSError as error:
            self._suspend(self._pending_owner, "write", error)
            return
        if written != len(data):
            self._suspend(self._pending_owner, "write",
                          OSError(errno.ENOSPC, "short write"))

    # -- internals -------------------------------------------------------

    def _prefix(self, now: float) -> str:
        # Formatting local time costs more than the write; reuse it within
        # the same second.
        second = int(now)
        if second != self._stamp_second:
            self._stamp_second = second
            self._stamp = xinetd_timestamp(self._localtime(second)) + ": "
        return self._stamp

    def _account(self, service_id: str, line: str, written: int) -> None:
        if self._soft is None:
            return
        if line.startswith("EXIT:"):
            # As xinetd: re-stat after each server exit, so writes by other
            # processes (or a truncating rotation) are counted.
            self._restat(service_id)
            return
        self._size += written
        self._check_limits(service_id)

    def _restat(self, service_id: str) -> None:
        if self._soft is None or self._fd is None:
            return
        try:
            self._size = os.fstat(self._fd).st_size
        except OSError as error:
            self._suspend(service_id, "stat", error)
            return
        self._check_limits(service_id)

    def _check_limits(self, service_id: str) -> None:
        soft, hard = self._soft, self._hard
        if soft is None or hard is None or self._size <= soft:
            return
        if not self._warned:
            self._warned = True
            _log.warn("soft limit exceeded on '{service_id}'", event=EV_LIMIT,
                      limit="log_soft", service_id=service_id,
                      path=self.target.path, size=self._size, threshold=soft)
        if self._size > hard:
            _log.error("hard limit exceeded on '{service_id}'; log closed",
                       event=EV_LIMIT, limit="log_hard", service_id=service_id,
                       path=self.target.path, size=self._size, threshold=hard)
            self.close()

    def _suspend(self, service_id: str, operation: str, error: OSError) -> None:
        self.close()
        self._report_failure(service_id, operation, error)

    def _report_failure(self, service_id: str, operation: str,
                        error: OSError) -> None:
        _log.error(
            "service log {path} of '{service_id}': {operation} failed:"
            " {error}; service logging to it suspended until reload",
            event=EV_SERVICE_LOG_ERROR, service_id=service_id,
            path=self.target.path, operation=operation,
            errno=error.errno, error=error.strerror or str(error))
