"""
The two clock services: daytime (xinetd's exact bytes) and time (RFC 868).

Both read the injected clock (``runtime.reactor.seconds()``), never the
system clock directly, so tests pin the instant.  The formatting functions
are pure; ``ReplyStream`` sends one finite reply and closes.

* daytime: ``DD MON YYYY HH:MM:SS ZONE\\r\\n`` in local time, with an
  uppercase English month whatever the locale, exactly as xinetd
  (``"%02d %s %d %02d:%02d:%02d"`` then ``strftime(" %Z\\r\\n")``),
  e.g. ``29 NOV 2026 22:18:01 UTC\\r\\n``.  RFC 867 leaves the format free.
* time: RFC 868, the seconds since 1900-01-01T00:00Z as a 32-bit big-endian
  unsigned integer, modulo 2**32 (it wraps on 2036-02-07T06:28:16Z, as the
  RFC's clients expect).

``ReplyHandler`` serves both without a Twisted transport when it can: the
reply is one short write, so the port may hand over the bare accepted
descriptor (``answer_fd``), as xinetd answers them in-process.
"""

from __future__ import annotations

import functools
import math
import os
import struct
import time
from typing import Callable, Final

from superd.config.model import ServiceConfig
from superd.core.runtime import Runtime
from superd.core.session import Peer
from superd.handlers.builtins.base import BuiltinProtocol, BuiltinStreamHandler
from superd.observe.events import emit_session_start

__all__ = [
    "RFC868_OFFSET",
    "ReplyHandler",
    "ReplyStream",
    "daytime_bytes",
    "time_bytes",
]

#: Seconds from 1900-01-01T00:00Z (RFC 868's epoch) to the Unix epoch.
RFC868_OFFSET: Final = 2208988800

# Not strftime("%b"): that follows the locale, xinetd's table does not.
_MONTHS: Final = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                  "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


def daytime_bytes(seconds: float) -> bytes:
    """xinetd's daytime reply for the Unix time ``seconds``, in local time."""
    # A busy server answers many clients within one second: format the line
    # once a second.  The zone is part of the key, so a tzset() shows at once.
    return _daytime_line(math.floor(seconds), time.tzname, time.timezone)


@functools.lru_cache(maxsize=2)
def _daytime_line(second: int, zone: tuple[str, str], offset: int) -> bytes:
    tm = time.localtime(second)
    # xinetd: "%02d %s %d %02d:%02d:%02d" (day, month, year, H, M, S).
    text = (f"{tm.tm_mday:02d} {_MONTHS[tm.tm_mon - 1]} {tm.tm_year}"
            f" {tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d}")
    text += time.strftime(" %Z\r\n", tm)
    return text.encode("ascii", "replace")


def time_bytes(seconds: float) -> bytes:
    """RFC 868's 4-byte reply for the Unix time ``seconds``."""
    value = (math.floor(seconds) + RFC868_OFFSET) % 2**32
    return struct.pack("!I", value)


class ReplyStream(BuiltinProtocol):
    """Sends one reply computed from the clock, then closes (flush, then FIN)."""

    #: Builds the reply from the injected clock's time.
    render: Callable[[float], bytes] = staticmethod(time_bytes)

    def serve(self) -> None:
        self.transport.write(self.render(self.runtime.seconds()))
        self.close_gracefully()


class DaytimeStream(ReplyStream):
    """Stream daytime: the date line, then close."""

    render = staticmethod(daytime_bytes)


class TimeStream(ReplyStream):
    """Stream time: four bytes, then close."""

    render = staticmethod(time_bytes)


class ReplyHandler(BuiltinStreamHandler):
    """
    The handler of daytime and time.  ``protocol_for`` serves a connection
    that has a transport (TLS, banners, USERID); ``answer_fd`` answers a bare
    accepted descriptor, which ``superd.net.takingport.TakingPort`` offers
    when the access policies decide at once.  That skips the transport, the
    protocol and the close timer, and even the session: the answer is over
    before the call returns, so a session would be opened and ended without
    anything able to see it.
    """

    def __init__(self, service: ServiceConfig, runtime: Runtime,
                 factory: type[ReplyStream]) -> None:
        super().__init__(service, runtime, factory)
        self._render = factory.render
        self._now = runtime.reactor.seconds  # Runtime.seconds, one call fewer

    def answer_fd(self, peer: Peer, fd: int) -> None:
        """Write the reply to ``fd`` for ``peer``; the port closes it (FIN) afterwards."""
        emit_session_start(self.service, 0, peer)  # emit_served_start, one call fewer
        try:
            # The descriptor is blocking, but a reply of a few bytes into the
            # empty send buffer of a new connection cannot block.
            os.write(fd, self._render(self._now()))
        except OSError:
            pass  # reset already: nobody is left to answer, as on the transport path
