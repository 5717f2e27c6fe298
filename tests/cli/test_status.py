"""Tests for superd.cli.status: ``superd status`` asks the daemon and prints."""

from __future__ import annotations

import io
import json
import socket
import threading
from pathlib import Path

from superd.cli.status import run_status
from superd.core.exits import EX_UNAVAILABLE
from superd.core.paths import control_path
from superd.daemon.status import render_text


def test_run_status_prints_text_or_json(tmp_path: Path) -> None:
    """``superd status`` renders the daemon's answer; --json prints it as JSON."""
    status = {"version": "1.2", "pid": 9, "config": "/etc/superd",
              "started": "2026-12-07T01:12:36.500000Z", "uptime": 3723.5,
              "services": [], "children": [], "bans": []}
    for as_json in (False, True):
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(control_path(str(tmp_path)))
        server.listen(1)

        def answer(server: socket.socket = server) -> None:
            conn, _ = server.accept()
            with conn, server:
                conn.recv(4096)
                conn.sendall(json.dumps({"ok": True, "status": status}).encode() + b"\n")

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        out = io.StringIO()
        assert run_status(str(tmp_path), as_json, out, io.StringIO()) == 0
        thread.join(5)
        Path(control_path(str(tmp_path))).unlink()
        if as_json:
            assert json.loads(out.getvalue())["pid"] == 9
        else:
            assert out.getvalue() == render_text(status)
            assert out.getvalue().startswith(
                "superd 1.2, pid 9, configuration /etc/superd\n"
                "started 2026-12-07T01:12:36Z (up 1h 2m 3s)\n"
                "0 services, 0 failed, 0 disabled, 0 children, 0 bans\n")


def test_run_status_without_a_daemon(tmp_path: Path) -> None:
    """No daemon: a message on stderr and EX_UNAVAILABLE."""
    err = io.StringIO()
    assert run_status(str(tmp_path), False, io.StringIO(), err) == EX_UNAVAILABLE
    assert "is superd running" in err.getvalue()
