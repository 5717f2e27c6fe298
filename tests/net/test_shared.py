"""
Tests of ``superd.net.shared``: TLS services sharing listening sockets --
one bind per address, the member's own factory while it is alone and routes
no names, a router otherwise, the socket kept while any member uses it, and
hand-overs to and from plain ``Listener``s on reload.
"""

from __future__ import annotations

from typing import Any, Sequence

import attrs
import pytest
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory, Protocol, ServerFactory
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from superd.config.model import Location, SocketType
from superd.net.address import ListenAddress
from superd.net.listener import IListener, Listener
from superd.net.shared import SharedListener, SharedPorts
from superd.net.sockets import BindError
from superd.net.takingport import listen_taking


@attrs.define(eq=False)
class Member:
    """A TLS service on the socket: its names, its factory, its start/stop count."""

    names: tuple[str, ...] = ()
    hello_timeout: float = 10.0
    factory: Any = attrs.Factory(lambda: Factory.forProtocol(Protocol))
    serving: int = 0

    def start(self) -> None:
        self.serving += 1

    def stop(self) -> None:
        self.serving -= 1


class Router(ServerFactory):
    """Records what it was told to route."""

    def __init__(self) -> None:
        self.routes: list[list[Any]] = []

    def route(self, members: Sequence[Any]) -> None:
        self.routes.append(list(members))


@attrs.define
class Setup:
    reactor: MemoryReactorClock
    ports: SharedPorts
    routers: list[Router]
    binds: list[ListenAddress]

    def listener(self, member: Member, port: int = 443) -> SharedListener:
        address = ListenAddress("svc", "svc", "127.0.0.1", port, SocketType.STREAM,
                                Location("conf/svc", 1))
        return SharedListener(address, self.open_port, member, self.ports)

    def open_port(self, address: ListenAddress, target: Any) -> IListeningPort:
        # The address keys the socket; the kernel chooses the real port.
        self.binds.append(address)
        return listen_taking(self.reactor, 0, target, 5, address.host)

    def close_all(self) -> None:
        for reader in self.reactor.getReaders():
            reader.connectionLost(Failure(ConnectionDone()))  # type: ignore[attr-defined]


@pytest.fixture
def setup() -> Any:
    reactor, routers = MemoryReactorClock(), []

    def make_router() -> Router:
        routers.append(Router())
        return routers[-1]

    result = Setup(reactor, SharedPorts(make_router), routers, [])
    yield result
    result.close_all()


def served_by(listener: SharedListener) -> Any:
    assert listener.shared is not None and listener.shared.port is not None
    return listener.shared.port.factory  # type: ignore[attr-defined]


def test_alone_a_member_is_served_by_its_own_factory(setup: Setup) -> None:
    """One TLS service without names: its factory serves the socket, no router."""
    member = Member()
    listener = setup.listener(member)
    assert verifyObject(IListener, listener)
    listener.privilegedStartService()
    assert served_by(listener) is member.factory and setup.routers == []
    assert member.serving == 1 and listener.bound_port() is not None


def test_sharing_members_join_one_socket_behind_a_router(setup: Setup) -> None:
    """The second member joins (no second bind); a router serves both; leaving
    puts the default's own factory back; the last one closes the socket."""
    default, named = Member(), Member(("a.example.com",))
    first, second = setup.listener(default), setup.listener(named)
    first.privilegedStartService()
    second.privilegedStartService()
    assert len(setup.binds) == 1 and first.bound_port() == second.bound_port()
    (router,) = setup.routers
    assert served_by(first) is router and router.routes[-1] == [default, named]
    assert router.numPorts == 1 and default.factory.numPorts == 0
    second.stopService()
    assert served_by(first) is default.factory and named.serving == 0
    port = first.shared.port  # type: ignore[union-attr]
    first.stopService()
    setup.reactor.advance(0)  # tcp.Port closes on the next turn
    assert default.serving == 0 and not port.connected  # type: ignore[union-attr]
    third = setup.listener(Member())
    third.privilegedStartService()
    assert len(setup.binds) == 2


def test_port_zero_is_never_shared(setup: Setup) -> None:
    """Port 0 is a new port each time: two listeners, two sockets."""
    first, second = setup.listener(Member(), port=0), setup.listener(Member(("b.x",)), port=0)
    first.privilegedStartService()
    second.privilegedStartService()
    assert len(setup.binds) == 2 and first.bound_port() != second.bound_port()


def test_a_failed_bind_leaves_nothing(setup: Setup) -> None:
    """A bind error goes up; the member never started; the next join binds afresh."""
    member = Member()

    def refuse(address: ListenAddress, target: Any) -> IListeningPort:
        raise BindError(address, "Address already in use", 98)

    failing = SharedListener(setup.listener(member).address, refuse, member, setup.ports)
    with pytest.raises(BindError):
        failing.privilegedStartService()
    assert member.serving == 0 and failing.shared is None
    setup.listener(member).privilegedStartService()
    assert len(setup.binds) == 1


def test_a_changed_member_takes_its_predecessors_place(setup: Setup) -> None:
    """Reload: the new listener replaces the old on the same socket, in its place."""
    old_member, other, new_member = Member(("a.x",)), Member(("b.x",)), Member(("a.x",))
    old, peer = setup.listener(old_member), setup.listener(other)
    old.privilegedStartService()
    peer.privilegedStartService()
    port = old.shared.port  # type: ignore[union-attr]
    new = setup.listener(new_member)
    new.adopt(old)
    assert old.shared is None and new.shared.port is port  # type: ignore[union-attr]
    assert setup.routers[0].routes[-1] == [new_member, other]
    assert (old_member.serving, new_member.serving) == (0, 1)
    old.stopService()  # closes nothing
    assert port.connected  # type: ignore[union-attr]


def test_turning_tls_on_and_off_keeps_the_socket(setup: Setup) -> None:
    """A plain Listener's socket goes to a SharedListener and back, never closed."""
    plain = Factory.forProtocol(Protocol)
    listener = Listener(setup.listener(Member()).address,
                        lambda a: setup.open_port(a, plain), plain)
    listener.privilegedStartService()
    port, bound = listener.port, listener.bound_port()
    member = Member()
    shared = setup.listener(member)
    shared.adopt(listener)
    assert shared.shared.port is port and shared.bound_port() == bound  # type: ignore[union-attr]
    assert served_by(shared) is member.factory and plain.numPorts == 0
    again = Factory.forProtocol(Protocol)
    back = Listener(listener.address, lambda a: setup.open_port(a, again), again)
    back.adopt(shared)
    assert back.port is port and back.bound_port() == bound and member.serving == 0
    assert port.factory is again and member.factory.numPorts == 0  # type: ignore[union-attr]
    assert shared.shared is None and shared.close() is None
    joined = setup.listener(Member())
    joined.privilegedStartService()  # the address is free in the registry: binds anew
    assert len(setup.binds) == 2

