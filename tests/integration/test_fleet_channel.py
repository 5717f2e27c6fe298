"""
The shared ban channel against a real redis-server: whoever can publish on
it cannot switch this host's sensors off, and it can be protected.

* 150,000 valid ban messages published at once are held to the budget
  (the rest dropped, reported once), and a sensor hit still bans;
* a list filled to its cap with fleet bans still takes a sensor's ban;
* ``rediss://`` verifies the server's certificate (a wrong CA is an outage,
  reported with the TLS reason), and an ACL user authenticates as itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from superd.access.bans import MAX_BANS
from superd.fleet.budget import BURST, RATE, REPORT_INTERVAL
from tests.access.clients import fetch
from tests.certs import make_pki
from tests.integration.harness import require_program, seconds_of
from tests.integration.redisserver import RedisServer, encode_commands, redis_server, started
from tests.integration.test_fleet import fleet, remote_ban, subscribed
from tests.integration.test_metrics import scrape

__all__ = ["redis_server"]  # a fixture

FLOOD = 150_000
CHANNEL = "superd:bans:0"


def hosts(count: int) -> Iterator[str]:
    """``count`` distinct canonical addresses, none of them a test client's."""
    for n in range(count):
        yield f"10.{n // 65536}.{n // 256 % 256}.{n % 256}"


def publish_all(server: RedisServer, messages: list[str], batch: int = 10_000) -> float:
    """PUBLISH every message, pipelined; the seconds it took."""
    started_at = time.monotonic()
    for first in range(0, len(messages), batch):
        part = messages[first:first + batch]
        server.send(encode_commands([("PUBLISH", CHANNEL, m) for m in part]), len(part))
    return time.monotonic() - started_at


def wait_accounted(superd: Any, count: int, timeout: float) -> list[dict[str, Any]]:
    """Every event once ``count`` messages were applied or reported dropped."""
    deadline = time.monotonic() + timeout
    while True:
        events = superd.events()
        seen = sum(e.get("action") == "remote" for e in events) + sum(
            e.get("dropped", 0) for e in events if e.get("event") == "ban_store")
        if seen == count:
            return events
        assert seen < count and time.monotonic() < deadline, f"{seen} of {count} seen"
        time.sleep(0.5)


def trip(superd: Any, source: str) -> None:
    """A real sensor hit from ``source``: banned, and refused everywhere after."""
    after = len(superd.events())
    assert not fetch(source, superd.port("trap"))
    superd.wait_for_event(lambda e: e.get("event") == "ban" and e.get("action") == "add"
                          and e.get("peer_host") == source, 10, after=after)
    assert not fetch(source, superd.port("daytime"))
    assert fetch("127.0.0.2", superd.port("daytime"))
    full = [e for e in superd.events() if e.get("action") == "full"]
    assert full == [], full[0]


def test_a_flood_on_the_channel_is_held_to_the_budget(
        redis_server: RedisServer,  # first: stopped after the daemon
        superd_factory: Callable[..., Any], conf_dir: Callable[..., Path],
        tmp_path: Path) -> None:
    """150,000 valid ban messages in about a second: at most the burst plus
    the rate is applied, the rest is dropped and reported in one line (and
    counted in the metrics); a sensor hit then bans its source at once."""
    (superd,) = fleet(superd_factory, conf_dir, tmp_path, redis_server.url, 1,
                      "--metrics", "tcp:0:interface=127.0.0.1")
    metrics = int(superd.wait_for_event(lambda e: e.get("event") == "metrics"
                                        and e.get("port"))["port"])
    subscribed(superd)
    expires = int((time.time() + 3600) * 1000)
    took = publish_all(redis_server, [f"{h} {expires} elsewhere" for h in hosts(FLOOD)])

    events = wait_accounted(superd, FLOOD, 120)
    applied = [e for e in events if e.get("action") == "remote"]
    reports = [e for e in events if e.get("state") == "dropped"]
    # Over the time superd took to read the flood (Redis queues what superd
    # has not read yet): within the budget, one report per interval.
    window = seconds_of(reports[-1]) - seconds_of(applied[0])
    assert len(applied) <= BURST + RATE * (window + 1), (took, window)
    assert len(reports) <= window / REPORT_INTERVAL + 1, (took, window)
    assert all(e["malformed"] == 0 for e in reports)
    dropped = sum(e["dropped"] for e in reports)
    assert scrape(metrics)[("superd_ban_store_messages_dropped_total",
                            (("reason", "rate"),))] == dropped
    trip(superd, "127.0.0.60")


def test_a_list_full_of_fleet_bans_still_takes_a_sensor_ban(
        redis_server: RedisServer,  # first: stopped after the daemon
        superd_factory: Callable[..., Any], conf_dir: Callable[..., Path],
        tmp_path: Path) -> None:
    """Redis holds more shared bans than the list holds: superd loads it to
    its cap; a sensor hit then pushes out a fleet ban, never fails open."""
    keys = [("SET", f"superd:ban:{h}", "inf") for h in hosts(MAX_BANS + 500)]
    for first in range(0, len(keys), 20_000):
        batch = keys[first:first + 20_000]
        redis_server.send(encode_commands(batch), len(batch))
    (superd,) = fleet(superd_factory, conf_dir, tmp_path, redis_server.url, 1)
    loaded = superd.wait_for_event(lambda e: e.get("event") == "ban_store"
                                   and e.get("state") == "loaded", 180)
    assert loaded["changed"] == MAX_BANS
    trip(superd, "127.0.0.60")
    (evicted,) = [e for e in superd.events() if e.get("action") == "evict"]
    assert evicted["kind"] == "remote"


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """redis-server speaking TLS only, with a certificate for 127.0.0.1."""
    (tmp_path / "pki").mkdir()
    pki = make_pki(tmp_path / "pki")
    yield from started(RedisServer(require_program("redis-server"), pki=pki))


def test_rediss_shares_bans_over_verified_tls(
        tls_redis: RedisServer, superd_factory: Callable[..., Any],
        conf_dir: Callable[..., Path], tmp_path: Path) -> None:
    """Two superd on rediss:// with the server's CA: a ban crosses over."""
    first, second = fleet(superd_factory, conf_dir, tmp_path, tls_redis.url, 2)
    for superd in (first, second):
        subscribed(superd)
    assert not fetch("127.0.0.5", first.port("trap"))
    remote_ban(second, "127.0.0.5", 5)
    assert not fetch("127.0.0.5", second.port("daytime"))
    assert b"127.0.0.5" in tls_redis.command("KEYS", "superd:ban:*")


def test_rediss_refuses_a_server_it_cannot_verify(
        tls_redis: RedisServer, superd_factory: Callable[..., Any],
        conf_dir: Callable[..., Path], tmp_path: Path) -> None:
    """Trusting another CA: the store is down (once), the reason names the
    certificate; sensors keep banning locally."""
    (tmp_path / "other").mkdir()
    other = make_pki(tmp_path / "other", ca_cn="another CA")
    url = f"rediss://127.0.0.1:{tls_redis.port}/0?ca={other.ca_path}"
    (superd,) = fleet(superd_factory, conf_dir, tmp_path, url, 1)
    superd.allow_errors = True  # the outage is an error line, on purpose
    down = superd.wait_for_event(lambda e: e.get("event") == "ban_store"
                                 and e.get("state") == "down", 10)
    assert "certificate verify failed" in down["why"]
    assert not fetch("127.0.0.3", superd.port("trap"))
    assert not fetch("127.0.0.3", superd.port("daytime"))


@pytest.fixture
def acl_redis() -> Iterator[RedisServer]:
    """redis-server with the default user off and a ``superd`` user limited
    to superd's keys and channel."""
    users = ["default off", "admin on >adminPW ~* &* +@all",
             "superd on >s3cretPW ~superd:* &superd:bans:* +@all"]
    yield from started(RedisServer(require_program("redis-server"), users=users,
                                   admin=("admin", "adminPW")))


def test_acl_user_authenticates_as_itself(
        acl_redis: RedisServer, superd_factory: Callable[..., Any],
        conf_dir: Callable[..., Path], tmp_path: Path) -> None:
    """``redis://superd@…`` with the password in a file: AUTH superd …, both
    connections work, a ban crosses over."""
    url = f"redis://superd@127.0.0.1:{acl_redis.port}/0"
    password = acl_redis.password_file(tmp_path, "s3cretPW")
    first, second = fleet(superd_factory, conf_dir, tmp_path, url, 2,
                          "--ban-store-password-file", password)
    for superd in (first, second):
        subscribed(superd)
    assert not fetch("127.0.0.7", first.port("trap"))
    remote_ban(second, "127.0.0.7", 5)
    assert b"127.0.0.7" in acl_redis.command("KEYS", "superd:ban:*")
