"""
SENSOR bans and the hosts.deny workflow on the real daemon: a sensor hit
bans the source from every service, TCP and UDP, and across a restart;
appending to hosts.deny refuses a host on its next connection, no signal.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from superd.cli import bans as banscli
from tests.access.clients import (
    block,
    daytime_block,
    fetch,
    hosts_args,
    udp_ask,
)

SENSOR = block("daytime", "trap", extra="\tflags          = SENSOR\n"
                                         "\tdeny_time      = 10\n")


def config(conf_dir: Callable[..., Path]) -> Path:
    return conf_dir(trap=SENSOR, daytime=daytime_block("daytime"),
                    echo=block("echo", "echo-udp", kind="dgram"))


def test_sensor_bans_everywhere_and_survives_restart(
        superd_factory: Callable[..., Any], conf_dir: Callable[..., Path],
        tmp_path: Path) -> None:
    """A hit on the sensor from 127.0.0.3 bans it on TCP and UDP services,
    leaves 127.0.0.2 alone, and still holds after superd restarts."""
    conf = config(conf_dir)
    state = str(tmp_path / "state")
    superd = superd_factory(conf, *hosts_args(tmp_path), state_dir=state)
    assert not fetch("127.0.0.3", superd.port("trap"))
    superd.wait_for_event(lambda e: e.get("event") == "ban")
    assert not fetch("127.0.0.3", superd.port("daytime"))
    assert fetch("127.0.0.2", superd.port("daytime"))
    udp = superd.port("echo-udp", "udp")
    assert udp_ask("127.0.0.2", udp) == b"ping"
    assert udp_ask("127.0.0.3", udp) is None
    # The latest line first: the output is read on another thread, in order.
    superd.wait_for_event(lambda e: e.get("xinetd_line") ==
                          "FAIL: echo-udp address from=127.0.0.3")
    lines = superd.xinetd_lines()
    assert "FAIL: trap address from=127.0.0.3" in lines
    assert "FAIL: daytime address from=127.0.0.3" in lines
    assert superd.stop() == 0
    again = superd_factory(conf, *hosts_args(tmp_path), state_dir=state)
    assert not fetch("127.0.0.3", again.port("daytime"))
    assert fetch("127.0.0.2", again.port("daytime"))


def test_bans_cli_while_running(superd_factory: Callable[..., Any],
                                conf_dir: Callable[..., Path],
                                tmp_path: Path) -> None:
    """``superd bans add/remove`` go through the running daemon: each takes
    effect before the command returns."""
    conf = config(conf_dir)
    state = str(tmp_path / "state")
    superd = superd_factory(conf, *hosts_args(tmp_path), state_dir=state)
    port = superd.port("daytime")
    assert banscli.main(["--state-dir", state, "add", "127.0.0.5"]) == 0
    assert not fetch("127.0.0.5", port)
    assert banscli.main(["--state-dir", state, "remove", "127.0.0.5"]) == 0
    assert fetch("127.0.0.5", port)


def test_offline_edits_reach_a_running_daemon(superd_factory: Callable[..., Any],
                                              conf_dir: Callable[..., Path],
                                              tmp_path: Path) -> None:
    """``superd bans --offline`` edits the database; a daemon running on it
    picks the ban up by itself (within about a second)."""
    state = str(tmp_path / "state")
    superd = superd_factory(config(conf_dir), *hosts_args(tmp_path), state_dir=state)
    port = superd.port("daytime")
    assert banscli.main(["--state-dir", state, "--offline", "add", "127.0.0.5"]) == 0
    deadline = time.monotonic() + 10
    while fetch("127.0.0.5", port) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not fetch("127.0.0.5", port)


def test_appending_to_hosts_deny(superd_factory: Callable[..., Any],
                                 conf_dir: Callable[..., Path],
                                 tmp_path: Path) -> None:
    """Appending ``ALL: 127.0.0.4`` to hosts.deny refuses that host on its
    very next connection, with no signal; FAIL says ``libwrap``."""
    deny = tmp_path / "hosts.deny"
    deny.write_text("# SeeYouLater appends here\n")
    conf = conf_dir(daytime=daytime_block("daytime"))
    superd = superd_factory(conf, *hosts_args(tmp_path))
    port = superd.port("daytime")
    assert fetch("127.0.0.4", port)
    with open(deny, "a") as f:
        f.write("ALL: 127.0.0.4\n")
    assert not fetch("127.0.0.4", port)
    assert fetch("127.0.0.2", port)
    superd.wait_for_event(lambda e: e.get("xinetd_line") ==
                          "FAIL: daytime libwrap from=127.0.0.4")


def test_hosts_allow_change_applies_to_the_next_daytime_connection(
        superd_factory: Callable[..., Any], conf_dir: Callable[..., Path],
        tmp_path: Path) -> None:
    """daytime with both hosts files empty (decided once per accept batch):
    a DENY rule written to hosts.allow refuses the host's next connection,
    which gets nothing; emptying the file serves it again; the service log
    has xinetd's START and FAIL lines for each."""
    allow = tmp_path / "hosts.allow"
    allow.write_text("# empty\n")
    log = tmp_path / "daytime.log"
    conf = conf_dir(daytime=daytime_block("daytime", extra=f"\tlog_type       = FILE {log}\n"))
    superd = superd_factory(conf, *hosts_args(tmp_path))
    port = superd.port("daytime")
    assert fetch("127.0.0.2", port)
    with open(allow, "a") as f:
        f.write("daytime: 127.0.0.2 : DENY\n")
    assert fetch("127.0.0.2", port) == b""
    assert fetch("127.0.0.5", port)
    allow.write_text("# empty again\n")
    assert fetch("127.0.0.2", port)
    expected = ["START: daytime from=127.0.0.2", "FAIL: daytime libwrap from=127.0.0.2",
                "START: daytime from=127.0.0.5", "START: daytime from=127.0.0.2"]
    stamp = r"\d{2}/\d{1,2}/\d{1,2}@\d{2}:\d{2}:\d{2}: "

    def logged() -> list[str]:
        text = log.read_text() if log.exists() else ""
        return [re.sub("^" + stamp, "", line) for line in text.splitlines()]

    deadline = time.monotonic() + 10
    while logged() != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    assert logged() == expected


def test_hammering_banned_source_is_dropped_in_the_kernel(
        superd_factory: Callable[..., Any], conf_dir: Callable[..., Path],
        tmp_path: Path) -> None:
    """A banned source that keeps connecting stops reaching superd at all
    (its SYNs are dropped), others are served, and lifting the ban lets it
    back in within the maintenance interval."""
    state = str(tmp_path / "state")
    superd = superd_factory(config(conf_dir), *hosts_args(tmp_path), state_dir=state)
    port = superd.port("daytime")
    assert not fetch("127.0.0.3", superd.port("trap"))
    for _ in range(25):
        try:
            fetch("127.0.0.3", port, timeout=1)
        except OSError:
            break
    superd.wait_for_event(lambda e: e.get("action") == "kernel_drop")
    with pytest.raises(TimeoutError):
        fetch("127.0.0.3", port, timeout=1)
    assert fetch("127.0.0.2", port)
    assert banscli.main(["--state-dir", state, "remove", "127.0.0.3"]) == 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if fetch("127.0.0.3", port, timeout=1):
                break
        except TimeoutError:
            pass
    else:
        raise AssertionError("127.0.0.3 still dropped 10 s after its ban was lifted")


def test_datagram_to_a_udp_sensor_bans_tcp_too(superd_factory: Callable[..., Any],
                                               conf_dir: Callable[..., Path],
                                               tmp_path: Path) -> None:
    """One datagram to a UDP sensor bans its source from TCP services."""
    conf = conf_dir(
        trap=block("daytime", "udptrap", kind="dgram",
                   extra="\tflags          = SENSOR\n\tdeny_time      = 5\n"),
        daytime=daytime_block("daytime"))
    superd = superd_factory(conf, *hosts_args(tmp_path))
    assert udp_ask("127.0.0.6", superd.port("udptrap", "udp"), timeout=0.3) is None
    superd.wait_for_event(lambda e: e.get("event") == "ban"
                          and e.get("peer_host") == "127.0.0.6")
    assert not fetch("127.0.0.6", superd.port("daytime"))
    assert fetch("127.0.0.2", superd.port("daytime"))
