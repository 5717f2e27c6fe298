"""
An example of a user's own protocol served by superd: a line-based greeter.

Configure it with ``type = INTERNAL`` and ``factory = superd_greeter:greeter``
(this directory on ``PYTHONPATH``).  It has attributes of its own, declared
in ``greeter.superd_attributes`` and checked by superd at load:

* ``greeting`` (required): the line sent when a client connects;
* ``greeter_idle`` (optional, seconds, default 60): idle clients are closed.

Each line a client sends is answered with ``Hello, <line>!``; ``quit``
closes.  Access control, limits, TLS and logging are superd's, exactly as
for its builtins.
"""

from __future__ import annotations

from typing import Any, Tuple

from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineOnlyReceiver
from twisted.protocols.policies import TimeoutMixin

from superd.api import UserAttribute, UserContext

__all__ = ["Greeter", "GreeterFactory", "greeter"]


class Greeter(LineOnlyReceiver, TimeoutMixin):
    """Greets, answers each line, closes on ``quit`` or when idle."""

    delimiter = b"\n"
    MAX_LENGTH = 256

    def __init__(self, greeting: str, idle: float, clock: Any) -> None:
        self.greeting = greeting.encode("utf-8")
        self.idle = idle
        self.callLater = clock.callLater  # type: ignore[method-assign]  # injected clock

    def connectionMade(self) -> None:
        self.setTimeout(self.idle)
        self.transport.write(self.greeting + b"\r\n")  # type: ignore[union-attr]

    def lineReceived(self, line: bytes) -> None:
        self.resetTimeout()
        name = line.rstrip(b"\r")
        if name == b"quit":
            self.transport.write(b"Bye\r\n")  # type: ignore[union-attr]
            self.transport.loseConnection()  # type: ignore[union-attr]
            return
        self.transport.write(b"Hello, " + name + b"!\r\n")  # type: ignore[union-attr]

    def lineLengthExceeded(self, line: bytes) -> None:
        self.transport.loseConnection()  # type: ignore[union-attr]

    def timeoutConnection(self) -> None:
        self.transport.abortConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Any = None) -> None:
        self.setTimeout(None)


def _greeting(words: Tuple[str, ...]) -> str:
    return " ".join(words)


def _seconds(words: Tuple[str, ...]) -> float:
    if len(words) != 1:
        raise ValueError(f"expected 1 value, got {len(words)}")
    try:
        value = float(words[0])
    except ValueError:
        raise ValueError(f"expected a number of seconds, got {words[0]!r}") from None
    if value <= 0:
        raise ValueError(f"expected a number of seconds > 0, got {words[0]!r}")
    return value


class GreeterFactory(Factory):
    """Builds a ``Greeter`` per connection with the service's settings."""

    def __init__(self, greeting: str, idle: float, clock: Any) -> None:
        self.greeting = greeting
        self.idle = idle
        self.clock = clock

    def buildProtocol(self, addr: Any) -> Greeter:
        protocol = Greeter(self.greeting, self.idle, self.clock)
        protocol.factory = self
        return protocol


def greeter(context: UserContext) -> GreeterFactory:
    """The protocol factory for one greeter service."""
    return GreeterFactory(context.settings["greeting"], context.settings["greeter_idle"],
                          context.reactor)


greeter.superd_attributes = {  # type: ignore[attr-defined]
    "greeting": UserAttribute(parse=_greeting, required=True),
    "greeter_idle": UserAttribute(parse=_seconds, default=60.0),
}
