"""
Users' own protocols in the real daemon: the shipped greeter example end to
end (its own attributes, access control, TLS), a factory that fails at load
(exit 78 with file and line), and one that raises for every connection
(refused and logged, the daemon unharmed).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.certs import make_pki
from tests.integration.harness import Superd, run_twistd

EXAMPLE = str(Path(__file__).resolve().parents[2] / "examples" / "greeter")


def greeter(extra: str = "", service_id: str = "greeter") -> str:
    return (f"service greeter\n{{\n\tid = {service_id}\n\ttype = INTERNAL UNLISTED\n"
            f"\tsocket_type = stream\n\twait = no\n\tport = 0\n\tbind = 127.0.0.1\n"
            f"\tfactory = superd_greeter:greeter\n\tgreeting = Welcome to the greeter\n"
            f"\tlog_on_success = HOST\n\tlog_on_failure = HOST\n{extra}}}\n")


def env(*paths: str) -> dict[str, str]:
    return {"PYTHONPATH": ":".join((EXAMPLE, *paths))}


def read_lines(sock: socket.socket, count: int) -> list[bytes]:
    data = b""
    while data.count(b"\r\n") < count:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n")[:count]


def test_greeter_example(superd_factory: Callable[..., Superd],
                         conf_dir: Callable[..., Path]) -> None:
    """The example greets with its configured greeting, answers, and says bye."""
    superd = superd_factory(conf_dir(greeter=greeter()), env=env())
    with socket.create_connection(("127.0.0.1", superd.port("greeter")), timeout=5) as sock:
        sock.sendall(b"Ada\nquit\n")
        assert read_lines(sock, 3) == [b"Welcome to the greeter", b"Hello, Ada!", b"Bye"]
    superd.wait_for_event(lambda e: e.get("xinetd_line") == "START: greeter from=127.0.0.1")


def test_shipped_greeter_service(superd_factory: Callable[..., Superd],
                                 conf_dir: Callable[..., Path]) -> None:
    """examples/greeter/greeter, the file its README runs, serves as shipped
    (moved only to an ephemeral port) and logs the client."""
    text = (Path(EXAMPLE) / "greeter").read_text()
    assert "\tport         = 2323\n" in text
    superd = superd_factory(conf_dir(greeter=text.replace(
        "\tport         = 2323\n", "\tport         = 0\n")), env=env())
    with socket.create_connection(("127.0.0.1", superd.port("greeter")), timeout=5) as sock:
        sock.sendall(b"Ada\nquit\n")
        assert read_lines(sock, 3) == [b"Welcome to the greeter", b"Hello, Ada!", b"Bye"]
    superd.wait_for_event(lambda e: e.get("xinetd_line") == "START: greeter from=127.0.0.1")


def test_greeter_access_and_tls(superd_factory: Callable[..., Superd],
                                conf_dir: Callable[..., Path], tmp_path: Path) -> None:
    """only_from refuses with FAIL address; over TLS the greeter works unchanged."""
    pki = make_pki(tmp_path)
    tls = f"\ttls_cert = {pki.server.cert_path}\n\ttls_key = {pki.server.key_path}\n"
    superd = superd_factory(conf_dir(
        a=greeter("\tonly_from = 127.0.0.2\n", "closed"), b=greeter(tls, "tls")), env=env())
    with socket.create_connection(("127.0.0.1", superd.port("closed")), timeout=5) as sock:
        sock.settimeout(5)
        assert sock.recv(100) == b""
    superd.wait_for_event(lambda e: e.get("xinetd_line") == "FAIL: closed address from=127.0.0.1")
    context = ssl.create_default_context(cafile=str(pki.ca_path))
    with socket.create_connection(("127.0.0.1", superd.port("tls")), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as sock:
        sock.sendall(b"Grace\n")
        assert read_lines(sock, 2) == [b"Welcome to the greeter", b"Hello, Grace!"]


@pytest.mark.parametrize(("extra", "expected"), [
    ("", "service greeter: greeting: missing: superd_greeter:greeter needs greeting"),
    ("\tgreeter_idle = soon\n",
     "service greeter: greeter_idle: expected a number of seconds, got 'soon'"),
])
def test_bad_own_attributes(conf_dir: Callable[..., Path], extra: str, expected: str) -> None:
    """The example's own attributes are checked at load: exit 78 with the problem."""
    text = greeter(extra)
    if not extra:
        text = text.replace("\tgreeting = Welcome to the greeter\n", "")
    result = run_twistd(str(conf_dir(greeter=text)), env=env())
    assert result.returncode == 78, result.stderr
    assert expected in result.stderr


def test_factory_failing_at_load(conf_dir: Callable[..., Path], tmp_path: Path) -> None:
    """A factory module that raises on import stops startup with the factory line."""
    (tmp_path / "broken_factory.py").write_text("raise RuntimeError('cannot start')\n")
    conf = conf_dir(svc=greeter().replace("superd_greeter:greeter", "broken_factory:make"))
    result = run_twistd(str(conf), env=env(str(tmp_path)))
    assert result.returncode == 78
    assert (f"{conf}/svc:9: service greeter: factory: cannot load broken_factory:make: "
            "RuntimeError: cannot start") in result.stderr


def test_factory_failing_per_connection(superd_factory: Callable[..., Superd],
                                        conf_dir: Callable[..., Path], tmp_path: Path) -> None:
    """buildProtocol raising: each connection is refused and logged, the daemon lives on."""
    (tmp_path / "flaky_factory.py").write_text(
        "from twisted.internet.protocol import Factory\n"
        "class F(Factory):\n"
        "    def buildProtocol(self, addr): raise RuntimeError('per connection')\n"
        "def make(context): return F()\n")
    conf = conf_dir(svc=greeter().replace("superd_greeter:greeter", "flaky_factory:make"),
                    other=greeter(service_id="fine"))
    superd = superd_factory(conf, env=env(str(tmp_path)))
    superd.allow_errors = True
    before = superd.idle_fds()
    for _ in range(10):
        with socket.create_connection(("127.0.0.1", superd.port("greeter")), timeout=5) as sock:
            sock.settimeout(5)
            assert sock.recv(100) == b""
    superd.wait_for_event(lambda e: e.get("event") == "handler_error")
    with socket.create_connection(("127.0.0.1", superd.port("fine")), timeout=5) as sock:
        assert read_lines(sock, 1) == [b"Welcome to the greeter"]
    assert not superd.fds_beyond(before)


def test_build_factory_failing_at_start(conf_dir: Callable[..., Path], tmp_path: Path) -> None:
    """A build_factory that raises stops startup (exit 78) naming the factory line."""
    (tmp_path / "raising_factory.py").write_text(
        "def make(context): raise OSError('no database')\n")
    conf = conf_dir(svc=greeter().replace("superd_greeter:greeter", "raising_factory:make"))
    result = run_twistd(str(conf), env=env(str(tmp_path)))
    assert result.returncode == 78
    assert (f"{conf}/svc:9: service greeter: factory: raising_factory:make: build_factory "
            "failed: OSError: no database") in result.stderr
