"""
Reloads that cannot apply as written: a syntax error, an unreadable file, a
port now taken, a user that no longer exists.  Each time the running
services keep serving, every error is logged with its file and line,
``superd status`` shows the failure, and a later good reload works.  A
broken file fails only its own services (the reload is partial); a port
that cannot be bound refuses the whole reload.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from superd.cli.control import request
from tests.integration.conftest import StartSuperd
from tests.integration.external import service_block
from tests.integration.harness import Superd
from tests.integration.reloading import echo_block, echo_once, refused, reload_and_wait


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A TCP port on 127.0.0.1 held by the test."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield int(sock.getsockname()[1])


def _break_syntax(conf: Path, port: int) -> str:
    (conf / "broken").write_text("service broken\n{\n\tsocket_type stream\n}\n")
    return f"{conf / 'broken'}:3"


def _unreadable(conf: Path, port: int) -> str:
    # Root reads any mode, so "unreadable" is an include that is a directory.
    (conf / "sub").mkdir()
    (conf / "inc").write_text(f"include {conf / 'sub'}\n")
    return f"{conf / 'inc'}:1"


def _port_taken(conf: Path, port: int) -> str:
    (conf / "first").write_text(echo_block("first"))  # binds, then must be undone
    (conf / "taken").write_text(echo_block("taken", port=port))
    return f"{conf / 'taken'}:"


def _user_gone(conf: Path, port: int) -> str:
    (conf / "ghost").write_text(service_block("ghost", "/bin/cat", user="no-such-user-5"))
    return f"{conf / 'ghost'}:"


@pytest.mark.parametrize("breakage", [_break_syntax, _unreadable, _port_taken, _user_gone],
                         ids=["syntax", "unreadable", "port-taken", "user-gone"])
def test_failed_reload_keeps_running_configuration(
        superd_factory: StartSuperd, conf_dir: Callable[..., Path], taken_port: int,
        breakage: Callable[[Path, int], str]) -> None:
    """The old services keep serving; errors name file and line; status shows it."""
    conf = conf_dir(echo=echo_block("echo"))
    superd: Superd = superd_factory(conf)
    superd.allow_errors = True
    port = superd.port("echo")
    where = breakage(conf, taken_port)
    result = reload_and_wait(superd)
    assert result["ok"] is False
    assert result["partial"] is (breakage is not _port_taken)
    assert any(where in error for error in result["errors"]), result["errors"]
    logged = [e for e in superd.events() if e.get("event") == "config_error"]
    assert any(where in str(e.get("problem")) for e in logged)
    assert echo_once("127.0.0.1", port) == b"ping\n"
    status = request(superd.state_dir, "status")["status"]
    assert status["reload"]["ok"] is False
    assert [s["id"] for s in status["services"]] == ["echo"]
    first = [e for e in superd.events() if e.get("event") == "listening"
             and e.get("service_id") == "first"]
    assert bool(first) == (breakage is _port_taken)
    for event in first:  # bound during the failed reload: closed again
        assert refused("127.0.0.1", int(event["port"]))
    for name in ("broken", "inc", "first", "taken", "ghost"):
        (conf / name).unlink(missing_ok=True)
    assert reload_and_wait(superd)["ok"] is True
    assert request(superd.state_dir, "status")["status"]["reload"]["ok"] is True
