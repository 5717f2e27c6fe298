"""superd.fleet.client: pipelined commands with bounds and timeouts; the subscription."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from superd.fleet.client import CommandRefused, RedisProtocol, SubscriberProtocol
from superd.fleet.resp import RedisError, encode


def connected(**kw: Any) -> tuple[RedisProtocol, StringTransport, Clock, list[Any]]:
    clock = Clock()
    lost: list[Any] = []
    protocol = RedisProtocol(clock, lost.append, **kw)
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport, clock, lost


def results(d: Any) -> list[Any]:
    out: list[Any] = []
    d.addBoth(out.append)
    return out


def test_pipelined_replies_go_to_their_commands_in_order() -> None:
    """Two commands sent back to back get their own replies; an error reply errbacks."""
    protocol, transport, _, _ = connected()
    first, second = results(protocol.command("GET", "a")), results(protocol.command("X"))
    assert transport.value() == encode("GET", "a") + encode("X")
    protocol.dataReceived(b"$1\r\n1\r\n-ERR unknown\r\n")
    assert first == [b"1"]
    assert isinstance(second[0], Failure) and second[0].value == RedisError("ERR unknown")


def test_too_many_unanswered_commands_are_refused() -> None:
    """Past max_pending, a command fails at once and nothing more is written."""
    protocol, transport, _, _ = connected(max_pending=2)
    protocol.command("PING")
    protocol.command("PING")
    written = transport.value()
    refused = results(protocol.command("PING"))
    assert refused[0].check(CommandRefused)
    assert transport.value() == written


def test_slow_server_drops_the_connection() -> None:
    """No reply within the timeout: the connection is aborted; the command fails."""
    protocol, transport, clock, lost = connected(timeout=5)
    pending = results(protocol.command("PING"))
    clock.advance(4.9)
    assert not transport.disconnecting
    clock.advance(0.2)
    assert transport.disconnecting
    protocol.connectionLost(Failure(ConnectionError("aborted")))
    assert pending[0].check(CommandRefused)
    assert lost == [protocol]
    assert clock.getDelayedCalls() == []


@pytest.mark.parametrize("garbage", [b"HTTP/1.0 400\r\n", b"$999999999\r\n", b":1\r\n"])
def test_garbage_or_unasked_replies_drop_the_connection(garbage: bytes) -> None:
    """Non-RESP, oversized, or a reply no command asked for: abort."""
    protocol, transport, _, _ = connected()
    if garbage != b":1\r\n":
        protocol.command("PING")
    protocol.dataReceived(garbage)
    assert transport.disconnecting


def test_commands_after_loss_are_refused() -> None:
    """Once the connection is lost, commands fail at once."""
    protocol, _, _, _ = connected()
    protocol.connectionLost(Failure(ConnectionError()))
    assert results(protocol.command("PING"))[0].check(CommandRefused)


def subscriber() -> tuple[SubscriberProtocol, StringTransport, Clock, list[bytes], list[Any]]:
    clock = Clock()
    messages: list[bytes] = []
    ready: list[Any] = []
    protocol = SubscriberProtocol(clock, lambda p: None, b"chan", messages.append,
                                  on_subscribed=ready.append)
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport, clock, messages, ready


def test_subscription_delivers_messages() -> None:
    """SUBSCRIBE is sent; after the confirmation each message is delivered."""
    protocol, transport, clock, messages, ready = subscriber()
    assert transport.value() == encode(b"SUBSCRIBE", b"chan")
    protocol.dataReceived(b"*3\r\n$9\r\nsubscribe\r\n$4\r\nchan\r\n:1\r\n")
    assert ready == [protocol]
    protocol.dataReceived(b"*3\r\n$7\r\nmessage\r\n$4\r\nchan\r\n$3\r\nabc\r\n")
    assert messages == [b"abc"]
    clock.advance(60)
    assert not transport.disconnecting


def test_unconfirmed_or_odd_subscription_is_dropped() -> None:
    """No confirmation in time, or a reply of the wrong shape: abort."""
    _, transport, clock, _, _ = subscriber()
    clock.advance(10)
    assert transport.disconnecting
    protocol, transport, _, _, _ = subscriber()
    protocol.dataReceived(b"+OK\r\n")
    assert transport.disconnecting


def test_subscription_authenticates_first() -> None:
    """With a password, AUTH precedes SUBSCRIBE; a refused AUTH drops the link with the reason."""
    clock = Clock()
    protocol = SubscriberProtocol(clock, lambda p: None, b"chan", lambda m: None,
                                  password="pw")
    transport = StringTransport()
    protocol.makeConnection(transport)
    assert transport.value() == encode(b"AUTH", b"pw") + encode(b"SUBSCRIBE", b"chan")
    protocol.dataReceived(b"-WRONGPASS invalid\r\n")
    assert transport.disconnecting
    assert protocol.drop_reason is not None and "AUTH refused" in protocol.drop_reason


def test_subscription_authenticates_an_acl_user() -> None:
    """With a user name, AUTH carries it (Redis 6 ACLs), before SUBSCRIBE."""
    protocol = SubscriberProtocol(Clock(), lambda p: None, b"chan", lambda m: None,
                                  password="pw", username="superd")
    transport = StringTransport()
    protocol.makeConnection(transport)
    assert transport.value() == encode(b"AUTH", b"superd", b"pw") + encode(b"SUBSCRIBE",
                                                                          b"chan")


def test_the_reason_a_connection_ended_is_kept() -> None:
    """A server that hangs up, or a TLS handshake that fails, says why."""
    from OpenSSL.SSL import Error as TLSError
    from twisted.internet.error import ConnectionDone

    protocol, _, _, lost = connected()
    protocol.connectionLost(Failure(ConnectionDone()))
    assert protocol.lost_reason == "connection closed by the server" and lost == [protocol]
    protocol, _, _, _ = connected()
    protocol.connectionLost(Failure(TLSError([("SSL routines", "", "certificate verify failed")])))
    assert protocol.lost_reason == "TLS: certificate verify failed"
