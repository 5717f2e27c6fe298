"""
``redirect_tls = yes``: the relay speaks TLS to its upstream (superd's own
TLS echo with a certificate for ``localhost``) and verifies the upstream's
certificate name with service_identity; a name mismatch relays nothing.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from pathlib import Path

from tests.certs import make_pki
from tests.integration.external import read_all
from tests.integration.harness import Superd
from tests.integration.test_redirect import ECHO, relay_block
from tests.integration.test_tls import tls_echo


def test_relay_to_tls_upstream(superd_factory: Callable[..., Superd],
                               conf_dir: Callable[..., Path], tmp_path: Path) -> None:
    """Plain client -> relay -> TLS upstream verified as localhost; a wrong name fails."""
    pki = make_pki(tmp_path)
    upstream = superd_factory(conf_dir(echo=tls_echo(pki)))
    port = upstream.port("techo")
    good = relay_block(port, extra=f"\tredirect_tls = yes\n\tredirect_tls_name = localhost\n"
                                    f"\tredirect_tls_ca = {pki.ca_path}\n")
    bad = relay_block(port, name="badname", extra=(
        f"\tredirect_tls = yes\n\tredirect_tls_name = not-localhost.example\n"
        f"\tredirect_tls_ca = {pki.ca_path}\n"))
    relay = superd_factory(conf_dir(good=good, bad=bad))
    with socket.create_connection(("127.0.0.1", relay.port("relay")), timeout=10) as sock:
        sock.sendall(b"through tls\n")
        got = b""
        while len(got) < 12:
            chunk = sock.recv(100)
            if not chunk:
                break
            got += chunk
    assert got == b"through tls\n"
    # The client left first: the relay closes the TLS upstream too and its
    # session ends (it used to wait forever for the upstream's EOF).
    relay.wait_for_event(lambda e: str(e.get("xinetd_line")).startswith("EXIT: relay "))
    with socket.create_connection(("127.0.0.1", relay.port("badname")), timeout=10) as sock:
        sock.settimeout(10)
        sock.sendall(b"secret\n")
        assert read_all(sock) == b""
    # The relay refused the upstream's certificate: the upstream saw a failed handshake.
    upstream.wait_for_event(lambda e: str(e.get("xinetd_line")).startswith("FAIL: techo tls"))
    starts = [x for x in upstream.xinetd_lines() if x.startswith("START: techo")]
    assert len(starts) == 1


def test_tls_terminated_relay(superd_factory: Callable[..., Superd],
                              conf_dir: Callable[..., Path], tmp_path: Path) -> None:
    """TLS client -> relay terminating TLS -> plain echo: bytes sent at once all arrive."""
    pki = make_pki(tmp_path)
    upstream = superd_factory(conf_dir(echo=ECHO))
    relay = superd_factory(conf_dir(relay=relay_block(
        upstream.port("echo-up"),
        extra=f"\ttls_cert = {pki.server.cert_path}\n\ttls_key = {pki.server.key_path}\n")))
    context = ssl.create_default_context(cafile=str(pki.ca_path))
    message = b"sent with the client's Finished\n"
    with socket.create_connection(("127.0.0.1", relay.port("relay")), timeout=10) as sock:
        assert finished_with_data(sock, context, message) == message


def finished_with_data(sock: socket.socket, context: ssl.SSLContext, message: bytes) -> bytes:
    """A TLS client whose first application bytes share a segment with its Finished."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            sock.sendall(outgoing.read())
            incoming.write(sock.recv(65536))
    tls.write(message)
    sock.sendall(outgoing.read())  # Finished and the message, one write
    got = b""
    while len(got) < len(message):
        try:
            got += tls.read(65536)
        except ssl.SSLWantReadError:
            data = sock.recv(65536)
            if not data:
                break
            incoming.write(data)
    return got
