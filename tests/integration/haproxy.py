"""
A real HAProxy (``haproxy`` from Debian) in front of superd, for the PROXY
protocol tests.

``run_haproxy`` starts it in the foreground (``-db``) with its own
configuration in a temporary directory, in ``mode tcp``, and stops it by
its PID.  Its frontend listens on a socket the test bound to port 0 on
127.0.0.1 and passed down as a descriptor (``bind fd@N``), so no port is
ever guessed; its backend is one superd port, reached from ``source``
(127.0.0.5 by default: an address the tests' clients never use, so the
proxy and the client it names are always told apart).
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.integration.harness import require_program

__all__ = ["PROXY_SOURCE", "HAProxy", "run_haproxy"]

#: Where HAProxy connects to superd from.
PROXY_SOURCE = "127.0.0.5"

_GLOBAL = """\
global
    maxconn 200
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
"""


class HAProxy:
    """A running HAProxy: the address clients connect to."""

    def __init__(self, process: subprocess.Popen[str], port: int) -> None:
        self.process = process
        self.port = port

    def connect(self, source: str = "127.0.0.2", timeout: float = 10) -> socket.socket:
        """A client connection to the frontend from ``source``."""
        return socket.create_connection(("127.0.0.1", self.port), timeout,
                                        source_address=(source, 0))


@contextmanager
def run_haproxy(directory: Path, backend_port: int, *, send: str = "send-proxy",
                source: str = PROXY_SOURCE, bind_options: str = "",
                server_options: str = "") -> Iterator[HAProxy]:
    """
    HAProxy forwarding its frontend to 127.0.0.1:``backend_port`` with
    ``send`` (``send-proxy``, ``send-proxy-v2``) from ``source``;
    ``bind_options`` (``ssl crt ...``) and ``server_options`` (``proxy-v2-options
    ...``) are added to its bind and server lines.
    """
    program = require_program("haproxy")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    config = directory / "haproxy.cfg"
    config.write_text(
        _GLOBAL
        + f"frontend front\n    bind fd@{listener.fileno()} {bind_options}\n"
        + "    default_backend superd\n"
        + f"backend superd\n    server superd 127.0.0.1:{backend_port} {send}"
        + f" source {source} {server_options}\n")
    checked = subprocess.run([program, "-c", "-f", str(config)], capture_output=True,
                             text=True, timeout=30, check=False, pass_fds=[listener.fileno()])
    assert checked.returncode == 0, f"haproxy -c: {checked.stdout}{checked.stderr}"
    process = subprocess.Popen([program, "-db", "-f", str(config)], pass_fds=[listener.fileno()],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    port = listener.getsockname()[1]
    # HAProxy holds its own copy; the kernel queues clients on it until
    # HAProxy polls it, and refuses them if HAProxy has died.
    listener.close()
    try:
        yield HAProxy(process, port)
    finally:
        process.terminate()
        try:
            process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate(timeout=5)
