"""What bench tests share: ``bench/benchlib`` importable (scripts, no package), an echo helper."""

from __future__ import annotations

import os
import socket
import sys

BENCH_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "bench")
if BENCH_DIR not in sys.path:
    sys.path.insert(0, BENCH_DIR)


def echoed(conn: socket.socket, payload: bytes) -> bytes:
    """Send ``payload`` on ``conn`` and read back as many bytes (an echo server's answer)."""
    conn.sendall(payload)
    got = b""
    while len(got) < len(payload) and (chunk := conn.recv(65536)):
        got += chunk
    return got
