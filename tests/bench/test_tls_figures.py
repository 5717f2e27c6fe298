"""The TLS and redirect figures' parts: certificate, stunnel4 and superd configurations,
``s_time`` parsing, and the TLS echo client against a real stunnel4.

They prove the generators and parsers behave, not how fast anything is.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from benchlib import build, procs, tls_figures
from benchlib.load import parse_result

from tests.integration.harness import require_program

from .conftest import BENCH_DIR
from .ports import listening_port_of

# What ``openssl s_time -new`` prints (OpenSSL 3.0), asterisks trimmed.
S_TIME_OUTPUT = """Collecting connection statistics for 1 seconds
*****

444 connections in 0.30s; 1480.00 connections/user sec, bytes read 0
444 connections in 2 real seconds, 0 bytes read per connection
"""


def test_parse_s_time_reads_the_real_seconds_line() -> None:
    """The count comes from the "real seconds" summary line."""
    assert tls_figures.parse_s_time(S_TIME_OUTPUT) == 444


def test_parse_s_time_of_a_failed_run_is_zero() -> None:
    """A client that could not connect printed errors only: zero handshakes."""
    assert tls_figures.parse_s_time("error:8000006F:system library:BIO_connect\n") == 0


def test_stunnel_config_relays_tls_port_to_plain_upstream() -> None:
    """stunnel4 stays in the foreground, writes no pid file, and maps the two ports."""
    text = tls_figures.stunnel_config(4443, 4444, "/c.pem", "/k.pem")
    lines = text.splitlines()
    for line in (
        "foreground = yes",
        "pid =",
        "accept = 127.0.0.1:4443",
        "connect = 127.0.0.1:4444",
        "cert = /c.pem",
        "key = /k.pem",
    ):
        assert line in lines


def test_superd_tls_config_is_accepted_by_superd(tmp_path: Path) -> None:
    """The TLS echo block loads in strict mode: no attribute is misspelled."""
    from superd.config.load import load_configuration

    cert, key = tls_figures.make_certificate(str(tmp_path))
    path = os.path.join(str(tmp_path), "echo")
    with open(path, "w") as f:
        f.write(tls_figures.superd_tls_config(4443, cert, key))
    config = load_configuration(path, strict=True)
    assert [s.id for s in config.services] == ["echo-tls"]


@pytest.fixture
def stunnel_echo(tmp_path: Path) -> Iterator[int]:
    """stunnel4 on a free port in front of bench/upstream.c in echo mode."""
    stunnel = require_program("stunnel4")
    require_program("openssl")
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    work = str(tmp_path)
    upstream = build.build_all(BENCH_DIR, os.path.join(work, "build"))["upstream"]
    cert, key = tls_figures.make_certificate(work)
    conf = os.path.join(work, "stunnel.conf")
    echo = procs.start("echo", [upstream, "echo", "0"], os.path.join(work, "e.log"))
    tunnel = None
    try:
        with open(conf, "w") as f:
            f.write(tls_figures.stunnel_config(0, listening_port_of(echo.pid), cert, key))
        tunnel = procs.start("stunnel4", [stunnel, conf], os.path.join(work, "s.log"))
        yield listening_port_of(tunnel.pid)
    finally:
        if tunnel is not None:
            tunnel.stop()
        echo.stop()


def test_tls_client_echoes_blocks_through_stunnel(stunnel_echo: int) -> None:
    """tlsclient.py prints a loadgen result line with the bytes echoed in its window."""
    client = os.path.join(BENCH_DIR, "benchlib", "tlsclient.py")
    done = subprocess.run(
        [sys.executable, client, str(stunnel_echo), "0.2", "0.05"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    sample = parse_result(done.stdout.strip())
    assert sample.conns == 1 and sample.errors == 0
    assert sample.nbytes > 0 and sample.nbytes % (64 * 1024) == 0
    assert 0.15 < sample.secs < 5


def test_s_time_handshakes_through_stunnel_are_counted(stunnel_echo: int) -> None:
    """A real ``s_time -new`` run against stunnel4 parses to a positive count."""
    argv = ["openssl", "s_time", "-new", "-connect", f"127.0.0.1:{stunnel_echo}", "-time", "1"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False).stdout
    assert tls_figures.parse_s_time(out) > 0
