"""
``superd status`` and SIGUSR1 against the real daemon: services, counters,
running children, bans, the last reload; the control socket is private and
survives junk.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import superd as superd_module
from superd.core.paths import control_path
from superd.core.timestamps import parse_rfc3339
from tests import logschema
from tests.integration.conftest import StartSuperd
from tests.integration.external import script, service_block, wait_until
from tests.integration.harness import Superd, seconds_of
from tests.integration.reloading import echo_block, echo_once, refused, reload_and_wait

SENSOR = """service trap
{
\tid          = trap
\ttype        = INTERNAL UNLISTED
\tsocket_type = stream
\twait        = no
\tport        = 0
\tbind        = 127.0.0.1
\tflags       = SENSOR
\tdeny_time   = 10
}
"""


def superd_status(superd: Superd, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "import sys; from superd.cli.main import main; sys.exit(main())",
         "status", "--state-dir", superd.state_dir, *args],
        capture_output=True, text=True, timeout=30, check=False)


def test_status_shows_services_counters_children_bans_and_reload(
        superd_factory: StartSuperd, conf_dir: Callable[..., Path], world_dir: Path) -> None:
    """One look shows what the daemon is doing, as text and as JSON."""
    sleeper = script(world_dir, "sleeper", "exec sleep 30\n")
    conf = conf_dir(echo=echo_block("echo", extra="only_from = 127.0.0.1"), trap=SENSOR,
                    slow=service_block("slow", sleeper))
    superd = superd_factory(conf)
    echo = superd.port("echo")
    assert echo_once("127.0.0.1", echo) == b"ping\n"
    assert refused("127.0.0.1", echo, source="127.0.0.2")
    assert refused("127.0.0.1", superd.port("trap"), source="127.0.0.3")
    held = socket.create_connection(("127.0.0.1", superd.port("slow")), timeout=5)
    assert wait_until(lambda: bool(superd.children()))
    assert reload_and_wait(superd)["ok"]

    shown = json.loads(superd_status(superd, "--json").stdout)
    services = {s["id"]: s for s in shown["services"]}
    assert (services["echo"]["accepted"], services["echo"]["refused"]) == (1, {"address": 1})
    assert services["echo"]["listen"] == [f"tcp 127.0.0.1:{echo}"]
    assert services["echo"]["state"] == "listening"
    (child,) = shown["children"]
    assert (child["service_id"], child["pid"]) == ("slow", superd.children()[0])
    assert [b["host"] for b in shown["bans"]] == ["127.0.0.3"]
    assert shown["reload"]["ok"] is True and shown["pid"] == superd.pid
    assert (child["peer_host"], services["echo"]["location"]) == (
        "127.0.0.1", f"{conf / 'echo'}:1")
    # Which daemon, since when: every time RFC 3339 in UTC, as in the log.
    ready = superd.wait_for_event(lambda e: e.get("event") == "ready")
    assert (shown["version"], shown["config"]) == (superd_module.__version__, str(conf))
    started = parse_rfc3339(shown["started"])
    assert abs(started - seconds_of(ready)) < 5 and shown["uptime"] >= 0
    for when in (shown["started"], shown["time"], child["started"], shown["reload"]["time"],
                 shown["bans"][0]["until"], shown["bans"][0]["added"]):
        assert logschema.TIME.match(when), when

    text = superd_status(superd)
    assert text.returncode == 0, text.stderr
    assert "last reload:" in text.stdout and " ok (new=0 old=3 dropped=0)" in text.stdout
    assert "address=1" in text.stdout and "127.0.0.3" in text.stdout
    first, second = text.stdout.splitlines()[:2]
    assert first == (f"superd {superd_module.__version__}, pid {superd.pid},"
                     f" configuration {conf}")
    assert second.startswith(f"started {shown['started'][:19]}Z (up ")
    held.close()


def test_control_socket_is_private_and_survives_junk(superd_factory: StartSuperd,
                                                      conf_dir: Callable[..., Path]) -> None:
    """Mode 0600; junk and oversized requests get an error; status still works."""
    superd = superd_factory(conf_dir(echo=echo_block("echo")))
    path = control_path(superd.state_dir)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    for junk in (b"\x00\xff{{{\n", b"x" * 100_000):
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(path)
            try:
                sock.sendall(junk)
            except BrokenPipeError:
                pass  # the daemon answered and closed before reading it all
            answer = json.loads(sock.makefile("rb").readline())
        assert answer["ok"] is False
    assert superd_status(superd).returncode == 0


def test_sigusr1_logs_status(superd_factory: StartSuperd,
                             conf_dir: Callable[..., Path]) -> None:
    """SIGUSR1 writes the status to the main log."""
    superd = superd_factory(conf_dir(echo=echo_block("echo")))
    os.kill(superd.pid, signal.SIGUSR1)
    event = superd.wait_for_event(lambda e: e.get("event") == "status")
    assert [s["id"] for s in event["status"]["services"]] == ["echo"]


def test_status_without_daemon_fails_clearly(tmp_path: Path) -> None:
    """No daemon on that state directory: exit 69 and a hint."""
    result = subprocess.run(
        [sys.executable, "-c", "import sys; from superd.cli.main import main; sys.exit(main())",
         "status", "--state-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 69 and "is superd running" in result.stderr
