"""
``tls_profile`` on the real daemon, as ``sslscan`` sees it: by default
(intermediate) TLS 1.2 and 1.3 with forward-secret AEAD suites only;
``modern`` TLS 1.3 only; ``old`` TLS 1.0 to 1.3 with CBC and static-RSA
suites.  And ``redirect_tls_profile`` against an ``openssl s_server``
upstream that speaks only legacy TLS.
"""

from __future__ import annotations

import re
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.certs import PKI, Issued, make_pki
from tests.integration.external import read_all
from tests.integration.harness import Superd, require_program
from tests.integration.sslscan import sslscan
from tests.integration.test_redirect import relay_block


@pytest.fixture
def pki(tmp_path: Path) -> PKI:
    directory = tmp_path / "pki"
    directory.mkdir()
    return make_pki(directory)


@pytest.fixture
def rsa_server(pki: PKI) -> Issued:
    """Static-RSA suites need an RSA certificate: the one the scans see."""
    return pki.issue("rsa", ["localhost"], rsa_key=True)


def echo(service_id: str, server: Issued, extra: str = "") -> str:
    return (f"service echo\n{{\n\tid = {service_id}\n\ttype = INTERNAL UNLISTED\n"
            f"\tsocket_type = stream\n\twait = no\n\tport = 0\n\tbind = 127.0.0.1\n"
            f"\tcps = 0 0\n\ttls_cert = {server.cert_path}\n\ttls_key = {server.key_path}\n"
            f"{extra}}}\n")


FORWARD_SECRET_AEAD = re.compile(r"^(ECDHE|DHE)-.*(-GCM-|CHACHA20-POLY1305)")


def test_profiles_as_sslscan_sees_them(superd_factory: Callable[..., Superd],
                                       conf_dir: Callable[..., Path], rsa_server: Issued) -> None:
    """Default: no TLS 1.0/1.1, no AES128-SHA, only FS AEAD under 1.2, TLS 1.3 offered;
    modern: TLS 1.3 only; old: TLS 1.0 to 1.3 with AES128-SHA."""
    superd = superd_factory(conf_dir(
        default=echo("plain", rsa_server),
        modern=echo("modern", rsa_server, "\ttls_profile = modern\n"),
        old=echo("old", rsa_server, "\ttls_profile = old\n")))
    default = sslscan(superd.port("plain"))
    assert default.versions == {"TLSv1.2", "TLSv1.3"}
    tls12 = default.suites_of("TLSv1.2")
    assert "ECDHE-RSA-AES128-GCM-SHA256" in tls12 and "AES128-SHA" not in tls12
    assert all(FORWARD_SECRET_AEAD.match(suite) for suite in tls12), tls12
    assert default.suites_of("TLSv1.3")

    modern = sslscan(superd.port("modern"))
    assert modern.versions == {"TLSv1.3"}
    assert {version for version, _ in modern.suites} == {"TLSv1.3"}

    old = sslscan(superd.port("old"))
    assert old.versions == {"TLSv1.0", "TLSv1.1", "TLSv1.2", "TLSv1.3"}
    assert "AES128-SHA" in old.suites_of("TLSv1.2") & old.suites_of("TLSv1.0")
    assert "ECDHE-RSA-AES128-GCM-SHA256" in old.suites_of("TLSv1.2")


@pytest.fixture
def legacy_upstream(rsa_server: Issued) -> Iterator[int]:
    """``openssl s_server`` speaking TLS 1.0 with AES128-SHA only, reversing lines."""
    command = [require_program("openssl"), "s_server", "-accept", "127.0.0.1:0",
               "-cert", str(rsa_server.cert_path), "-key", str(rsa_server.key_path),
               "-tls1", "-cipher", "AES128-SHA:@SECLEVEL=0", "-rev"]
    server = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        assert server.stdout is not None
        port = None
        for line in server.stdout:  # "ACCEPT 127.0.0.1:PORT" once it listens
            found = re.match(r"ACCEPT 127\.0\.0\.1:(\d+)", line)
            if found:
                port = int(found.group(1))
                break
        assert port is not None, "s_server did not listen"
        yield port
    finally:
        server.kill()
        server.wait(10)


def test_redirect_tls_profile(superd_factory: Callable[..., Superd],
                              conf_dir: Callable[..., Path], pki: PKI,
                              legacy_upstream: int) -> None:
    """A TLS 1.0, static-RSA upstream is refused by default and reached with
    redirect_tls_profile = old."""
    tls = (f"\tredirect_tls = yes\n\tredirect_tls_name = localhost\n"
           f"\tredirect_tls_ca = {pki.ca_path}\n")
    superd = superd_factory(conf_dir(
        default=relay_block(legacy_upstream, extra=tls, name="default"),
        old=relay_block(legacy_upstream, extra=tls + "\tredirect_tls_profile = old\n",
                        name="old")))
    with socket.create_connection(("127.0.0.1", superd.port("default")), timeout=10) as sock:
        sock.sendall(b"hello\n")
        assert read_all(sock) == b""
    failed = superd.wait_for_event(lambda e: e.get("event") == "redirect_failed")
    assert failed["service_id"] == "default" and "protocol version" in failed["reason"]
    with socket.create_connection(("127.0.0.1", superd.port("old")), timeout=10) as sock:
        sock.sendall(b"hello\n")
        got = b""
        while not got.endswith(b"\n"):
            chunk = sock.recv(100)
            assert chunk, got
            got += chunk
    assert got == b"olleh\n"
