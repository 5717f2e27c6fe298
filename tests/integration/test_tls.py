"""
TLS termination by the real daemon in front of builtins: Python ``ssl`` and
``openssl s_client`` clients, client certificates (signed by the test CA, a
wrong one, none), ``tls_client_names``, plain text on a TLS port, a
handshake that never finishes, and PEM problems reported at load.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.certs import PKI, make_pki
from tests.integration.harness import Superd, run_twistd
from tests.integration.openssl import s_client_line


@pytest.fixture
def pki(tmp_path: Path) -> PKI:
    directory = tmp_path / "pki"
    directory.mkdir()
    return make_pki(directory)


def tls_echo(pki: PKI, extra: str = "", service_id: str = "techo") -> str:
    return (f"service echo\n{{\n\tid = {service_id}\n\ttype = INTERNAL UNLISTED\n"
            f"\tsocket_type = stream\n\twait = no\n\tport = 0\n\tbind = 127.0.0.1\n"
            f"\ttls_cert = {pki.server.cert_path}\n\ttls_key = {pki.server.key_path}\n"
            f"\tlog_on_success = HOST PID\n\tlog_on_failure = HOST\n{extra}}}\n")


def client_context(pki: PKI, cert: object = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca_path))
    if cert is not None:
        context.load_cert_chain(str(cert.cert_path), str(cert.key_path))  # type: ignore[attr-defined]
    return context


def tls_round_trip(port: int, context: ssl.SSLContext, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(payload)
        got = b""
        while len(got) < len(payload):
            chunk = tls.recv(65536)
            if not chunk:
                break
            got += chunk
        return got


def fail_lines(superd: Superd, service_id: str = "techo") -> list[str]:
    return [x for x in superd.xinetd_lines() if x.startswith(f"FAIL: {service_id} tls")]


def test_echo_over_tls(superd_factory: Callable[..., Superd], conf_dir: Callable[..., Path],
                       pki: PKI) -> None:
    """A verified TLS client gets its 1 MiB echoed; START is logged after the handshake."""
    superd = superd_factory(conf_dir(echo=tls_echo(pki)))
    payload = bytes(range(256)) * 4096
    assert tls_round_trip(superd.port("techo"), client_context(pki), payload) == payload
    superd.wait_for_event(lambda e: e.get("xinetd_line") == "START: techo pid=0 from=127.0.0.1")


def test_openssl_s_client(superd_factory: Callable[..., Superd], conf_dir: Callable[..., Path],
                          pki: PKI) -> None:
    """openssl s_client verifies the server certificate and gets the echo."""
    superd = superd_factory(conf_dir(echo=tls_echo(pki)))
    assert s_client_line(superd.port("techo"), pki.ca_path, b"hello over tls\n") == \
        b"hello over tls\n"


@pytest.mark.parametrize("mode", ["require", "optional"])
def test_client_certificates(mode: str, superd_factory: Callable[..., Superd],
                             conf_dir: Callable[..., Path], pki: PKI) -> None:
    """The CA's client passes; a wrong one is refused with FAIL tls; none depends on the mode."""
    extra = f"\ttls_client_ca = {pki.ca_path}\n\ttls_verify_client = {mode}\n"
    superd = superd_factory(conf_dir(echo=tls_echo(pki, extra)))
    port = superd.port("techo")
    assert tls_round_trip(port, client_context(pki, pki.client), b"ok") == b"ok"
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        tls_round_trip(port, client_context(pki, pki.wrong_client), b"no")
    superd.wait_for_event(lambda e: str(e.get("xinetd_line")).startswith("FAIL: techo tls"))
    if mode == "optional":
        assert tls_round_trip(port, client_context(pki), b"anon") == b"anon"
    else:
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            tls_round_trip(port, client_context(pki), b"anon")


def test_client_names(superd_factory: Callable[..., Superd], conf_dir: Callable[..., Path],
                      pki: PKI, tmp_path: Path) -> None:
    """tls_client_names admits a listed name and refuses another with FAIL tls."""
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    other = make_pki(other_dir, client_cn="client2", ca_cn="second test CA")
    ca_both = tmp_path / "both.pem"
    ca_both.write_bytes(pki.ca_pem + other.ca_pem)
    extra = (f"\ttls_client_ca = {ca_both}\n\ttls_verify_client = require\n"
             f"\ttls_client_names = client1 admin.example.org\n")
    superd = superd_factory(conf_dir(echo=tls_echo(pki, extra)))
    port = superd.port("techo")
    assert tls_round_trip(port, client_context(pki, pki.client), b"yes") == b"yes"
    assert tls_round_trip(port, client_context(pki, other.client), b"no") == b""
    line = superd.wait_for_event(
        lambda e: str(e.get("xinetd_line")).startswith("FAIL: techo tls"))["xinetd_line"]
    assert line == "FAIL: techo tls from=127.0.0.1"


def test_plain_text_and_stalled_handshakes(superd_factory: Callable[..., Superd],
                                           conf_dir: Callable[..., Path], pki: PKI) -> None:
    """Plain text is answered with a close; a silent client is cut at the timeout; no leak."""
    superd = superd_factory(conf_dir(echo=tls_echo(pki, "\ttls_handshake_timeout = 1\n")))
    port = superd.port("techo")
    before = superd.idle_fds()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data = sock.recv(4096)
        while data:  # maybe a TLS alert, then EOF
            assert not data.startswith(b"GET")
            data = sock.recv(4096)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        started = time.monotonic()
        try:
            assert sock.recv(1) == b""
        except ConnectionResetError:
            pass
        assert 0.5 < time.monotonic() - started < 4
    superd.wait_for_event(lambda e: "handshake not finished" in str(e.get("detail")))
    assert len(fail_lines(superd)) >= 2
    assert not [x for x in superd.xinetd_lines() if x.startswith("START")]
    assert not superd.fds_beyond(before)


def test_bad_pem_is_a_config_error(conf_dir: Callable[..., Path], pki: PKI) -> None:
    """A key that does not fit the certificate stops startup with exit 78 and file:line."""
    broken = tls_echo(pki).replace(str(pki.server.key_path), str(pki.client.key_path))
    conf = conf_dir(echo=broken)
    result = run_twistd(str(conf))
    assert result.returncode == 78
    assert f"{conf}/echo:10: service echo: tls_key: key does not fit the certificate" \
        in result.stderr + result.stdout


def test_tls_behind_a_host_name_rule(superd_factory: Callable[..., Superd],
                                     conf_dir: Callable[..., Path], pki: PKI) -> None:
    """A decision that waits for a name lookup holds the socket, then TLS proceeds."""
    superd = superd_factory(conf_dir(echo=tls_echo(pki, "\tonly_from = localhost\n")))
    assert tls_round_trip(superd.port("techo"), client_context(pki), b"named") == b"named"


def test_min_version(superd_factory: Callable[..., Superd], conf_dir: Callable[..., Path],
                     pki: PKI) -> None:
    """tls_min_version = 1.3 refuses a TLS 1.2 client (FAIL tls) and serves a 1.3 one."""
    superd = superd_factory(conf_dir(echo=tls_echo(pki, "\ttls_min_version = 1.3\n")))
    old = client_context(pki)
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        tls_round_trip(superd.port("techo"), old, b"old")
    superd.wait_for_event(lambda e: str(e.get("xinetd_line")).startswith("FAIL: techo tls"))
    assert tls_round_trip(superd.port("techo"), client_context(pki), b"new") == b"new"
