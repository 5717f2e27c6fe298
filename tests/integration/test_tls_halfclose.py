"""
Half-close over TLS 1.3 (RFC 8446 section 6.1): a client that sends
its request and then close_notify -- "shutdown writing" in TLS -- still gets
everything the service writes afterwards, followed by superd's close_notify.
The external servers here (``wc -c``, ``sort``) write only after reading EOF,
so their answer can only come after the client's close_notify.  Under TLS 1.2
superd answers close_notify at once, as RFC 5246 requires.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from pathlib import Path

from tests.certs import PKI, make_pki
from tests.integration.harness import Superd, require_program
from tests.integration.test_tls import tls_echo
from tests.integration.test_tls_pipe import external


class _Client:
    """A TLS client over a memory BIO, so it can send close_notify and keep reading."""

    def __init__(self, port: int, context: ssl.SSLContext) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname="localhost")
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                assert self._fill(), "EOF during the handshake"
        self._flush()

    def _flush(self) -> None:
        data = self.outgoing.read()
        if data:
            self.sock.sendall(data)

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        if data:
            self.incoming.write(data)
        else:
            self.incoming.write_eof()
        return bool(data)

    def send_then_close_notify(self, payload: bytes, shut_tcp: bool = False) -> None:
        """Send ``payload``, then close_notify (and a TCP FIN if ``shut_tcp``)."""
        self.tls.write(payload)
        try:
            self.tls.unwrap()
        except ssl.SSLWantReadError:
            pass  # our close_notify is out; the server's has not come yet
        self._flush()
        if shut_tcp:
            self.sock.shutdown(socket.SHUT_WR)

    def read_to_close_notify(self) -> bytes:
        """Everything the server sends until its close_notify (a bare EOF fails)."""
        received = b""
        while True:
            try:
                received += self.tls.read(65536)
            except ssl.SSLWantReadError:
                assert self._fill(), "TCP EOF without the server's close_notify"
            except ssl.SSLZeroReturnError:
                return received

    def close(self) -> None:
        self.sock.close()


def _context(pki: PKI, maximum: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca_path))
    context.maximum_version = maximum
    return context


def _exchange(port: int, context: ssl.SSLContext, payload: bytes,
              shut_tcp: bool = False) -> bytes:
    client = _Client(port, context)
    try:
        client.send_then_close_notify(payload, shut_tcp)
        return client.read_to_close_notify()
    finally:
        client.close()


def test_answer_after_close_notify(superd_factory: Callable[..., Superd],
                                   conf_dir: Callable[..., Path], tmp_path: Path) -> None:
    """``wc -c`` answers only at EOF: the client gets the count after its close_notify."""
    pki = make_pki(tmp_path)
    service = external("wc", require_program("wc"), pki, args="\tserver_args = -c\n")
    superd = superd_factory(conf_dir(wc=service))
    payload = b"x" * 100_000
    assert _exchange(superd.port("wc"), _context(pki), payload).strip() == b"100000"
    exit_event = superd.wait_for_event(lambda e: e.get("event") == "exit", timeout=10)
    assert exit_event["status"] == 0


def test_answer_after_close_notify_and_fin(superd_factory: Callable[..., Superd],
                                           conf_dir: Callable[..., Path],
                                           tmp_path: Path) -> None:
    """close_notify then a TCP FIN (shutdown(SHUT_WR)): ``sort``'s answer still arrives."""
    pki = make_pki(tmp_path)
    superd = superd_factory(conf_dir(sort=external("sort", require_program("sort"), pki)))
    lines = [f"{n:05d}\n".encode() for n in range(2000)]
    payload = b"".join(reversed(lines))
    answer = _exchange(superd.port("sort"), _context(pki), payload, shut_tcp=True)
    assert answer == b"".join(lines)
    superd.wait_for_event(lambda e: e.get("event") == "exit", timeout=10)
    assert superd.children() == []


def test_cat_echo_after_close_notify(superd_factory: Callable[..., Superd],
                                     conf_dir: Callable[..., Path], tmp_path: Path) -> None:
    """``/bin/cat``: everything sent before close_notify comes back, then close_notify."""
    pki = make_pki(tmp_path)
    superd = superd_factory(conf_dir(cat=external("cat", require_program("cat"), pki)))
    payload = bytes(range(256)) * 256
    assert _exchange(superd.port("cat"), _context(pki), payload) == payload


def test_echo_builtin_half_close(superd_factory: Callable[..., Superd],
                                 conf_dir: Callable[..., Path], tmp_path: Path) -> None:
    """The echo builtin under TLS: the echo, then a clean close_notify, even after a FIN."""
    pki = make_pki(tmp_path)
    superd = superd_factory(conf_dir(echo=tls_echo(pki)))
    payload = b"echo me\n" * 5000
    assert _exchange(superd.port("techo"), _context(pki), payload, shut_tcp=True) == payload


def test_tls12_close_notify_closes(superd_factory: Callable[..., Superd],
                                   conf_dir: Callable[..., Path], tmp_path: Path) -> None:
    """TLS 1.2: close_notify is answered at once (RFC 5246), so ``wc -c`` is not heard."""
    pki = make_pki(tmp_path)
    service = external("wc", require_program("wc"), pki, args="\tserver_args = -c\n")
    superd = superd_factory(conf_dir(wc=service))
    assert _exchange(superd.port("wc"), _context(pki, ssl.TLSVersion.TLSv1_2), b"x" * 10) == b""
