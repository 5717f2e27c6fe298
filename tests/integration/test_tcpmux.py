"""
The tcpmux builtin (RFC 1078) in the real daemon: HELP, ``+Go`` for
TCPMUXPLUS (no NUL), the not-found reply, case-insensitive names, bytes
after the line preserved (for an in-process builtin and for a spawned
``/bin/cat`` that is handed the socket), each client service's own access
rules, and a client that sends 1 MB without a newline.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from pathlib import Path

from tests.certs import make_pki
from tests.integration.harness import Superd, require_program

TCPMUX = """service tcpmux
{
	type        = INTERNAL UNLISTED
	socket_type = stream
	wait        = no
	port        = 0
	bind        = 127.0.0.1
	log_on_success = HOST
	log_on_failure = HOST
}
"""


def client(name: str, kind: str, extra: str) -> str:
    return (f"service {name}\n{{\n\ttype = {kind}\n\tsocket_type = stream\n"
            f"\tprotocol = tcp\n\twait = no\n\tlog_on_success = HOST\n"
            f"\tlog_on_failure = HOST\n{extra}}}\n")


def conf(cat: str) -> dict[str, str]:
    return {
        "tcpmux": TCPMUX,
        # INTERNAL clients run no program, so they need no user.
        "echo": client("echo", "INTERNAL TCPMUXPLUS", ""),
        "myplus": client("myplus", "TCPMUXPLUS", f"\tuser = root\n\tserver = {cat}\n"),
        "plain": client("plain", "TCPMUX", f"\tuser = root\n\tserver = {cat}\n"),
        "closed": client("closed", "INTERNAL TCPMUXPLUS",
                         "\tonly_from = 127.0.0.2\n")
        .replace("service closed", "service discard"),
    }


def talk(port: int, data: bytes, *, shut: bool = True, timeout: float = 10) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        if shut:
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def start(superd_factory: Callable[..., Superd], conf_dir: Callable[..., Path]) -> Superd:
    return superd_factory(conf_dir(**conf(require_program("cat"))))


def test_help_and_not_found(superd_factory: Callable[..., Superd],
                            conf_dir: Callable[..., Path]) -> None:
    """HELP lists the mux services; an unknown name gets the RFC reply without a NUL."""
    superd = start(superd_factory, conf_dir)
    port = superd.port("tcpmux")
    listed = talk(port, b"help\r\n").split(b"\r\n")
    assert sorted(listed[:-1]) == [b"discard", b"echo", b"myplus", b"plain"]
    assert talk(port, b"nosuch\r\n") == b"-Service name not found\r\n"


def test_builtin_with_bytes_after_the_line(superd_factory: Callable[..., Superd],
                                           conf_dir: Callable[..., Path]) -> None:
    """ECHO (any case, LF only) answers +Go, then echoes what followed the line at once."""
    superd = start(superd_factory, conf_dir)
    assert talk(superd.port("tcpmux"), b"ECHO\nsame packet\n") == b"+Go\r\nsame packet\n"
    superd.wait_for_event(lambda e: e.get("xinetd_line") == "START: echo from=127.0.0.1")


def test_spawned_server_keeps_bytes(superd_factory: Callable[..., Superd],
                                    conf_dir: Callable[..., Path]) -> None:
    """A spawned cat handed the socket still gets the bytes sent with the line."""
    superd = start(superd_factory, conf_dir)
    port = superd.port("tcpmux")
    payload = b"x" * 100_000
    assert talk(port, b"myplus\r\n" + payload) == b"+Go\r\n" + payload
    assert talk(port, b"plain\r\nraw bytes") == b"raw bytes"


def test_client_access_rules(superd_factory: Callable[..., Superd],
                             conf_dir: Callable[..., Path]) -> None:
    """A client service's own only_from refuses the peer: FAIL under its id, no +Go."""
    superd = start(superd_factory, conf_dir)
    assert talk(superd.port("tcpmux"), b"discard\r\n") == b""
    superd.wait_for_event(lambda e: e.get("xinetd_line") == "FAIL: discard address from=127.0.0.1")


def test_megabyte_without_newline(superd_factory: Callable[..., Superd],
                                  conf_dir: Callable[..., Path]) -> None:
    """1 MB without a newline is refused after 1 KiB and closed; the daemon stays small."""
    superd = start(superd_factory, conf_dir)
    before = superd.idle_fds()
    with socket.create_connection(("127.0.0.1", superd.port("tcpmux")), timeout=10) as sock:
        sent = 0
        try:
            while sent < 1_000_000:
                sent += sock.send(b"a" * 65536)
        except (BrokenPipeError, ConnectionResetError):
            pass
        sock.settimeout(10)
        try:
            assert sock.recv(100) == b""
        except ConnectionResetError:
            pass
    assert not superd.fds_beyond(before)
    assert talk(superd.port("tcpmux"), b"echo\r\nstill alive") == b"+Go\r\nstill alive"


def test_tcpmux_over_tls(superd_factory: Callable[..., Superd], conf_dir: Callable[..., Path],
                         tmp_path: Path) -> None:
    """tcpmux behind TLS: the line and the bytes after it reach a spawned cat via pipe mode."""
    pki = make_pki(tmp_path)
    files = conf(require_program("cat"))
    files["tcpmux"] = TCPMUX.replace(
        "\tport        = 0\n",
        f"\tport = 0\n\ttls_cert = {pki.server.cert_path}\n\ttls_key = {pki.server.key_path}\n")
    superd = superd_factory(conf_dir(**files))
    context = ssl.create_default_context(cafile=str(pki.ca_path))
    with socket.create_connection(("127.0.0.1", superd.port("tcpmux")), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(b"MYPLUS\r\nover tls")
        got = b""
        while len(got) < len(b"+Go\r\nover tls"):
            chunk = tls.recv(100)
            if not chunk:
                break
            got += chunk
    assert got == b"+Go\r\nover tls"


def test_banner_then_line(superd_factory: Callable[..., Superd], conf_dir: Callable[..., Path],
                          tmp_path: Path) -> None:
    """A tcpmux banner goes out first; the line is still read exactly."""
    banner = tmp_path / "banner"
    # Near the banner limit (64 KiB), so the socket may still be writing it.
    banner.write_bytes(b"welcome to tcpmux\r\n" * 3400)
    files = conf(require_program("cat"))
    files["tcpmux"] = TCPMUX.replace("\tport        = 0\n", f"\tport = 0\n\tbanner = {banner}\n")
    superd = superd_factory(conf_dir(**files))
    reply = talk(superd.port("tcpmux"), b"echo\r\nafter")
    assert reply == banner.read_bytes() + b"+Go\r\nafter"
