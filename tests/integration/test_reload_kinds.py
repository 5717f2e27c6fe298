"""
Reload of kept-but-changed services of the other kinds: a ``wait = yes``
server keeps its socket and its running child, and the next child uses the
new settings; a UDP builtin keeps its port and applies new address lists.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

from superd.cli.control import request
from tests.integration.conftest import StartSuperd
from tests.integration.external import acceptor, read_all, service_block, wait_until
from tests.integration.harness import require_program
from tests.integration.reloading import latest_port, reload_and_wait


def ask(port: int) -> list[str]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        return read_all(sock).decode().split()


def test_wait_yes_keeps_socket_and_child_next_child_uses_new_settings(
        superd_factory: StartSuperd, conf_dir: Callable[..., Path], world_dir: Path) -> None:
    """The running server keeps answering through the reload; its successor sees MARK=two."""
    python = require_program("/usr/bin/python3")
    server = acceptor(world_dir, "MARK", idle=1.0)

    def block(mark: str) -> str:
        return service_block("w", python, f"-I -S {server}", wait="yes",
                             extra=f"env = MARK={mark}")

    conf = conf_dir(w=block("one"))
    superd = superd_factory(conf)
    port = superd.port("w")
    pid, mark = ask(port)
    (entry,) = request(superd.state_dir, "status")["status"]["services"]
    assert (entry["state"], str(entry["server_pid"])) == ("suspended", pid)
    (conf / "w").write_text(block("two"))
    result = reload_and_wait(superd)
    assert (result["ok"], result["changed"]) == (True, 1)
    assert ask(port) == [pid, "one"]  # the same server, undisturbed
    assert wait_until(lambda: any(e.get("event") == "exit" for e in superd.events()), 10)
    new_pid, new_mark = ask(port)
    assert (new_pid != pid, new_mark) == (True, "two")
    assert latest_port(superd, "w") == port


UDP_ECHO = """service echo
{
\tid          = echo-dgram
\ttype        = INTERNAL UNLISTED
\tsocket_type = dgram
\twait        = yes
\tport        = 0
\tbind        = 127.0.0.1
\tcps         = 0 0
\tonly_from   = %s
}
"""


def udp_echo(port: int, source: str) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.settimeout(1)
        sock.sendto(b"hello", ("127.0.0.1", port))
        try:
            return sock.recv(64)
        except TimeoutError:
            return None


def test_udp_builtin_keeps_port_and_applies_new_list(
        superd_factory: StartSuperd, conf_dir: Callable[..., Path]) -> None:
    """After the reload the same UDP socket answers 127.0.0.2 and ignores 127.0.0.1."""
    conf = conf_dir(echo=UDP_ECHO % "127.0.0.1")
    superd = superd_factory(conf)
    port = superd.port("echo-dgram", "udp")
    assert udp_echo(port, "127.0.0.1") == b"hello"
    (conf / "echo").write_text(UDP_ECHO % "127.0.0.2")
    assert reload_and_wait(superd)["changed"] == 1
    assert udp_echo(port, "127.0.0.2") == b"hello"
    assert udp_echo(port, "127.0.0.1") is None
    assert latest_port(superd, "echo-dgram", "udp") == port
