"""
TLS echo throughput over one connection: the client of the ``tls`` figure.

Run as a script (pinned to the load CPU under --pin, like loadgen): connect with TLS
(no verification: the run's own self-signed certificate), then write a
64 KiB block and read it back, again and again, for the warm-up and the
measurement window.  Prints one line in loadgen's ``key=value`` format, so
``load.parse_result`` reads it.  The TLS work is OpenSSL's (C) in both
directions; Python only moves 64 KiB blocks, a few thousand per second.

    tlsclient.py PORT DURATION WARMUP
"""

from __future__ import annotations

import socket
import ssl
import sys
import time

__all__ = ["BLOCK", "echo_rounds", "result_line"]

BLOCK = 64 * 1024


def result_line(nbytes: int, secs: float, errors: int = 0) -> str:
    """The loadgen-style result: one connection, bytes echoed in the window."""
    return f"conns=1 errors={errors} bytes={nbytes} secs={secs:.6f} total=1"


def _read_exactly(conn: ssl.SSLSocket, size: int) -> None:
    left = size
    while left:
        chunk = conn.recv(left)
        if not chunk:
            raise ConnectionError("server closed the connection")
        left -= len(chunk)


def echo_rounds(conn: ssl.SSLSocket, duration: float, warmup: float) -> tuple[int, float]:
    """Echo 64 KiB blocks; (bytes echoed inside the window, window seconds)."""
    block = b"x" * BLOCK
    start = time.monotonic()
    window_start, end = start + warmup, start + warmup + duration
    nbytes = 0
    while (now := time.monotonic()) < end:
        conn.sendall(block)
        _read_exactly(conn, BLOCK)
        if now >= window_start:
            nbytes += BLOCK
    return nbytes, time.monotonic() - window_start


def main(argv: list[str]) -> int:
    port, duration, warmup = int(argv[1]), float(argv[2]), float(argv[3])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with context.wrap_socket(raw) as conn:
            nbytes, secs = echo_rounds(conn, duration, warmup)
    print(result_line(nbytes, secs))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
