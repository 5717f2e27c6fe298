"""
SNI routing on the real daemon: several TLS services share one port and are
chosen by the server name the client sends (``openssl s_client
-servername`` and Python's ``ssl``) -- each with its own certificate, access
rules, handler and limits; a name nobody routes gets the port's default
service, or an ``unrecognized_name`` alert when it has none; a reload
changes the routes on the very same socket.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Optional

import pytest
from cryptography import x509

from tests.certs import PKI, Issued, make_pki
from tests.integration.external import read_all
from tests.integration.harness import Superd, on_free_ports, require_program
from tests.integration.openssl import s_client
from tests.integration.reloading import reload_and_wait


@pytest.fixture
def pki(tmp_path: Path) -> PKI:
    directory = tmp_path / "pki"
    directory.mkdir()
    return make_pki(directory)


def tls_block(name: str, service_id: str, port: int, issued: Issued, extra: str = "") -> str:
    return (f"service {name}\n{{\n\tid = {service_id}\n\ttype = INTERNAL UNLISTED\n"
            f"\tsocket_type = stream\n\twait = no\n\tport = {port}\n\tbind = 127.0.0.1\n"
            f"\tcps = 0 0\n\ttls_cert = {issued.cert_path}\n\ttls_key = {issued.key_path}\n"
            f"\tlog_on_success = HOST PID\n\tlog_on_failure = HOST\n{extra}}}\n")


def default_block(port: int, issued: Issued) -> str:
    """An external server (its environment is its answer) without tls_sni."""
    return (f"service printenv\n{{\n\tid = fallback\n\ttype = UNLISTED\n"
            f"\tsocket_type = stream\n\twait = no\n\tport = {port}\n\tbind = 127.0.0.1\n"
            f"\tuser = nobody\n\tserver = /usr/bin/env\n\tcps = 0 0\n"
            f"\ttls_cert = {issued.cert_path}\n\ttls_key = {issued.key_path}\n"
            f"\tlog_on_success = HOST PID EXIT\n\tlog_on_failure = HOST\n}}\n")


def exchange(port: int, pki: PKI, server_name: Optional[str], payload: bytes = b"",
             source: str = "127.0.0.1") -> tuple[bytes, x509.Certificate]:
    """Connect with TLS sending ``server_name``; what the service answers (until
    EOF, or one echo of ``payload``) and the certificate it presented."""
    context = ssl.create_default_context(cafile=str(pki.ca_path))
    context.check_hostname = server_name is not None
    with socket.create_connection(("127.0.0.1", port), timeout=10,
                                  source_address=(source, 0)) as raw, \
            context.wrap_socket(raw, server_hostname=server_name) as tls:
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        certificate = x509.load_der_x509_certificate(der)
        if payload:
            tls.sendall(payload)
            with tls.makefile("rb") as answer:
                return answer.read(len(payload)), certificate
        return read_all(tls), certificate


def common_name(certificate: x509.Certificate) -> str:
    return str(certificate.subject.rfc4514_string())


@pytest.fixture
def certificates(pki: PKI) -> dict[str, Issued]:
    return {name: pki.issue(name, [f"{name}.example.com"]) for name in ("a", "b", "c")}


def start(superd_factory: Callable[..., Superd], conf_dir: Callable[..., Path],
          blocks: Callable[[int], dict[str, str]]) -> tuple[Superd, int]:
    found: list[int] = []

    def run(ports: list[int]) -> Superd:
        found[:] = ports
        return superd_factory(conf_dir(**blocks(ports[0])))

    superd = on_free_ports(run)
    return superd, found[0]


def test_two_names_two_services(superd_factory: Callable[..., Superd],
                                conf_dir: Callable[..., Path], pki: PKI,
                                certificates: dict[str, Issued]) -> None:
    """a.example.com is echo, b.example.com daytime, each with its certificate;
    b's only_from applies after routing, under b's id; no name, no service."""
    superd, port = start(superd_factory, conf_dir, lambda p: {
        "a": tls_block("echo", "sni-a", p, certificates["a"], "\ttls_sni = a.example.com\n"),
        "b": tls_block("daytime", "sni-b", p, certificates["b"],
                       "\ttls_sni = B.Example.com\n\tonly_from = 127.0.0.2\n")})
    echoed, cert = exchange(port, pki, "a.example.com", b"hello a\n")
    assert (echoed, common_name(cert)) == (b"hello a\n", "CN=a.example.com")
    answer, cert = exchange(port, pki, "b.example.com", source="127.0.0.2")
    assert answer.endswith(b"\r\n") and len(answer.split()) == 5  # xinetd's daytime
    assert common_name(cert) == "CN=b.example.com"
    with pytest.raises((ssl.SSLError, ConnectionError)):
        exchange(port, pki, "b.example.com")  # from 127.0.0.1: refused by b's only_from
    superd.wait_for_event(lambda e: e.get("xinetd_line") == "FAIL: sni-b address from=127.0.0.1")
    starts = [x for x in superd.xinetd_lines() if x.startswith("START")]
    assert starts == ["START: sni-a pid=0 from=127.0.0.1", "START: sni-b pid=0 from=127.0.0.2"]
    printed, _ = s_client(port, pki.ca_path, b"from s_client\n", "a.example.com")
    assert printed == b"from s_client\n"


def test_unknown_names_get_an_alert_without_a_default(
        superd_factory: Callable[..., Superd], conf_dir: Callable[..., Path], pki: PKI,
        certificates: dict[str, Issued]) -> None:
    """No default: an unknown name, or none, is refused with unrecognized_name, logged."""
    superd, port = start(superd_factory, conf_dir, lambda p: {
        "a": tls_block("echo", "sni-a", p, certificates["a"], "\ttls_sni = a.example.com\n")})
    printed, stderr = s_client(port, pki.ca_path, b"hello\n", "c.example.com")
    assert printed == b"" and "unrecognized name" in stderr
    with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
        exchange(port, pki, None)
    refused = superd.wait_for_events(lambda e: e.get("event") == "sni_refused", 2)
    assert [e["reason"] for e in refused] == ["unknown server name", "no server name"]
    assert refused[0]["server_name"] == "c.example.com"
    assert not [x for x in superd.xinetd_lines() if x.startswith(("START", "FAIL"))]


def test_the_default_service_takes_the_rest(superd_factory: Callable[..., Superd],
                                            conf_dir: Callable[..., Path], pki: PKI,
                                            certificates: dict[str, Issued]) -> None:
    """The service without tls_sni (an external server, over the TLS pipe) gets
    unknown names and clients that send none."""
    require_program("/usr/bin/env")
    superd, port = start(superd_factory, conf_dir, lambda p: {
        "a": tls_block("echo", "sni-a", p, certificates["a"], "\ttls_sni = a.example.com\n"),
        "z": default_block(p, pki.server)})
    for output, cert in (_unverified(port, "c.example.com"), exchange(port, pki, None)):
        assert b"SUPERD_TLS_VERSION=TLSv1.3" in output
        assert common_name(cert) == "CN=localhost"
    assert exchange(port, pki, "a.example.com", b"still a\n")[0] == b"still a\n"
    superd.wait_for_events(lambda e: str(e.get("xinetd_line")).startswith("EXIT: fallback"), 2)


def _unverified(port: int, server_name: str) -> tuple[bytes, x509.Certificate]:
    """Send ``server_name`` but accept any certificate (the default's is for another name)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname=server_name) as tls:
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        return read_all(tls), x509.load_der_x509_certificate(der)


def test_limits_count_against_the_chosen_service(
        superd_factory: Callable[..., Superd], conf_dir: Callable[..., Path], pki: PKI,
        certificates: dict[str, Issued]) -> None:
    """a's instances = 1 is full while one client holds it; b is not affected."""
    superd, port = start(superd_factory, conf_dir, lambda p: {
        "a": tls_block("echo", "sni-a", p, certificates["a"],
                       "\ttls_sni = a.example.com\n\tinstances = 1\n"),
        "b": tls_block("daytime", "sni-b", p, certificates["b"], "\ttls_sni = b.example.com\n")})
    context = ssl.create_default_context(cafile=str(pki.ca_path))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="a.example.com") as held:
        held.sendall(b"x")
        assert held.recv(1) == b"x"
        with pytest.raises((ssl.SSLError, ConnectionError)):
            exchange(port, pki, "a.example.com", b"second\n")
        superd.wait_for_event(
            lambda e: e.get("xinetd_line") == "FAIL: sni-a service_limit from=127.0.0.1")
        assert exchange(port, pki, "b.example.com")[0].endswith(b"\r\n")


def listening_inode(pid: int, port: int) -> str:
    """The inode of the daemon's listening socket on ``port`` (/proc/PID/net/tcp)."""
    with open(f"/proc/{pid}/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A":
                return fields[9]
    raise AssertionError(f"nothing listens on {port}")


def test_reload_changes_routes_on_the_same_socket(
        superd_factory: Callable[..., Superd], conf_dir: Callable[..., Path], pki: PKI,
        certificates: dict[str, Issued]) -> None:
    """Adding c and dropping b by reload: c is served, b refused, the socket never
    closed (the same inode), a undisturbed."""
    blocks: dict[str, str] = {}

    def first(p: int) -> dict[str, str]:
        blocks.update(
            a=tls_block("echo", "sni-a", p, certificates["a"], "\ttls_sni = a.example.com\n"),
            b=tls_block("daytime", "sni-b", p, certificates["b"],
                        "\ttls_sni = b.example.com\n"),
            c=tls_block("chargen", "sni-c", p, certificates["c"],
                        "\ttls_sni = c.example.com\n"))
        return {"a": blocks["a"], "b": blocks["b"]}

    superd, port = start(superd_factory, conf_dir, first)
    directory = _conf_of(superd)
    inode = listening_inode(superd.pid, port)
    with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
        exchange(port, pki, "c.example.com")
    (directory / "b").unlink()
    (directory / "c").write_text(blocks["c"])
    result = reload_and_wait(superd)
    assert (result["ok"], result["new"], result["dropped"]) == (True, 1, 1)
    assert listening_inode(superd.pid, port) == inode
    context = ssl.create_default_context(cafile=str(pki.ca_path))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="c.example.com") as tls:
        assert len(tls.recv(100)) > 0  # chargen
    with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
        exchange(port, pki, "b.example.com")
    assert exchange(port, pki, "a.example.com", b"a again\n")[0] == b"a again\n"


def _conf_of(superd: Superd) -> Path:
    """The configuration directory the daemon was started with (its -c argument)."""
    arguments = superd.process.args
    assert isinstance(arguments, list)
    return Path(str(arguments[arguments.index("-c") + 1]))


def test_bad_hellos_cost_nothing_lasting(superd_factory: Callable[..., Superd],
                                         conf_dir: Callable[..., Path], pki: PKI,
                                         certificates: dict[str, Issued]) -> None:
    """Plain text, an oversized or cut-off ClientHello, silence past the timeout: each
    refused and logged by the port, no descriptor kept, the port still serving."""
    superd, port = start(superd_factory, conf_dir, lambda p: {
        "a": tls_block("echo", "sni-a", p, certificates["a"],
                       "\ttls_sni = a.example.com\n\ttls_handshake_timeout = 1\n")})
    before = superd.idle_fds()
    hello = ssl_hello("a.example.com")
    attempts = [b"GET / HTTP/1.0\r\n\r\n",
                b"\x16\x03\x01\x40\x00\x01\x00\x3f\xf0" + b"\x00" * 20000,
                hello[:40]]
    for data in attempts:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(data)
            if data is not attempts[-1]:
                assert read_all(sock) == b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as silent:
        assert read_all(silent) == b""  # closed after tls_handshake_timeout
    reasons = [e["reason"] for e in superd.wait_for_events(
        lambda e: e.get("event") == "sni_refused", 3)]
    assert reasons == ["malformed ClientHello", "malformed ClientHello", "no ClientHello"]
    assert not superd.fds_beyond(before)
    assert exchange(port, pki, "a.example.com", b"fine\n")[0] == b"fine\n"


def ssl_hello(server_name: str) -> bytes:
    """The ClientHello Python's ssl sends first."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()
