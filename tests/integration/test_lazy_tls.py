"""
A daemon that serves no TLS holds no OpenSSL (superd.core.lazytls), and a
reload that adds TLS -- a TLS service, or a user's protocol that calls the
reactor's startTLS -- works all the same.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from pathlib import Path

from tests.certs import make_pki
from tests.integration.harness import Superd
from tests.integration.reloading import latest_port, reload_and_wait

STARTTLS = str(Path(__file__).resolve().parent / "starttls")


def daytime() -> str:
    return ("service daytime\n{\n\ttype = INTERNAL UNLISTED\n\tsocket_type = stream\n"
            "\twait = no\n\tport = 0\n\tbind = 127.0.0.1\n}\n")


def openssl_loaded(superd: Superd) -> bool:
    """Whether pyOpenSSL's cryptography bindings are mapped into the daemon."""
    return superd.maps("cryptography/hazmat/bindings")


def test_reload_adds_tls_to_a_daemon_started_without(
        superd_factory: Callable[..., Superd], conf_dir: Callable[..., Path],
        tmp_path: Path) -> None:
    """Started without TLS: no OpenSSL.  A reload adds a TLS echo and a
    user's protocol that upgrades with startTLS: both answer over TLS."""
    pki = make_pki(tmp_path)
    pem = tmp_path / "server.pem"
    pem.write_bytes(pki.server.cert_pem + pki.server.key_pem)
    conf = conf_dir(daytime=daytime())
    superd = superd_factory(conf, env={"PYTHONPATH": STARTTLS})
    assert not openssl_loaded(superd)
    (conf / "echo").write_text(
        "service echo\n{\n\ttype = INTERNAL UNLISTED\n\tsocket_type = stream\n\twait = no\n"
        f"\tport = 0\n\tbind = 127.0.0.1\n\ttls_cert = {pki.server.cert_path}\n"
        f"\ttls_key = {pki.server.key_path}\n}}\n")
    (conf / "upgrade").write_text(
        "service upgrade\n{\n\ttype = INTERNAL UNLISTED\n\tsocket_type = stream\n"
        "\twait = no\n\tport = 0\n\tbind = 127.0.0.1\n"
        f"\tfactory = superd_starttls:upgrading\n\tstarttls_pem = {pem}\n}}\n")
    assert reload_and_wait(superd)["ok"]
    context = ssl.create_default_context(cafile=str(pki.ca_path))
    raw = socket.create_connection(("127.0.0.1", latest_port(superd, "echo")), timeout=10)
    with context.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(b"ping")
        assert tls.recv(4) == b"ping"
    with socket.create_connection(("127.0.0.1", latest_port(superd, "upgrade")),
                                  timeout=10) as raw:
        raw.sendall(b"STARTTLS\n")
        assert raw.recv(3) == b"OK\n"
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"secret")
            assert tls.recv(6) == b"SECRET"
    assert openssl_loaded(superd)
