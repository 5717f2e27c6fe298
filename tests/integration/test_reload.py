"""
SIGHUP on the real daemon: kept services keep serving through reloads,
changes apply to new connections, dropped services stop listening and their
children's process groups are stopped, a changed bind re-binds.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from superd.cli.control import request
from tests.integration.conftest import StartSuperd
from tests.integration.external import (
    pid_alive,
    script,
    service_block,
    wait_until,
)
from tests.integration.harness import Superd, on_free_ports
from tests.integration.reloading import (
    Hammer,
    echo_block,
    echo_once,
    latest_port,
    refused,
    reload_and_wait,
)


def test_twenty_reloads_under_load_refuse_no_connection(
        superd_factory: StartSuperd, conf_dir: Callable[..., Path]) -> None:
    """
    Twenty reloads -- each changing the kept service's limits (a factory
    swap) and adding or dropping another service -- while clients connect
    back to back: every exchange with the kept services succeeds.
    """
    conf = conf_dir(kept=echo_block("kept", extra="per_source = 1000"),
                    steady=echo_block("steady"))
    superd = superd_factory(conf)
    hammers = [Hammer("127.0.0.1", superd.port("kept")),
               Hammer("127.0.0.1", superd.port("steady"))]
    for hammer in hammers:
        hammer.start()
    try:
        for round_ in range(20):
            (conf / "kept").write_text(echo_block("kept", extra=f"per_source = {1001 + round_}"))
            if round_ % 2 == 0:
                (conf / "extra").write_text(echo_block("extra"))
            else:
                (conf / "extra").unlink()
            result = reload_and_wait(superd)
            assert result["ok"], result
            added = round_ % 2 == 0
            assert (result["old"], result["changed"]) == (2, 1)
            assert (result["new"], result["dropped"]) == ((1, 0) if added else (0, 1))
            # Each service must have answered after this reload before the next.
            served = [hammer.ok for hammer in hammers]
            assert wait_until(lambda served=served: all(
                h.ok > n for h, n in zip(hammers, served, strict=True)), timeout=30)
    finally:
        for hammer in hammers:
            hammer.finish()
    for hammer in hammers:
        assert hammer.failures == []
        assert hammer.ok >= 20
    reconfigured = [e for e in superd.events() if e.get("ok") is True]
    assert len(reconfigured) == 20


def test_changed_address_list_applies_and_counters_survive(
        superd_factory: StartSuperd, conf_dir: Callable[..., Path]) -> None:
    """A new only_from applies to the next connection; the accept count carries on."""
    conf = conf_dir(echo=echo_block("echo", extra="only_from = 127.0.0.1"))
    superd = superd_factory(conf)
    port = superd.port("echo")
    assert echo_once("127.0.0.1", port) == b"ping\n"
    assert refused("127.0.0.1", port, source="127.0.0.2")
    (conf / "echo").write_text(echo_block("echo", extra="only_from = 127.0.0.2"))
    assert reload_and_wait(superd)["ok"]
    assert echo_once("127.0.0.1", port, source="127.0.0.2") == b"ping\n"
    assert refused("127.0.0.1", port, source="127.0.0.1")
    (entry,) = request(superd.state_dir, "status")["status"]["services"]
    assert entry["accepted"] == 2
    assert entry["refused"] == {"address": 2}
    assert latest_port(superd, "echo") == port  # never re-bound


def test_bind_change_rebinds(superd_factory: StartSuperd,
                             conf_dir: Callable[..., Path]) -> None:
    """A new bind address listens; the old address stops."""
    conf = conf_dir(echo=echo_block("echo", bind="127.0.0.1"))
    superd = superd_factory(conf)
    old = superd.port("echo")
    (conf / "echo").write_text(echo_block("echo", bind="127.0.0.3"))
    result = reload_and_wait(superd)
    assert (result["ok"], result["new"], result["dropped"]) == (True, 1, 1)
    assert echo_once("127.0.0.3", latest_port(superd, "echo", host="127.0.0.3")) == b"ping\n"
    assert wait_until(lambda: refused("127.0.0.1", old), timeout=5)


def test_fixed_port_moves_between_addresses(superd_factory: StartSuperd,
                                            conf_dir: Callable[..., Path]) -> None:
    """A bind change on a fixed port closes the old socket first, then binds."""
    confs: list[Path] = []

    def start(ports: list[int]) -> Superd:
        confs.append(conf_dir(echo=echo_block("echo", bind="127.0.0.1", port=ports[0])))
        return superd_factory(confs[-1])

    superd = on_free_ports(start)
    port = superd.port("echo")
    (confs[-1] / "echo").write_text(echo_block("echo", bind="0.0.0.0", port=port))
    assert reload_and_wait(superd)["ok"]
    assert echo_once("127.0.0.2", port) == b"ping\n"


def test_dropped_service_stops_children_kept_service_keeps_them(
        superd_factory: StartSuperd, conf_dir: Callable[..., Path], world_dir: Path) -> None:
    """
    Dropping an external service stops listening and SIGTERMs its child's
    whole process group (a grandchild too); the running child of a kept
    service is not disturbed.
    """
    server = script(world_dir, "sleeper", "sleep 60 &\necho $! > \"$1\"\nwait\n")
    marks = {name: world_dir / f"{name}.pid" for name in ("gone", "kept")}
    for path in marks.values():
        path.touch()
        path.chmod(0o666)
    conf = conf_dir(**{name: service_block(name, server, str(marks[name]))
                       for name in marks})
    superd = superd_factory(conf, "--grace", "2")
    conns = [socket.create_connection(("127.0.0.1", superd.port(name)), timeout=5)
             for name in marks]
    assert wait_until(lambda: all(p.read_text().strip() for p in marks.values()))
    grandchild = {name: int(path.read_text()) for name, path in marks.items()}
    (conf / "gone").unlink()
    result = reload_and_wait(superd)
    assert (result["ok"], result["dropped"]) == (True, 1)
    assert wait_until(lambda: not pid_alive(grandchild["gone"]), timeout=5)
    assert refused("127.0.0.1", superd.port("gone"))
    assert pid_alive(grandchild["kept"])
    for conn in conns:
        conn.close()
    os.kill(grandchild["kept"], signal.SIGTERM)


def superd_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "import sys; from superd.cli.main import main; sys.exit(main())",
         *args], capture_output=True, text=True, timeout=60, check=False)


def test_superd_reload_command_waits_and_reports(superd_factory: StartSuperd,
                                                 conf_dir: Callable[..., Path]) -> None:
    """``superd reload`` returns when the reload is done: 0 and the counts, or
    78 and errors (a broken block: the rest applied, its service kept)."""
    conf = conf_dir(echo=echo_block("echo"))
    superd = superd_factory(conf)
    superd.allow_errors = True
    (conf / "two").write_text(echo_block("two"))
    done = superd_cli("reload", "--state-dir", superd.state_dir)
    assert (done.returncode, done.stdout.split(" (")[0]) == \
        (0, "Reconfigured: new=1 old=1 dropped=0")
    (conf / "two").write_text(echo_block("two").replace("= 0", "= x"))
    failed = superd_cli("reload", "--state-dir", superd.state_dir)
    assert failed.returncode == 78
    assert failed.stderr.startswith("superd reload: partially applied: 1 service failed;")
    assert f"{conf / 'two'}:7: service echo: port:" in failed.stderr
    assert f"kept: service two ({conf / 'two'}:1) runs its previous definition" \
        in failed.stderr
    assert echo_once("127.0.0.1", latest_port(superd, "two")) == b"ping\n"
