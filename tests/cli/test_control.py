"""Tests for superd.cli.control: one request to the daemon's control socket."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest

from superd.cli.control import ControlError, request
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
