"""Tests for superd.cli.control: one request to the daemon's control socket."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest

from superd.cli.control import ControlError, request, run_reload
from superd.core.paths import control_path


def serve_once(path: str, answer: bytes) -> threading.Thread:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)

    def run() -> None:
        conn, _ = server.accept()
        with conn, server:
            conn.recv(4096)
            conn.sendall(answer)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_client_sends_json_and_reads_the_reply(tmp_path: Path) -> None:
    """``request`` returns the daemon's decoded reply."""
    thread = serve_once(control_path(str(tmp_path)), b'{"ok": true, "status": {}}\n')
    assert request(str(tmp_path), "status") == {"ok": True, "status": {}}
    thread.join(5)


def test_client_errors_say_what_to_check(tmp_path: Path) -> None:
    """No socket, a dead socket, and a garbled reply are ControlErrors a person understands."""
    with pytest.raises(ControlError, match="is superd running"):
        request(str(tmp_path), "status")
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(control_path(str(tmp_path)))
    dead.close()
    with pytest.raises(ControlError, match="not running"):
        request(str(tmp_path), "status")
    os.unlink(control_path(str(tmp_path)))
    thread = serve_once(control_path(str(tmp_path)), b"garbage")
    with pytest.raises(ControlError, match="unreadable"):
        request(str(tmp_path), "status")
    thread.join(5)


def _reload_reply(tmp_path: Path, result: dict[str, object]) -> tuple[int, str, str]:
    import io
    import json

    thread = serve_once(control_path(str(tmp_path)),
                        json.dumps({"ok": result["ok"], "reload": result}).encode())
    out, err = io.StringIO(), io.StringIO()
    status = run_reload(str(tmp_path), out, err)
    thread.join(5)
    return status, out.getvalue(), err.getvalue()


COUNTS = {"new": 1, "old": 2, "dropped": 0, "duration": 0.25}


def test_reload_exit_status_says_whether_everything_was_applied(tmp_path: Path) -> None:
    """0 when the new configuration runs as written; 78 with every error when
    it has errors, saying whether the rest was applied (and what was kept)
    or nothing was."""
    assert _reload_reply(tmp_path, {"ok": True, **COUNTS}) == (
        0, "Reconfigured: new=1 old=2 dropped=0 (0.25s)\n", "")
    os.unlink(control_path(str(tmp_path)))
    status, out, err = _reload_reply(tmp_path, {
        "ok": False, "partial": True, **COUNTS, "errors": ["conf/b:5: service b: wait: bad"],
        "failed": [{"id": "b"}],
        "kept": [{"id": "b", "location": "conf/b:1",
                  "reason": "its new block (conf/b:1) has 1 error"}]})
    assert status == 78
    assert out == "Reconfigured: new=1 old=2 dropped=0 (0.25s)\n"
    assert err == (
        "superd reload: partially applied: 1 service failed; everything else was applied:\n"
        "  conf/b:5: service b: wait: bad\n"
        "  kept: service b (conf/b:1) runs its previous definition: its new block"
        " (conf/b:1) has 1 error\n")
    os.unlink(control_path(str(tmp_path)))
    status, out, err = _reload_reply(tmp_path, {"ok": False, "errors": ["conf/x:1: junk"]})
    assert (status, out) == (78, "")
    assert err == ("superd reload: failed; the running configuration is kept:\n"
                   "  conf/x:1: junk\n")
