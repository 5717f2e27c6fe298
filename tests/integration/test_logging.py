"""
The main log of the real daemon: every line of ``--json-log`` read back with
a plain JSON parser has the documented schema; Twisted's lines about ports
and factories are gone, and superd says which address it stops listening
on; an EXIT names only the status or the signal that applies; ``superd
run`` writes readable lines with the same RFC 3339 times.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests import logschema
from tests.integration.conftest import StartSuperd
from tests.integration.external import script, service_block, wait_until
from tests.integration.harness import Superd, on_free_ports
from tests.integration.reloading import echo_block, echo_once, refused, reload_and_wait

#: What Twisted itself would log about ports and factories.
CHATTER = re.compile(r" starting on |Port .* Closed\)|(Starting|Stopping) (factory|protocol)")

DAYTIME_UDP = """service daytime
{
\ttype        = INTERNAL UNLISTED
\tsocket_type = dgram
\tprotocol    = udp
\twait        = yes
\tport        = 0
\tbind        = 127.0.0.1
}
"""


def lines_of(superd: Superd) -> list[dict[str, object]]:
    """Every line of standard output, each read by a strict JSON parser."""
    return [logschema.parse_line(line) for line in superd.stdout_lines]


def test_every_line_has_the_schema_and_no_port_chatter(
        superd_factory: StartSuperd, conf_dir: Callable[..., Path]) -> None:
    """Start, serve, refuse, reload, stop: each line is
    one JSON object starting with time, level, logger, event and message,
    with no twisted.logger internals; no line is Twisted's port chatter;
    each socket closed is logged with its address, once."""
    def start(ports: list[int]) -> Superd:
        conf = conf_dir(echo=echo_block("echo", bind="127.0.0.1 ::1", port=ports[0],
                                        extra="only_from = 127.0.0.1 ::1\n"
                                              "log_on_success = HOST PID EXIT DURATION"),
                        daytime=DAYTIME_UDP)
        return superd_factory(conf)

    superd = on_free_ports(start)
    port = superd.port("echo")
    assert echo_once("127.0.0.1", port) == b"ping\n"
    superd.wait_for_event(lambda e: e.get("event") == "exit")
    assert refused("127.0.0.1", port, source="127.0.0.2")
    superd.wait_for_event(lambda e: e.get("event") == "refuse")
    assert reload_and_wait(superd)["ok"]
    assert superd.stop() == 0

    records = lines_of(superd)
    assert superd.schema_problems == []
    assert [problem for line in superd.stdout_lines for problem in logschema.problems(line)] \
        == []
    assert [r["message"] for r in records if CHATTER.search(str(r["message"]))] == []
    # Both sockets of the one port are named when they close, each once.
    closed = sorted(str(r["where"]) for r in records if r["event"] == "not_listening")
    opened = sorted(str(r["where"]) for r in records if r["event"] == "listening")
    assert closed == opened and len(set(closed)) == 3
    assert f"tcp 127.0.0.1:{port}" in closed and f"tcp [::1]:{port}" in closed
    # Twisted's own lines are kept, named "twisted", with their logger.
    shut = [r for r in records if r["message"] == "Server Shut Down."]
    assert [(r["event"], r["level"]) for r in shut] == [("twisted", "info")]
    assert str(shut[0]["logger"]).startswith("twisted.")
    # What this run did, each as its event.
    assert {r["event"] for r in records} >= {"listening", "ready", "start", "exit", "refuse",
                                             "stopping", "not_listening", "control_listening"}


def test_a_dropped_service_is_logged_closing_on_reload(
        superd_factory: StartSuperd, conf_dir: Callable[..., Path]) -> None:
    """A reload that drops a service logs not_listening with its address."""
    conf = conf_dir(echo=echo_block("echo"), daytime=DAYTIME_UDP)
    superd = superd_factory(conf)
    where = f"udp 127.0.0.1:{superd.port('daytime', 'udp')}"
    (conf / "daytime").unlink()
    assert reload_and_wait(superd)["ok"]
    closed = superd.wait_for_event(lambda e: e.get("event") == "not_listening")
    assert (closed["service_id"], closed["where"], closed["message"]) == (
        "daytime", where, f"service daytime no longer listening on {where}")


def test_exit_of_a_killed_server_names_only_the_signal(
        superd_factory: StartSuperd, conf_dir: Callable[..., Path], world_dir: Path) -> None:
    """A server killed by SIGTERM: its EXIT says signal=15, not status=None;
    one that exits says status=N, not signal=None."""
    sleeper = script(world_dir, "sleeper", "exec sleep 30\n")
    quitter = script(world_dir, "quitter", "exit 3\n")
    superd = superd_factory(conf_dir(slow=service_block("slow", sleeper),
                                     quick=service_block("quick", quitter)),
                            "--log-connections")
    with socket.create_connection(("127.0.0.1", superd.port("slow")), timeout=5):
        assert wait_until(lambda: bool(superd.children()))
        (child,) = superd.children()
        os.kill(child, signal.SIGTERM)
        killed = superd.wait_for_event(lambda e: e.get("event") == "exit"
                                       and e.get("service_id") == "slow")
    with socket.create_connection(("127.0.0.1", superd.port("quick")), timeout=5):
        ended = superd.wait_for_event(lambda e: e.get("event") == "exit"
                                      and e.get("service_id") == "quick")
    assert (killed["signal"], killed["status"]) == (15, None)
    assert f"pid={child} signal=15 duration=" in str(killed["message"])
    assert (ended["status"], ended["signal"]) == (3, None)
    assert " status=3 duration=" in str(ended["message"])
    assert "None" not in str(killed["message"]) + str(ended["message"])


def test_superd_run_writes_readable_lines_with_rfc3339_times(
        conf_dir: Callable[..., Path], tmp_path: Path) -> None:
    """``superd run`` without --json-log: one readable line per event,
    each starting with an RFC 3339 UTC time, the level, the logger and the
    event's name; no port chatter."""
    conf = conf_dir(echo=echo_block("echo"))
    log = tmp_path / "superd.log"
    script_path = os.path.join(os.path.dirname(sys.executable), "superd")
    with open(log, "w") as out:
        process = subprocess.Popen(
            [script_path, "run", "-c", str(conf), "--state-dir", str(tmp_path / "state")],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        assert wait_until(lambda: " ready: superd ready" in log.read_text(), timeout=30), \
            log.read_text()
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
    lines = log.read_text().splitlines()
    line = re.compile(r"\A(\S+) (debug|info|warn|error|critical) \[[\w.]+\] ")
    for text in lines:
        found = line.match(text)
        assert found and logschema.TIME.match(found[1]), text
        assert not CHATTER.search(text), text
    assert any(" info [superd.listen] listening: service echo listening on tcp 127.0.0.1:"
               in text for text in lines)
    assert any(" not_listening: service echo no longer listening on " in text for text in lines)
