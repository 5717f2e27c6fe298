"""Tests for superd.daemon.operations and superd.daemon.notify: signals, status dump, sd_notify."""

from __future__ import annotations

import signal
import socket
from pathlib import Path
from typing import Any

from twisted.internet.defer import succeed
from twisted.internet.testing import MemoryReactorClock

from superd.config.model import Configuration, Location, ServiceConfig, SocketType
from superd.core.runtime import Runtime, RuntimeOptions
from superd.daemon import notify
from superd.daemon.operations import Operations
from superd.daemon.service import build_service
from tests.fakes import make_parts


class Reactor(MemoryReactorClock):
    def __init__(self) -> None:
        super().__init__()
        self.from_thread: list[Any] = []
        self.unix: list[tuple[Any, ...]] = []

    def callFromThread(self, f: Any, *args: Any, **kw: Any) -> None:
        self.from_thread.append(f)

    def listenUNIX(self, path: str, factory: Any, backlog: int = 50, mode: int = 0o666,
                   wantPID: bool = False) -> Any:
        self.unix.append((path, mode))
        return type("Port", (), {"stopListening": lambda self: None})()


def echo() -> ServiceConfig:
    return ServiceConfig(name="echo", id="echo", location=Location("c", 1),
                         socket_type=SocketType.STREAM, protocol="tcp", wait=False,
                         port=7, bind=("127.0.0.1",), type=frozenset({"INTERNAL"}))


def daemon(tmp_path: Path, environ: dict[str, str], reloaded: Configuration | None = None,
           strict: bool = False) -> tuple[Any, Operations, list[Any]]:
    """A started tree with its operations; reloads load ``reloaded`` (by
    default the same configuration)."""
    installed: list[Any] = []

    def install(signum: int, handler: Any) -> Any:
        installed.append((signum, handler))
        return None

    runtime = Runtime(reactor=Reactor(), options=RuntimeOptions(state_dir=str(tmp_path)))
    config = Configuration(services=(echo(),))
    top = build_service(config, make_parts(runtime), install_signal=install)
    operations = Operations(top, lambda: succeed(reloaded or config), environ=environ,
                            install_signal=install, strict=strict)
    top.operations = operations
    operations.setServiceParent(top)
    top.privilegedStartService()
    top.startService()
    return top, operations, installed


def test_sigusr1_logs_a_status_dump(tmp_path: Path, log_events: list[dict[str, Any]]) -> None:
    """SIGUSR1 hops into the reactor and logs the status with its text rendering."""
    top, _, installed = daemon(tmp_path, {})
    handler = dict(installed)[signal.SIGUSR1]
    handler(signal.SIGUSR1, None)
    (hop,) = top.runtime.reactor.from_thread
    hop()
    (event,) = [e for e in log_events if e.get("event") == "status"]
    assert event["status"]["services"][0]["id"] == "echo"
    assert "echo" in event["status_text"]


def test_control_socket_in_state_dir_with_mode_0600(tmp_path: Path) -> None:
    """The control socket listens in the state directory, private to superd's user."""
    top, _, _ = daemon(tmp_path, {})
    assert top.runtime.reactor.unix == [(str(tmp_path / "superd.control"), 0o600)]


def test_sighup_reloads_and_notifies_systemd(tmp_path: Path) -> None:
    """A reload is framed by RELOADING=1 and READY=1; stopping sends STOPPING=1."""
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(path)
        listener.settimeout(1)
        top, operations, _ = daemon(tmp_path, {"NOTIFY_SOCKET": path})
        top._environ = {"NOTIFY_SOCKET": path}
        top.reload()
        assert operations.reloader.last is not None and operations.reloader.last.ok
        first = listener.recv(512).decode()
        assert first.startswith("RELOADING=1\nMONOTONIC_USEC=")
        assert listener.recv(512) == b"READY=1\nSTATUS=serving"
        top.stopService()
        assert listener.recv(512) == b"STOPPING=1\nSTATUS=stopping"


def test_notify_without_socket_does_nothing() -> None:
    """No NOTIFY_SOCKET (not under systemd): nothing is sent, nothing fails."""
    assert not notify.ready({})
    assert not notify.notify({"NOTIFY_SOCKET": ""}, "READY=1")


def test_notify_abstract_socket_and_failure(log_events: list[dict[str, Any]]) -> None:
    """'@name' is the abstract namespace; a missing socket is a warning, not an error."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind("\0superd-test-notify")
        assert notify.ready({"NOTIFY_SOCKET": "@superd-test-notify"}, "up\nand running")
        assert listener.recv(64) == b"READY=1\nSTATUS=up and running"
    assert not notify.stopping({"NOTIFY_SOCKET": "/nonexistent/notify"})
    assert any(e.get("event") == "notify_failed" for e in log_events)


def test_a_partial_or_refused_reload_says_so_to_systemd(tmp_path: Path) -> None:
    """After a reload that failed some services the supervisor's status line
    says it was partly applied; under --strict, that it failed."""
    from superd.config.errors import Problem
    from superd.config.model import FailedService

    problem = Problem("c", 5, "echo", "wait", "bad")
    broken = Configuration((), failed=(FailedService("echo", "echo", Location("c", 1),
                                                     (problem,)),), problems=(problem,))
    path = str(tmp_path / "notify")
    for strict, expected in ((False, b"READY=1\nSTATUS=reload partly applied: 1 service"
                                     b" failed (superd status lists them)"),
                             (True, b"READY=1\nSTATUS=reload failed; previous configuration"
                                    b" running")):
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
            listener.bind(path)
            listener.settimeout(1)
            top, operations, _ = daemon(tmp_path, {"NOTIFY_SOCKET": path}, broken, strict)
            top.reload()
            assert listener.recv(512).startswith(b"RELOADING=1")
            assert listener.recv(512) == expected
            assert [s.id for s, _ in top.groups] == ["echo"]  # kept, either way
            top.stopService()
        Path(path).unlink()
