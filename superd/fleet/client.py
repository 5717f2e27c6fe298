"""
A minimal non-blocking Redis client on Twisted: commands and pub/sub.

Why our own and not ``txredisapi`` or ``redis`` in a thread: superd needs
five commands (EVAL, SCAN, MGET, SUBSCRIBE, PING) and hard guarantees when
the server misbehaves -- bounded reply sizes, a bounded queue of unanswered
commands, a timeout on every command, and a dropped connection (never a
stuck one) on anything that is not RESP.  With ``superd.fleet.resp`` that is
about 150 lines we can read in full; ``txredisapi`` is a large API surface
whose buffering and failure paths we would have to audit instead, and a
thread per ``redis`` client moves the same problems out of the reactor's
sight.

``RedisProtocol`` pipelines commands: ``command(*args)`` returns a Deferred
fired with the reply (a ``RedisError`` reply errbacks).  ``SubscriberProtocol``
subscribes to one channel and calls ``on_message(data)`` per message.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Optional, Union

from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from superd.fleet.resp import ProtocolError, RedisError, Reply, RespParser, encode
from superd.observe import events

__all__ = ["CommandRefused", "RedisProtocol", "SubscriberProtocol"]

_log = Logger(namespace="superd.fleet")

#: Unanswered commands on one connection; more are refused at once.
MAX_PENDING = 256
#: Seconds a command may wait for its reply before the connection is dropped.
COMMAND_TIMEOUT = 5.0


class CommandRefused(Exception):
    """The command was not sent: not connected, or too many unanswered."""


class _RespProtocol(Protocol):
    """Feeds a bounded parser; anything that is not RESP drops the connection."""

    def __init__(self, clock: Any, on_lost: Callable[[Any], None]) -> None:
        self.clock = clock
        self._parser = RespParser()
        self._on_lost = on_lost
        #: Why we dropped the connection, if we did (for the owner's log line).
        self.drop_reason: Optional[str] = None
        #: Why the connection was lost, as the transport said (a TLS
        #: handshake that failed says why here).
        self.lost_reason: Optional[str] = None

    def dataReceived(self, data: bytes) -> None:
        try:
            self._parser.feed(data)
            while True:
                complete, reply = self._parser.next_reply()
                if not complete:
                    return
                self.reply_received(reply)
        except ProtocolError as e:
            self.drop(f"protocol error: {e}")

    def drop(self, why: str) -> None:
        """Abort the connection (the client service reconnects with back-off)."""
        # Debug only: the owner logs an outage once, with this reason in it;
        # a broken server must not make a log line per reconnection.
        _log.debug("dropping the ban store connection: {why}", event=events.EV_BAN_STORE,
                   state="drop", why=why)
        if self.drop_reason is None:
            self.drop_reason = why
        transport: Any = self.transport
        if transport is not None:
            transport.abortConnection()

    def reply_received(self, reply: Reply) -> None:
        raise NotImplementedError

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.lost_reason is None:
            self.lost_reason = _reason_text(reason)
        self._on_lost(self)


def _reason_text(reason: Failure) -> str:
    """A short reason a connection ended, for the owner's one log line."""
    value = reason.value
    if isinstance(value, ConnectionDone):
        return "connection closed by the server"
    args = getattr(value, "args", None)
    if args and isinstance(args[0], list) and args[0] and isinstance(args[0][0], tuple):
        # OpenSSL's [(lib, function, reason), ...]: the reasons say it.
        return "TLS: " + "; ".join(str(item[-1]) for item in args[0])
    return str(value) or type(value).__name__


class RedisProtocol(_RespProtocol):
    """One command connection with pipelining, bounded and with timeouts."""

    def __init__(self, clock: Any, on_lost: Callable[[Any], None],
                 timeout: float = COMMAND_TIMEOUT, max_pending: int = MAX_PENDING,
                 on_connected: Optional[Callable[["RedisProtocol"], None]] = None) -> None:
        super().__init__(clock, on_lost)
        self._pending: deque[tuple[Deferred[Reply], Any]] = deque()
        self._timeout = timeout
        self._max_pending = max_pending
        self._on_connected = on_connected
        self._lost = False

    def connectionMade(self) -> None:
        if self._on_connected is not None:
            self._on_connected(self)

    def command(self, *args: Union[bytes, str, int]) -> Deferred[Reply]:
        """Send a command; the Deferred fires with its reply."""
        if self._lost or self.transport is None:
            return fail(CommandRefused("not connected"))
        if len(self._pending) >= self._max_pending:
            return fail(CommandRefused(f"{self._max_pending} commands unanswered"))
        d: Deferred[Reply] = Deferred()
        timer = self.clock.callLater(self._timeout, self.drop,
                                     f"no reply within {self._timeout:g}s")
        self._pending.append((d, timer))
        self.transport.write(encode(*args))  # type: ignore[union-attr]
        return d

    def reply_received(self, reply: Reply) -> None:
        if not self._pending:
            self.drop("reply without a command")
            return
        d, timer = self._pending.popleft()
        timer.cancel()
        if isinstance(reply, RedisError):
            d.errback(reply)
        else:
            d.callback(reply)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._lost = True
        pending, self._pending = self._pending, deque()
        for d, timer in pending:
            if timer.active():
                timer.cancel()
            d.errback(CommandRefused("connection lost"))
        super().connectionLost(reason)


class SubscriberProtocol(_RespProtocol):
    """A connection subscribed to ``channel``; each message goes to ``on_message``."""

    def __init__(self, clock: Any, on_lost: Callable[[Any], None], channel: bytes,
                 on_message: Callable[[bytes], None],
                 on_subscribed: Optional[Callable[[Any], None]] = None,
                 password: Optional[str] = None,
                 username: Optional[str] = None) -> None:
        super().__init__(clock, on_lost)
        self.channel = channel
        self._on_message = on_message
        self._on_subscribed = on_subscribed
        self._password = password
        self._username = username
        self._confirm: Any = None

    def connectionMade(self) -> None:
        transport: Any = self.transport
        if self._password is not None:
            user = () if self._username is None else (self._username,)
            transport.write(encode(b"AUTH", *user, self._password))
        transport.write(encode(b"SUBSCRIBE", self.channel))
        self._confirm = self.clock.callLater(COMMAND_TIMEOUT, self.drop,
                                             "SUBSCRIBE not confirmed")

    def reply_received(self, reply: Reply) -> None:
        if self._password is not None:
            self._password = None
            if reply != b"OK":
                self.drop(f"AUTH refused: {reply!r:.80}")
            return
        if not (isinstance(reply, list) and len(reply) == 3
                and isinstance(reply[0], bytes)):
            self.drop("unexpected reply on the subscription")
            return
        kind, channel, data = reply
        if kind == b"subscribe" and channel == self.channel:
            if self._confirm is not None and self._confirm.active():
                self._confirm.cancel()
            if self._on_subscribed is not None:
                self._on_subscribed(self)
        elif kind == b"message" and channel == self.channel and isinstance(data, bytes):
            self._on_message(data)
        else:
            self.drop("unexpected message on the subscription")

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._confirm is not None and self._confirm.active():
            self._confirm.cancel()
        super().connectionLost(reason)
