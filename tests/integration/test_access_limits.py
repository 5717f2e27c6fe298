"""
per_source and cps on the real daemon: exact counts of real connections from
127.0.0.x sources, and one cps test that takes real seconds.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from superd.cli.control import request
from tests.access.clients import (
    block,
    daytime_block,
    fetch,
    hosts_args,
    open_from,
)
from tests.integration.harness import Superd, require_program


def echoes(conn: socket.socket) -> bool:
    """True if the connection echoes; False if it was closed or reset."""
    try:
        conn.sendall(b"ping\n")
        return conn.recv(16) == b"ping\n"
    except OSError:
        return False


def lines_until(superd: Superd, line: str) -> list[str]:
    """The service log lines once ``line`` is among them: the daemon logs
    before it closes a refused connection, but the test reads its output
    on another thread, which may not have got there yet."""
    superd.wait_for_event(lambda e: e.get("xinetd_line") == line)
    return superd.xinetd_lines()


def test_per_source_five(superd_factory: Callable[..., Any],
                         conf_dir: Callable[..., Path], tmp_path: Path) -> None:
    """per_source = 5 admits exactly five concurrent connections from one
    source, still serves another source, and frees a slot when one ends."""
    conf = conf_dir(echo=block("echo", "echo", extra="\tper_source     = 5\n"
                                                      "\tcps            = 0 0\n"))
    superd = superd_factory(conf, *hosts_args(tmp_path))
    port = superd.port("echo")
    held = [open_from("127.0.0.2", port) for _ in range(5)]
    try:
        assert all(echoes(c) for c in held)
        with open_from("127.0.0.2", port) as sixth:
            assert not echoes(sixth)
        with open_from("127.0.0.3", port) as other:
            assert echoes(other)
        last = held.pop()
        last.shutdown(socket.SHUT_WR)
        # echo closes on the half-close, ending the session (and its slot)
        # before its socket's FIN reaches us: no sleep to guess how long.
        assert last.recv(16) == b""
        last.close()
        with open_from("127.0.0.2", port) as again:
            assert echoes(again)
    finally:
        for c in held:
            c.close()
    fails = [line for line in lines_until(superd, "FAIL: echo per_source_limit from=127.0.0.2")
             if line.startswith("FAIL")]
    assert fails == ["FAIL: echo per_source_limit from=127.0.0.2"]


def test_cps_30_10(superd_factory: Callable[..., Any],
                   conf_dir: Callable[..., Path], tmp_path: Path) -> None:
    """cps = 30 10: the 31st connection in a second is refused, the service
    refuses everything (still listening) for 10 s, then serves again; the
    log has xinetd's lines."""
    conf = conf_dir(daytime=daytime_block("daytime", "\tcps            = 30 10\n"))
    superd = superd_factory(conf, *hosts_args(tmp_path))
    port = superd.port("daytime")
    results = [bool(fetch("127.0.0.2", port)) for _ in range(31)]
    assert results == [True] * 30 + [False]
    assert not fetch("127.0.0.3", port)  # refused, not ECONNREFUSED
    superd.wait_for_event(lambda e: e.get("event") == "limit"
                          and str(e.get("message")).startswith("Activating"), timeout=20)
    assert fetch("127.0.0.3", port)
    texts = [e["message"] for e in superd.events() if e.get("event") == "limit"]
    assert texts == [
        "Deactivating service daytime due to excessive incoming connections."
        "  Restarting in 10 seconds.",
        "Activating service daytime",
    ]
    fails = [line for line in superd.xinetd_lines() if line.startswith("FAIL")]
    assert fails == ["FAIL: daytime connections per second from=127.0.0.2",
                     "FAIL: daytime connections per second from=127.0.0.3"]


def test_access_times_and_global_limit(superd_factory: Callable[..., Any],
                                       conf_dir: Callable[..., Path],
                                       tmp_path: Path) -> None:
    """Outside access_times a peer gets FAIL ``time``; with ``--limit 1`` a
    second spawned server is refused with FAIL ``process_limit``."""
    now = time.localtime()
    start = (now.tm_hour * 60 + now.tm_min + 5) % 1440
    window = f"{start // 60:02d}:{start % 60:02d}-{start // 60:02d}:{start % 60:02d}"
    cat = require_program("cat")
    conf = conf_dir(
        daytime=daytime_block("daytime", f"\taccess_times   = {window}\n"),
        catsrv=("service catsrv\n{\n\ttype = UNLISTED\n\tsocket_type = stream\n"
                "\twait = no\n\tport = 0\n\tbind = 127.0.0.1\n\tuser = root\n"
                f"\tserver = {cat}\n\tlog_on_failure = HOST\n}}\n"))
    superd = superd_factory(conf, *hosts_args(tmp_path), "--limit", "1")
    assert not fetch("127.0.0.2", superd.port("daytime"))
    with open_from("127.0.0.2", superd.port("catsrv")) as first:
        assert echoes(first)
        with open_from("127.0.0.3", superd.port("catsrv")) as second:
            assert not echoes(second)
    lines_until(superd, "FAIL: daytime time from=127.0.0.2")
    lines_until(superd, "FAIL: catsrv process_limit from=127.0.0.3")


def test_blocks_sharing_an_id_have_their_own_limits(
        superd_factory: Callable[..., Any], conf_dir: Callable[..., Path],
        tmp_path: Path) -> None:
    """Two blocks with one id on two binds (the seed's two ``service ssh``)
    count instances and per_source each on its own, as xinetd's entries do:
    a full block refuses its next client, the other block still serves, and
    ``superd status`` shows each block's own sessions and counts."""
    limits = "\tinstances      = 1\n\tper_source     = 1\n\tcps            = 0 0\n"
    first = block("echo", "shared", extra=limits)
    second = first.replace("bind           = 127.0.0.1", "bind           = 127.0.0.2")
    superd = superd_factory(conf_dir(echo=first + "\n" + second), *hosts_args(tmp_path))
    port_one = superd.port("shared", host="127.0.0.1")
    port_two = superd.port("shared", host="127.0.0.2")
    with open_from("127.0.0.5", port_one) as held:
        assert echoes(held)
        with open_from("127.0.0.6", port_one) as over:
            assert not echoes(over)  # block one is full
        with socket.create_connection(("127.0.0.2", port_two), 5,
                                      source_address=("127.0.0.5", 0)) as other:
            assert echoes(other)  # same source, same id, the other block
            services = request(superd.state_dir, "status")["status"]["services"]
            seen = {tuple(s["listen"]): (s["sessions"], s["accepted"], s["refused"])
                    for s in services}
    assert seen == {
        (f"tcp 127.0.0.1:{port_one}",): (1, 1, {"service_limit": 1}),
        (f"tcp 127.0.0.2:{port_two}",): (1, 1, {}),
    }
