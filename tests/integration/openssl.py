"""``openssl s_client`` as a test client of a TLS port."""

from __future__ import annotations

import select
import subprocess
from pathlib import Path

from tests.integration.harness import require_program

__all__ = ["s_client_line"]


def s_client_line(port: int, ca_path: Path, line: bytes) -> bytes:
    """Send ``line`` through ``openssl s_client`` (verifying the server as
    ``localhost`` against ``ca_path``) to 127.0.0.1:``port``; the first
    line it prints back."""
    command = [require_program("openssl"), "s_client", "-connect", f"127.0.0.1:{port}",
               "-CAfile", str(ca_path), "-verify_return_error",
               "-verify_hostname", "localhost", "-servername", "localhost", "-quiet"]
    child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    try:
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(line)
        child.stdin.flush()
        ready, _, _ = select.select([child.stdout], [], [], 20)
        assert ready, "no answer from s_client"
        return child.stdout.readline()
    finally:
        child.kill()
        child.wait(10)
