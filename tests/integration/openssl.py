"""``openssl s_client`` as a test client of a TLS port."""

from __future__ import annotations

import select
import subprocess
from pathlib import Path

from tests.integration.harness import require_program

__all__ = ["s_client", "s_client_line"]


def s_client(port: int, ca_path: Path, line: bytes,
             server_name: str = "localhost") -> tuple[bytes, str]:
    """Send ``line`` through ``openssl s_client -servername server_name``
    (verifying the server as ``server_name`` against ``ca_path``) to
    127.0.0.1:``port``: the first line it prints back (empty if the
    connection ends first), and its standard error."""
    command = [require_program("openssl"), "s_client", "-connect", f"127.0.0.1:{port}",
               "-CAfile", str(ca_path), "-verify_return_error",
               "-verify_hostname", server_name, "-servername", server_name, "-quiet"]
    child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    try:
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(line)
        child.stdin.flush()
        ready, _, _ = select.select([child.stdout], [], [], 20)
        assert ready, "no answer from s_client"
        printed = child.stdout.readline()
    finally:
        child.kill()
        _, stderr = child.communicate(timeout=10)
    return printed, stderr.decode(errors="replace")


def s_client_line(port: int, ca_path: Path, line: bytes) -> bytes:
    """The first line ``s_client`` prints back for ``line``, verifying the
    server as ``localhost``."""
    return s_client(port, ca_path, line)[0]
