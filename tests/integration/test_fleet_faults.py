"""
A ban store that misbehaves -- answers garbage, drops the connection in the
middle of a reply, never answers, streams an endless reply, or accepts and
closes at once -- costs superd nothing: every service keeps serving, sensor
bans keep working locally, and superd's memory stays bounded.  And it is
reported: the ``ban_store`` down event, ``superd_ban_store_up`` 0.
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.access.clients import block, daytime_block, fetch, hosts_args

SENSOR = block("daytime", "trap", extra="\tflags = SENSOR\n\tdeny_time = 10\n")

Behaviour = Callable[[socket.socket, threading.Event], None]


def garbage(conn: socket.socket, stop: threading.Event) -> None:
    conn.recv(65536)
    conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n\x00\xff" * 10)


def drop_mid_reply(conn: socket.socket, stop: threading.Event) -> None:
    conn.recv(65536)
    conn.sendall(b"*2\r\n$1\r\n0\r\n*5\r\n$19\r\nsuperd:ban:1")


def stall(conn: socket.socket, stop: threading.Event) -> None:
    conn.settimeout(0.2)
    while not stop.is_set():
        try:
            if not conn.recv(65536):
                return
        except TimeoutError:
            pass


def close_at_once(conn: socket.socket, stop: threading.Event) -> None:
    """Accept, then close without a byte."""


def endless(conn: socket.socket, stop: threading.Event) -> None:
    """A reply that claims to be huge, then bytes until superd hangs up."""
    conn.sendall(b"*3\r\n$9\r\nsubscribe\r\n$1000000000\r\n")
    chunk = b"a" * 65536
    deadline = time.monotonic() + 5
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            conn.sendall(chunk)
    except OSError:
        return  # superd hung up: what we want


class FakeRedis(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.stop = threading.Event()
        self.connections = 0
        server = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                server.connections += 1
                try:
                    server.behaviour(self.request, server.stop)
                except OSError:
                    pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.server_address[1]}/0"


def serving(behaviour: Behaviour) -> Iterator[FakeRedis]:
    server = FakeRedis(behaviour)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.stop.set()
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture(params=[garbage, drop_mid_reply, stall, endless, close_at_once],
                ids=["garbage", "drop", "stall", "endless", "close"])
def fake_redis(request: Any) -> Iterator[FakeRedis]:
    yield from serving(request.param)


@pytest.fixture
def closing_redis() -> Iterator[FakeRedis]:
    yield from serving(close_at_once)


def test_misbehaving_ban_store_costs_nothing(
        fake_redis: FakeRedis, superd_factory: Callable[..., Any],
        conf_dir: Callable[..., Path], tmp_path: Path) -> None:
    """For ~4 s of a bad ban store superd serves every connection, bans a
    sensor hit locally, and grows by less than 20 MiB."""
    conf = conf_dir(trap=SENSOR, daytime=daytime_block("daytime", "\tcps = 0 0\n"))
    superd = superd_factory(conf, *hosts_args(tmp_path), "--ban-store", fake_redis.url)
    superd.allow_errors = True  # the unusable ban store is logged as an error
    before = superd.rss_kib()
    deadline = time.monotonic() + 4
    served = 0
    while time.monotonic() < deadline:
        assert fetch("127.0.0.2", superd.port("daytime"), timeout=2)
        served += 1
        time.sleep(0.02)
    assert not fetch("127.0.0.3", superd.port("trap"))
    assert not fetch("127.0.0.3", superd.port("daytime"))
    assert fake_redis.connections >= 1
    assert served > 50
    assert superd.rss_kib() - before < 20 * 1024
    assert superd.process.poll() is None
    unexpected = [e for e in superd.errors() if e.get("event") != "ban_store"]
    assert unexpected == []


def test_a_store_that_accepts_and_closes_is_reported_down(
        closing_redis: FakeRedis, superd_factory: Callable[..., Any],
        conf_dir: Callable[..., Path], tmp_path: Path) -> None:
    """Connections are accepted and closed at once: one 'down' line saying
    so, superd_ban_store_up 0, and status says down -- however many times
    superd reconnects."""
    from superd.cli.control import request
    from tests.integration.test_metrics import scrape

    conf = conf_dir(trap=SENSOR, daytime=daytime_block("daytime", "\tcps = 0 0\n"))
    superd = superd_factory(conf, *hosts_args(tmp_path), "--ban-store", closing_redis.url,
                            "--metrics", "tcp:0:interface=127.0.0.1")
    superd.allow_errors = True  # the outage is an error line, on purpose
    metrics = int(superd.wait_for_event(lambda e: e.get("event") == "metrics"
                                        and e.get("port"))["port"])
    down = superd.wait_for_event(lambda e: e.get("event") == "ban_store"
                                 and e.get("state") == "down", 10)
    assert down["why"] == "connection closed by the server"
    deadline = time.monotonic() + 10
    while closing_redis.connections < 6 and time.monotonic() < deadline:
        time.sleep(0.1)  # reconnection attempts, with back-off
    assert closing_redis.connections >= 6
    assert scrape(metrics)[("superd_ban_store_up", ())] == 0
    status = request(superd.state_dir, "status")["status"]
    assert status["ban_store"] == {"where": closing_redis.url, "state": "down",
                                   "error": "connection closed by the server"}
    downs = [e for e in superd.events()
             if e.get("event") == "ban_store" and e.get("state") == "down"]
    assert len(downs) == 1
