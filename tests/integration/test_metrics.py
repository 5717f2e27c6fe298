"""
--metrics on the real daemon: /metrics scraped over HTTP and parsed with
prometheus_client's parser matches the connections the test made; junk and
stalled metrics clients do not disturb the services or later scrapes.
"""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.access.clients import block, fetch, hosts_args
from tests.integration.external import service_block
from tests.integration.harness import require_program

ECHO = block("echo", "echo", extra="\tonly_from = 127.0.0.1 127.0.0.2\n\tcps = 0 0\n")


def start(superd_factory: Callable[..., Any], conf_dir: Callable[..., Path],
          tmp_path: Path) -> tuple[Any, int]:
    superd = superd_factory(conf_dir(echo=ECHO), *hosts_args(tmp_path),
                            "--metrics", "tcp:0:interface=127.0.0.1")
    event = superd.wait_for_event(lambda e: e.get("event") == "metrics" and e.get("port"))
    return superd, int(event["port"])


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        assert reply.status == 200
        text = reply.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def echo(source: str, port: int) -> bytes | None:
    with socket.create_connection(("127.0.0.1", port), 5, source_address=(source, 0)) as s:
        s.sendall(b"hi")
        s.shutdown(socket.SHUT_WR)
        try:
            return s.recv(100)
        except ConnectionResetError:
            return None


def test_scrape_counts_the_connections_made(superd_factory: Callable[..., Any],
                                            conf_dir: Callable[..., Path],
                                            tmp_path: Path) -> None:
    """7 admitted and 3 refused (only_from) connections appear as such."""
    superd, metrics_port = start(superd_factory, conf_dir, tmp_path)
    port = superd.port("echo")
    for i in range(7):
        assert echo(f"127.0.0.{1 + i % 2}", port) == b"hi"
    for _ in range(3):
        assert not fetch("127.0.0.3", port)
    superd.wait_for_event(lambda e: e.get("xinetd_line") == "FAIL: echo address from=127.0.0.3")
    samples = scrape(metrics_port)
    assert samples[("superd_connections_accepted_total", (("service", "echo"),))] == 7
    assert samples[("superd_connections_refused_total",
                    (("reason", "address"), ("service", "echo")))] == 3
    assert samples[("superd_bans_active", ())] == 0


def test_junk_and_stalled_clients_do_not_matter(superd_factory: Callable[..., Any],
                                                conf_dir: Callable[..., Path],
                                                tmp_path: Path) -> None:
    """Binary junk, a huge header and a request never finished: echo still
    answers and a proper scrape still works while the stalled client hangs on."""
    superd, metrics_port = start(superd_factory, conf_dir, tmp_path)
    port = superd.port("echo")
    stalled = socket.create_connection(("127.0.0.1", metrics_port), 5)
    stalled.sendall(b"GET /metr")
    with socket.create_connection(("127.0.0.1", metrics_port), 5) as junk:
        junk.sendall(bytes(range(256)) * 64)
    with socket.create_connection(("127.0.0.1", metrics_port), 5) as huge:
        try:
            huge.sendall(b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 1_000_000)
        except OSError:
            pass  # closed by the server mid-send: what we want
    try:
        assert echo("127.0.0.1", port) == b"hi"
        assert scrape(metrics_port)[("superd_connections_accepted_total",
                                     (("service", "echo"),))] == 1
    finally:
        stalled.close()


def test_children_and_spawn_latency_of_an_external_server(
        superd_factory: Callable[..., Any], conf_dir: Callable[..., Path],
        tmp_path: Path) -> None:
    """Two open connections to a cat service: two children running and two
    spawns observed; after they close, none running."""
    cat = require_program("cat")
    conf = conf_dir(cat=service_block("cat", cat, extra="cps = 0 0"))
    superd = superd_factory(conf, *hosts_args(tmp_path),
                            "--metrics", "tcp:0:interface=127.0.0.1")
    metrics_port = int(superd.wait_for_event(
        lambda e: e.get("event") == "metrics" and e.get("port"))["port"])
    clients = [socket.create_connection(("127.0.0.1", superd.port("cat")), 5) for _ in range(2)]
    try:
        for client in clients:
            client.sendall(b"x")
            assert client.recv(1) == b"x"
        samples = scrape(metrics_port)
        assert samples[("superd_children_running", (("service", "cat"),))] == 2
        assert samples[("superd_spawn_seconds_count", (("service", "cat"),))] == 2
        assert samples[("superd_spawn_seconds_bucket", (("le", "+Inf"), ("service", "cat")))] == 2
    finally:
        for client in clients:
            client.close()
    superd.wait_for_event(
        lambda e: sum(x.get("event") == "exit" for x in superd.events()) == 2, 10)
    assert ("superd_children_running", (("service", "cat"),)) not in scrape(metrics_port)


def test_reloads_are_counted_by_result(superd_factory: Callable[..., Any],
                                       conf_dir: Callable[..., Path],
                                       tmp_path: Path) -> None:
    """A good reload counts as ok; one with a broken file as partial (the
    rest applied), or as failed under all_or_nothing = yes (nothing changed)."""
    conf = conf_dir(echo=ECHO)
    superd = superd_factory(conf, *hosts_args(tmp_path),
                            "--metrics", "tcp:0:interface=127.0.0.1")
    metrics_port = int(superd.wait_for_event(
        lambda e: e.get("event") == "metrics" and e.get("port"))["port"])
    superd.reload()
    superd.wait_for_event(lambda e: e.get("event") == "reload" and e.get("phase") == "done")
    (conf / "broken").write_text("service broken\n{\n\tnonsense\n}\n")
    superd.allow_errors = True  # the failed reload logs its errors
    superd.reload()
    superd.wait_for_event(lambda e: e.get("event") == "reload" and e.get("partial") is True)
    (conf / "strict").write_text("defaults\n{\n\tall_or_nothing = yes\n}\n")
    superd.reload()
    superd.wait_for_event(lambda e: e.get("event") == "reload" and e.get("ok") is False
                          and e.get("partial") is False)
    samples = scrape(metrics_port)
    assert samples[("superd_reloads_total", (("result", "ok"),))] == 1
    assert samples[("superd_reloads_total", (("result", "partial"),))] == 1
    assert samples[("superd_reloads_total", (("result", "failed"),))] == 1
