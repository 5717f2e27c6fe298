"""``bench/run`` itself runs end to end for a tiny duration.

It starts the real superd and xinetd on the generated configuration and
prints its tables; nothing here looks at how fast anything was.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys

import pytest
from benchlib import main

from tests.integration.harness import require_program

from .conftest import BENCH_DIR


def _bench_idle() -> bool:
    """True unless another bench run holds the lock (the test would wait for it)."""
    with open(main.LOCK_PATH, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(lock, fcntl.LOCK_UN)
        return True


def _quick_run(only: str, timeout: int, *programs: str) -> str:
    """``bench/run --quick --duration 0.2 --only ONLY``'s output; skips
    without root, xinetd, gcc, ``programs``, or while another run measures."""
    if os.geteuid() != 0 or not os.path.exists("/usr/sbin/xinetd") or not shutil.which("gcc"):
        pytest.skip("needs root, xinetd and gcc")
    for program in programs:
        require_program(program)
    if not _bench_idle():
        pytest.skip("another bench/run is measuring on this machine")
    argv = [sys.executable, os.path.join(BENCH_DIR, "run"), "--quick", "--duration", "0.2",
            "--only", only]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_quick_echo_run_measures_both_daemons_and_both_peers() -> None:
    """One short echo figure: both daemons, plain twistd inetd and the C echo loop
    start, all four get a number, all are stopped; the run says it is unpinned."""
    out = _quick_run("echo", 120, "unshare", "ip")
    lines = out.splitlines()
    header = next(ln for ln in lines if "figure (median)" in ln)
    assert header.split()[-5:] == ["tw", "inetd", "C", "echo", "sd/xi"], header
    row = next(ln for ln in lines if "echo conn/s" in ln)
    cells = row.split("]", 1)[1].split()
    superd, xinetd, twinetd, echoloop = cells[0], cells[1], cells[4], cells[5]
    assert "-" not in (superd, xinetd, twinetd, echoloop), out
    for text in ("superd / xinetd", "superd / plain twistd inetd", "superd / C epoll echo"):
        line = next(ln for ln in lines if f"echo conn/s: {text}" in ln)
        assert line.split()[-1] in ("PASS", "MISS"), line
    assert any(ln.startswith("pinning     nothing pinned") for ln in lines), out


def test_quick_latency_run_probes_both_daemons_under_both_floods() -> None:
    """Issue 13's figure: p50/p99 with and without each flood, for superd and xinetd,
    with the flood's rate, and a verdict for superd under each flood."""
    out = _quick_run("latency", 180)
    lines = out.splitlines()
    for label in ("no flood: p50", "UDP flood (0-8 B): p50", "UDP flood from port 7 (0-8 B): p50"):
        at = next(i for i, ln in enumerate(lines) if label in ln)
        for row in lines[at : at + 3]:  # p50, p99, failed probes
            assert row.split("]", 1)[1].split()[:2] != ["-", "-"], out
    assert sum("flood: datagrams sent per second" in ln for ln in lines) == 2, out
    for flood in ("UDP flood", "UDP flood from port 7"):
        line = next(ln for ln in lines if f"echo p99 {flood} / no flood (superd)" in ln)
        assert line.split()[-1] in ("PASS", "MISS"), line


def test_quick_issue_6_and_7_figures_run() -> None:
    """TLS (superd vs stunnel4), redirect and ban propagation each print numbers."""
    out = _quick_run("tls,redirect,propagation", 300, "stunnel4", "redis-server", "openssl")
    rows = {
        "TLS handshakes": 2,  # superd and stunnel4 columns
        "redirect conn/s": 2,  # superd and xinetd
        "ban propagation, 3 superd + redis (100 bans): median": 1,
    }
    for label, filled in rows.items():
        row = next(ln for ln in out.splitlines() if label in ln)
        cells = row.split("]", 1)[1].split()
        # superd, xinetd, C loop, Py loop, stunnel4
        numbers = [c for c in cells[:5] if c != "-"]
        assert len(numbers) >= filled, out
    assert "figure tls failed" not in out, out


def test_quick_spawn_run_measures_all_four_servers() -> None:
    """The spawn figure gives superd, xinetd, the C loop and the Python loop a
    number each, and prints the Python floor's ratios as informational targets
    beside the issue's two goals; so does the tinycat figure, whose floors are
    restarted on tinycat, and the spawn figure after it has its floors back."""
    out = _quick_run("spawn,tiny,spawn-pinned", 180)
    lines = out.splitlines()
    header = next(ln for ln in lines if "figure (median)" in ln)
    assert header.split()[2:] == ["superd", "xinetd", "C", "loop", "Py", "loop", "sd/xi"]
    for label in ("spawned /bin/cat conn/s", "spawned tinycat (no libc) conn/s",
                  "spawned /bin/cat conn/s, PINNED"):
        row = next(ln for ln in lines if label in ln)
        assert "-" not in row.split("]", 1)[1].split()[:4], out
    for text in ("superd / xinetd", "superd / C posix_spawn loop", "superd / Python floor"):
        line = next(ln for ln in lines if f" spawned tinycat: {text} " in ln)
        assert line.split()[-1] == "info", line
    targets = {
        "spawned cat: superd / xinetd": ("PASS", "MISS"),
        "spawned cat: superd / C posix_spawn loop": ("PASS", "MISS"),
        "spawned cat: Python floor / xinetd": ("info",),
        "spawn, pinned view: superd / xinetd": ("info",),
        "spawned cat: Python floor / C loop": ("info",),
        "spawned cat: superd / Python floor": ("info",),
    }
    for text, verdicts in targets.items():
        line = next(ln for ln in lines if f" {text} " in ln)
        assert line.split()[-1] in verdicts, line
