"""
Pins for ``superd.core.twistedprivate``: every private Twisted name superd
uses, and the undocumented behaviour it relies on, checked against the
installed Twisted.  A Twisted upgrade that renames, removes or changes one
of them fails here, naming it; the module's docstring for that use says
what to redo.
"""

from __future__ import annotations

import errno
import hashlib
import inspect
import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet import endpoints, process, ssl, tcp, udp, unix
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import Logger, formatEvent, globalLogPublisher
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.protocols.tls import BufferingTLSTransport, TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python import log as legacy_log
from twisted.python.failure import Failure
from twisted.python.systemd import ListenFDs

from superd.core import twistedprivate
from superd.net.takingport import TakingPort, listen_taking
from tests.certs import PKI
from tests.handlers.spawn.helpers import connected_server


def digest(function: Any) -> str:
    return hashlib.sha256(inspect.getsource(function).encode()).hexdigest()


class Received(Protocol):
    def __init__(self) -> None:
        self.data = b""

    def dataReceived(self, data: bytes) -> None:
        self.data += data


@pytest.fixture
def taking() -> Iterator[TakingPort]:
    port = listen_taking(MemoryReactorClock(), 0, Factory.forProtocol(Received), 50, "127.0.0.1")
    yield port
    port.connectionLost(Failure(ConnectionDone()))


# -- accepting bare descriptors ------------------------------------------------------

#: sha256 of the Twisted code whose accept loop superd.net.takingport repeats
#: for bare descriptors: if one changes, compare the new source with
#: accept_descriptors and TakingPort.doRead and carry the change over.
_ACCEPT_LOOP = {
    "tcp._accept": (tcp._accept,
                    "0da5399ae236e41fc6b2f24ce9d302a6d2d5b8d19cad9a69f17236e793a4457c"),
    "tcp.Port.doRead": (tcp.Port.doRead,
                        "d240fc123090ee235be9f4e6b99a11e38d3dceab45d1708a47016d420e179ad9"),
}


@pytest.mark.parametrize("name", sorted(_ACCEPT_LOOP))
def test_the_accept_loop_superd_repeats_is_unchanged(name: str) -> None:
    """TakingPort's loop follows tcp._accept and tcp.Port.doRead line by line."""
    function, expected = _ACCEPT_LOOP[name]
    assert digest(function) == expected, (
        f"twisted.internet.{name} changed: redo superd.net.takingport's copy of its logic")


def test_accept_errors_are_the_ones_twisted_survives() -> None:
    """tcp._ACCEPT_ERRORS: logged and survived, not raised."""
    assert set(twistedprivate.ACCEPT_ERRORS) == {
        errno.EMFILE, errno.ENOBUFS, errno.ENFILE, errno.ENOMEM, errno.ECONNABORTED}


def test_reserved_descriptor_is_a_reservation() -> None:
    """tcp._reservedFD: available() and a context manager that releases it."""
    reserved = twistedprivate.reserved_descriptor()
    assert isinstance(reserved.available(), bool)
    assert callable(reserved.__enter__) and callable(reserved.__exit__)


def test_buffered_port_logs_hold_events_until_exit(taking: TakingPort) -> None:
    """tcp._BuffersLogs over the port's private _logger: events reach the
    port's observer only when the block ends."""
    seen: list[dict[str, Any]] = []
    taking._logger = Logger(namespace="pin", observer=seen.append)
    with twistedprivate.buffered_port_logs(taking) as buffering:
        buffering.info("held")
        assert seen == []
    assert [e["log_format"] for e in seen] == ["held"]


def test_descriptor_acceptor_gives_a_blocking_close_on_exec_descriptor() -> None:
    """socket._accept (CPython): (fd, address), the fd blocking and not inherited."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        with socket.create_connection(listener.getsockname(), timeout=10) as client:
            fd, address = twistedprivate.descriptor_acceptor(listener)()
            try:
                assert isinstance(fd, int) and address == client.getsockname()
                assert os.get_blocking(fd) and not os.get_inheritable(fd)
            finally:
                os.close(fd)


def test_adopt_listening_descriptor_builds_the_subclass() -> None:
    """tcp.Port._fromListeningDescriptor builds an instance of the class it is called on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        sock.setblocking(False)
        port = twistedprivate.adopt_listening_descriptor(
            TakingPort, MemoryReactorClock(), sock.fileno(), socket.AF_INET, Factory())
        assert type(port) is TakingPort
        port.startListening()
        assert port.getHost().port == sock.getsockname()[1]
        port.connectionLost(Failure(ConnectionDone()))


def _unix_listener(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(path)
    sock.listen(1)
    sock.setblocking(False)
    return sock


def test_adopt_unix_listening_descriptor_keeps_mode_backlog_and_socket(tmp_path: Any) -> None:
    """unix.Port._fromListeningDescriptor builds the subclass on the socket;
    its startListening chmods the file to ``mode`` and listens with
    ``backlog`` again (so both must be the socket's own); without
    _shouldShutdown its close leaves other copies of the socket listening."""

    class Sub(unix.Port):
        pass

    path = str(tmp_path / "s.sock")
    with _unix_listener(path) as sock:
        os.chmod(path, 0o600)
        port = twistedprivate.adopt_unix_listening_descriptor(
            Sub, MemoryReactorClock(), sock.fileno(), Factory(), mode=0o640, backlog=7)
        assert type(port) is Sub and (port.mode, port.backlog) == (0o640, 7)
        port.startListening()
        assert os.stat(path).st_mode & 0o777 == 0o640
        twistedprivate.unix_port_lost(port, Failure(ConnectionDone()))
        assert os.path.exists(path)
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(path)  # refused had the port shut the socket down


def test_unix_port_connection_lost_is_unlink_then_tcp_port() -> None:
    """What unix_port_lost leaves out of unix.Port.connectionLost: removing
    the file, and the lock file of wantPID (which superd never asks for)."""
    assert digest(unix.Port.connectionLost) == _UNIX_PORT_LOST, (
        "unix.Port.connectionLost changed: compare it with unix_port_lost")


_UNIX_PORT_LOST = "ddc8a0b830d51f876a57e9d5c90f40d2b15f7793e91275f304b72005ea0f6658"


def test_server_transport_numbers_sessions(taking: TakingPort) -> None:
    """port.transport(skt, protocol, address, port, sessionno, reactor) is a tcp.Server."""
    with socket.create_connection(("127.0.0.1", taking.getHost().port), timeout=10) as client:
        skt, address = taking.socket.accept()
        before = taking.sessionno
        protocol = Received()
        server = twistedprivate.server_transport(taking, skt, protocol, address)
        assert isinstance(server, tcp.Server) and server.protocol is protocol
        assert server.sessionno == before and taking.sessionno == before + 1
        protocol.makeConnection(server)
        server.connectionLost(Failure(ConnectionDone()))
        assert client.recv(1) == b""


def test_client_transport_is_a_portless_tcp_server_reading(taking: TakingPort) -> None:
    """cls(skt, protocol, address, None, 0, reactor) builds a tcp.Server with
    no port that reads at once; client_transport gives it a repr."""
    with socket.socket() as skt:
        skt.connect(("127.0.0.1", taking.getHost().port))
        skt.setblocking(False)
        peer = skt.getpeername()
        protocol = Received()
        transport = twistedprivate.client_transport(tcp.Server, skt, protocol, peer,
                                                    taking.reactor)
        assert transport.server is None and transport.protocol is protocol
        assert transport in taking.reactor.getReaders()
        assert transport.getPeer().port == peer[1]
        assert repr(transport) == f"<Received to 127.0.0.1:{peer[1]}>"
        transport.stopReading()


# -- serving a bound port with new settings -----------------------------------------

def test_tcp_port_reads_its_factory_on_every_accept(taking: TakingPort) -> None:
    """A factory set on a listening tcp.Port serves its next connection."""
    second = Factory.forProtocol(Received)
    built: list[Any] = []
    second.buildProtocol = lambda address: built.append(address) or Received()  # type: ignore
    twistedprivate.serve_port_with(taking, second, stream=True)
    with socket.create_connection(("127.0.0.1", taking.getHost().port), timeout=10):
        taking.doRead()
    assert len(built) == 1
    for reader in taking.reactor.getReaders():  # type: ignore[attr-defined]
        if isinstance(reader, tcp.Server):
            reader.connectionLost(Failure(ConnectionDone()))


class Datagrams(DatagramProtocol):
    def __init__(self) -> None:
        self.got: list[bytes] = []

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.got.append(datagram)


def test_udp_port_reads_its_protocol_for_every_datagram() -> None:
    """A protocol set on a bound udp.Port gets its next datagram."""
    first, second = Datagrams(), Datagrams()
    port = udp.Port(0, first, "127.0.0.1", reactor=MemoryReactorClock())
    port.startListening()
    try:
        twistedprivate.serve_port_with(port, second, stream=False)
        second.makeConnection(port)
        first.doStop()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.sendto(b"ping", ("127.0.0.1", port.getHost().port))
        port.doRead()
        assert first.got == [] and second.got == [b"ping"]
    finally:
        port.connectionLost()


def test_listening_socket_of_tcp_and_udp_ports(taking: TakingPort) -> None:
    """tcp.Port's undocumented socket attribute (gone once stopped); udp.Port's getHandle."""
    sock = twistedprivate.listening_socket(taking)
    assert isinstance(sock, socket.socket) and sock.getsockname()[1] == taking.getHost().port
    port = udp.Port(0, Datagrams(), "127.0.0.1", reactor=MemoryReactorClock())
    port.startListening()
    assert twistedprivate.listening_socket(port) is port.getHandle()
    port.connectionLost()
    stopped = listen_taking(MemoryReactorClock(), 0, Factory(), 5, "127.0.0.1")
    stopped.connectionLost(Failure(ConnectionDone()))
    assert twistedprivate.listening_socket(stopped) is None
    assert twistedprivate.listening_socket(MemoryReactorClock().listenTCP(0, Factory())) is None


# -- Twisted's own lines about ports and factories ------------------------------------------

@pytest.fixture
def published() -> Iterator[list[dict[str, Any]]]:
    """Every event on the global log publisher (legacy log.msg lines too)."""
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        yield events
    finally:
        globalLogPublisher.removeObserver(events.append)


class NoisyFactory(Factory):
    noisy = True
    protocol = Protocol


class NoisyDatagrams(DatagramProtocol):
    noisy = True


def test_tcp_udp_and_unix_port_lines_are_chatter(
        published: list[dict[str, Any]], tmp_path: Any) -> None:
    """What tcp.Port (superd's TakingPort), udp.Port and unix.Port log when
    they open and close, and what a noisy factory or datagram protocol logs
    when it starts and stops, is recognised; nothing else they log is."""
    stream = listen_taking(MemoryReactorClock(), 0, NoisyFactory(), 5, "127.0.0.1")
    stream.connectionLost(Failure(ConnectionDone()))
    datagram = udp.Port(0, NoisyDatagrams(), "127.0.0.1", reactor=MemoryReactorClock())
    datagram.startListening()
    datagram.connectionLost()
    local = unix.Port(str(tmp_path / "control"), NoisyFactory(), reactor=MemoryReactorClock())
    local.startListening()
    local.connectionLost(Failure(ConnectionDone()))
    texts = [formatEvent(e) for e in published]
    assert len(texts) == 12, texts
    assert [t for t, e in zip(texts, published, strict=True)
            if not twistedprivate.is_port_chatter(e)] == []


@pytest.mark.parametrize("text", ["Received SIGTERM, shutting down.", "Main loop terminated.",
                                  "(Port) Closed", "starting on 7"])
def test_other_lines_are_not_chatter(published: list[dict[str, Any]], text: str) -> None:
    """Other legacy lines, and events with a format of their own, are kept."""
    legacy_log.msg(text)
    Logger(namespace="twisted.internet.base").info(text)
    assert [twistedprivate.is_port_chatter(e) for e in published] == [False, False]


# -- handing a connection to a child ------------------------------------------------------

def test_plain_tcp_is_a_server_without_tls() -> None:
    """tcp.Server's TLS flag: False until startTLS."""
    server, client = connected_server(Received())
    try:
        assert tcp.Server.TLS is False and twistedprivate.is_plain_tcp(server)
        server.TLS = True
        assert not twistedprivate.is_plain_tcp(server)
    finally:
        server.TLS = False
        server.connectionLost(Failure(ConnectionDone()))
        client.close()


def test_unsent_bytes_are_what_write_buffered() -> None:
    """FileDescriptor.dataBuffer from offset, then _tempDataBuffer: unsent writes, in order."""
    server, client = connected_server(Received())
    try:
        server.write(b"one ")
        server.write(b"two")
        assert twistedprivate.unsent_bytes(server) == b"one two"
        server.dataBuffer, server.offset = b"xxhead ", 2
        assert twistedprivate.unsent_bytes(server) == b"head one two"
    finally:
        server.connectionLost(Failure(ConnectionDone()))
        client.close()


def test_release_descriptor_closes_without_shutdown() -> None:
    """_shouldShutdown = False: Twisted closes its descriptor with close()
    only, so another holder of the socket (the child) keeps it working."""
    assert tcp.Server._shouldShutdown is True
    assert "_shouldShutdown" in tcp._SocketCloser.__dict__
    protocol = Received()
    lost: list[Failure] = []
    protocol.connectionLost = lost.append  # type: ignore[method-assign,assignment]
    server, client = connected_server(protocol)
    child = os.dup(server.fileno())
    try:
        twistedprivate.release_descriptor(server, Failure(ConnectionDone("handed")))
        assert len(lost) == 1
        os.write(child, b"still open")
        assert client.recv(100) == b"still open"
    finally:
        os.close(child)
        client.close()


# -- switching the protocol of a live connection --------------------------------------

def test_tcp_connection_reads_its_protocol_on_every_event() -> None:
    """tcp.Connection delivers to whatever its protocol attribute holds now."""
    first, second = Received(), Received()
    server, client = connected_server(first)
    try:
        twistedprivate.switch_protocol(server, second)
        client.sendall(b"hello")
        while not second.data:
            server.doRead()
        assert first.data == b"" and second.data == b"hello"
    finally:
        server.connectionLost(Failure(ConnectionDone()))
        client.close()


def test_switching_under_a_protocol_wrapper_changes_the_wrapped_protocol() -> None:
    """A ProtocolWrapper delivers to its (documented) wrappedProtocol."""
    first, second = Received(), Received()
    wrapper = ProtocolWrapper(WrappingFactory(Factory()), first)
    twistedprivate.switch_protocol(wrapper, second)
    wrapper.dataReceived(b"x")
    assert first.data == b"" and second.data == b"x"


# -- reaping ---------------------------------------------------------------------------------

def test_twisteds_sigchld_handler_calls_every_reap_handler() -> None:
    """process.reapProcessHandlers: reapAllProcesses calls reapProcess() of
    every value, whatever its key."""
    called: list[int] = []
    handler = type("Handler", (), {"reapProcess": lambda self: called.append(1)})()
    handlers = twistedprivate.reap_handlers()
    assert handlers is process.reapProcessHandlers
    handlers[-1] = handler
    try:
        process.reapAllProcesses()
    finally:
        del handlers[-1]
    assert called == [1]


# -- socket activation ------------------------------------------------------------------------

def test_endpoints_keep_their_systemd_descriptors() -> None:
    """endpoints._SystemdParser._sddaemon is a ListenFDs with _names."""
    daemon = endpoints._SystemdParser._sddaemon
    assert isinstance(daemon, ListenFDs) and isinstance(daemon._names, (tuple, list))
    fds, names = twistedprivate.endpoints_inherited_descriptors()
    assert list(fds) == daemon.inheritedDescriptors() and list(names) == list(daemon._names)


# -- TLS termination -------------------------------------------------------------------------

#: sha256 of the Twisted methods TLSServerTransport replaces with changed copies.
_COPIED = {
    "_flushReceiveBIO": "b45e129f60c448628c0950f8800c0a8aa8fd04df848043d08627b3b01a98ed27",
    "_checkHandshakeStatus": "3902da2549f56145492bb3e49c7b933bca242e0e888d13d2d192f3e3fc15e57b",
}


@pytest.mark.parametrize("name", sorted(_COPIED))
def test_copied_tls_methods_unchanged(name: str) -> None:
    """If Twisted changes one of them, the copy in TLSServerTransport must be redone."""
    assert digest(getattr(TLSMemoryBIOProtocol, name)) == _COPIED[name], (
        f"twisted.protocols.tls.TLSMemoryBIOProtocol.{name} changed: re-copy it into"
        " superd.core.twistedtls.TLSServerTransport")


def test_tls_private_state_is_there() -> None:
    """The private methods and flags TLSServerTransport names."""
    for helper in ("_shutdownTLS", "_tlsShutdownFinished", "_flushSendBIO"):
        assert callable(getattr(TLSMemoryBIOProtocol, helper))
    for flag in ("_lostTLSConnection", "_aborted", "_handshakeDone", "_reason"):
        assert hasattr(TLSMemoryBIOProtocol, flag), flag
    assert "_connectWrapped" in inspect.signature(BufferingTLSTransport.__init__).parameters


# -- PROXY protocol headers -------------------------------------------------------

def test_proxy_header_parsers_read_complete_headers() -> None:
    """V1Parser.parse reads a line without its CRLF, V2Parser.parse a whole
    v2 header, into Twisted addresses; a LOCAL header names none."""
    v1 = twistedprivate.parse_proxy_header(b"PROXY TCP4 192.0.2.1 198.51.100.7 1234 443", 1)
    assert (v1.source.host, v1.source.port) == ("192.0.2.1", 1234)  # type: ignore[union-attr]
    header = (b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c" + socket.inet_aton("192.0.2.1")
              + socket.inet_aton("198.51.100.7") + b"\x04\xd2\x01\xbb")
    v2 = twistedprivate.parse_proxy_header(header, 2)
    assert (v2.source.host, v2.source.port) == ("192.0.2.1", 1234)  # type: ignore[union-attr]
    local = twistedprivate.parse_proxy_header(b"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00", 2)
    assert local.source is None


def test_proxy_header_parsers_raise_invalid_proxy_header() -> None:
    """Bad headers raise InvalidProxyHeader (as ProxyHeaderError) -- and the bare ``PROXY UNKNOWN``
    does too, which superd.net.proxywire therefore handles before it."""
    for bad in (b"PROXY TCP5 1 2 3 4", b"HELLO", b"PROXY UNKNOWN"):
        with pytest.raises(twistedprivate.ProxyHeaderError):
            twistedprivate.parse_proxy_header(bad, 1)
    with pytest.raises(twistedprivate.ProxyHeaderError):
        twistedprivate.parse_proxy_header(b"\r\n\r\n\x00\r\nQUIX\n\x21\x11\x00\x00", 2)


# -- TLS to a redirect upstream --------------------------------------------------------------

def test_client_connection_creator_uses_the_options_context(pki: PKI) -> None:
    """Connections come from the options' own (cached) context, named for the host."""
    options = ssl.CertificateOptions(trustRoot=ssl.Certificate.loadPEM(pki.ca_pem))
    context = options.getContext()
    creator = twistedprivate.client_connection_creator(options, "upstream.example")
    factory = TLSMemoryBIOFactory(creator, True, Factory.forProtocol(Protocol))
    connection = creator.clientConnectionForTLS(factory.buildProtocol(None))
    assert connection.get_context() is context
    assert connection.get_servername() == b"upstream.example"
