"""
An external server behind superd's TLS (pipe mode): ``/bin/cat`` echoes
1 MiB through the TLS layer and the socket pair; the client's close_notify
reaches cat as EOF (it exits, EXIT is logged with its pid); a server that
writes and exits makes superd send close_notify; the TLS facts reach the
child's environment; and a failed handshake never starts a child.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tests.certs import PKI, make_pki
from tests.integration.harness import Superd, require_program


def external(name: str, server: str, pki: PKI, args: str = "", extra: str = "") -> str:
    return (f"service {name}\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n\twait = no\n"
            f"\tport = 0\n\tbind = 127.0.0.1\n\tuser = root\n\tserver = {server}\n{args}"
            f"\ttls_cert = {pki.server.cert_path}\n\ttls_key = {pki.server.key_path}\n"
            f"\tlog_on_success = HOST PID EXIT\n\tlog_on_failure = HOST\n{extra}}}\n")


def test_cat_behind_tls(superd_factory: Callable[..., Superd], conf_dir: Callable[..., Path],
                        tmp_path: Path) -> None:
    """1 MiB round trip through cat; close_notify -> cat sees EOF and exits 0."""
    pki = make_pki(tmp_path)
    superd = superd_factory(conf_dir(cat=external("cat", require_program("cat"), pki)))
    context = ssl.create_default_context(cafile=str(pki.ca_path))
    payload = bytes(range(256)) * 4096
    with socket.create_connection(("127.0.0.1", superd.port("cat")), timeout=20) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:
        got: list[bytes] = []

        def read() -> None:
            data = b""
            while len(data) < len(payload):
                chunk = tls.recv(65536)
                if not chunk:
                    break
                data += chunk
            got.append(data)

        reader = threading.Thread(target=read)
        reader.start()
        tls.sendall(payload)
        reader.join(20)
        assert got == [payload]
        start = superd.wait_for_event(lambda e: e.get("event") == "start")
        tls.unwrap()  # close_notify: cat reads EOF
    exit_event = superd.wait_for_event(lambda e: e.get("event") == "exit", timeout=10)
    assert exit_event["pid"] == start["pid"] > 0 and exit_event["status"] == 0
    assert superd.children() == []


def test_server_that_exits_closes_tls(superd_factory: Callable[..., Superd],
                                      conf_dir: Callable[..., Path], tmp_path: Path) -> None:
    """A child that writes and exits: the client reads it all, then a clean TLS close."""
    pki = make_pki(tmp_path)
    superd = superd_factory(conf_dir(facts=external("facts", require_program("env"), pki)))
    context = ssl.create_default_context(cafile=str(pki.ca_path))
    with socket.create_connection(("127.0.0.1", superd.port("facts")), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:
        data = b""
        while True:
            chunk = tls.recv(65536)
            if not chunk:  # close_notify, not a ragged EOF (that would raise)
                break
            data += chunk
    assert b"SUPERD_TLS_VERSION=TLSv1.3" in data
    assert b"SUPERD_TLS_CIPHER=" in data and b"REMOTE_ADDR=127.0.0.1" in data


def test_failed_handshake_spawns_nothing(superd_factory: Callable[..., Superd],
                                         conf_dir: Callable[..., Path], tmp_path: Path) -> None:
    """Plain text to a TLS external service: FAIL tls, and no child was ever started."""
    pki = make_pki(tmp_path)
    superd = superd_factory(conf_dir(cat=external("cat", require_program("cat"), pki)))
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", superd.port("cat")), timeout=5) as sock:
            sock.sendall(b"hello, plain text\r\n")
            sock.settimeout(5)
            try:
                while sock.recv(4096):
                    pass
            except ConnectionResetError:
                pass
    fail = superd.wait_for_event(lambda e: str(e.get("xinetd_line")).startswith("FAIL: cat tls"))
    # A child is started only after a handshake, so before the failure is logged.
    assert not [e for e in superd.events()[:superd.events().index(fail)]
                if e.get("event") == "start"]


def test_stalled_client_is_throttled(superd_factory: Callable[..., Superd],
                                     conf_dir: Callable[..., Path], tmp_path: Path) -> None:
    """A TLS client that writes to cat and never reads is stopped; superd's memory stays flat."""
    pki = make_pki(tmp_path)
    superd = superd_factory(conf_dir(cat=external("cat", require_program("cat"), pki)))
    context = ssl.create_default_context(cafile=str(pki.ca_path))
    before = superd.rss_kib()
    with socket.create_connection(("127.0.0.1", superd.port("cat")), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.settimeout(0.5)
        sent = 0
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            try:
                sent += tls.send(b"y" * 16384)
            except (TimeoutError, ssl.SSLWantWriteError):
                break
        assert sent < 32 * 1024 * 1024
        assert superd.rss_kib() - before < 16 * 1024
