"""
Shared bans over a real redis-server: three superd processes; a sensor hit
on one bans the source on the others within a second; bans made while Redis
is down reach the others once it is back, and the outage is logged once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from superd.cli import bans as banscli
from tests.access.clients import block, daytime_block, fetch, hosts_args
from tests.integration.harness import seconds_of
from tests.integration.redisserver import (  # noqa: F401 (fixtures)
    RedisServer,
    redis_server,
    redis_with_password,
)

SENSOR = block("daytime", "trap", extra="\tflags = SENSOR\n\tdeny_time = 10\n")


def fleet(superd_factory: Callable[..., Any], conf_dir: Callable[..., Path],
          tmp_path: Path, url: str, count: int, *extra: str) -> list[Any]:
    conf = conf_dir(trap=SENSOR, daytime=daytime_block("daytime", "\tcps = 0 0\n"))
    return [superd_factory(conf, *hosts_args(tmp_path), "--ban-store", url, *extra)
            for _ in range(count)]


def remote_ban(superd: Any, host: str, timeout: float) -> dict[str, Any]:
    return superd.wait_for_event(  # type: ignore[no-any-return]
        lambda e: e.get("event") == "ban" and e.get("action") == "remote"
        and e.get("peer_host") == host, timeout)


def retry_scheduled(event: dict[str, Any]) -> bool:
    """Twisted's ClientService logs each reconnection it schedules."""
    return "attempt" in event and str(event.get("message")).startswith("Scheduling retry")


def subscribed(superd: Any) -> None:
    superd.wait_for_event(lambda e: e.get("event") == "ban_store"
                          and e.get("state") == "loaded", 10)


def test_sensor_hit_bans_on_every_host_within_a_second(
        redis_server: RedisServer,  # noqa: F811 (first: stopped after the daemons)
        superd_factory: Callable[..., Any], conf_dir: Callable[..., Path],
        tmp_path: Path) -> None:
    """127.0.0.3 trips the sensor of the first superd; the two others refuse
    it within one second (log times compared) and still serve 127.0.0.2."""
    first, *others = fleet(superd_factory, conf_dir, tmp_path, redis_server.url, 3)
    for superd in (first, *others):
        subscribed(superd)
    assert not fetch("127.0.0.3", first.port("trap"))
    banned = first.wait_for_event(lambda e: e.get("event") == "ban"
                                  and e.get("action") == "add")
    for superd in others:
        event = remote_ban(superd, "127.0.0.3", 5)
        assert seconds_of(event) - seconds_of(banned) < 1.0
        assert not fetch("127.0.0.3", superd.port("daytime"))
        assert fetch("127.0.0.2", superd.port("daytime"))
    assert b"127.0.0.3" in redis_server.command("KEYS", "superd:ban:*")


def test_ban_made_during_an_outage_reaches_the_others(
        redis_server: RedisServer,  # noqa: F811 (first: stopped after the daemons)
        superd_factory: Callable[..., Any], conf_dir: Callable[..., Path],
        tmp_path: Path) -> None:
    """Redis stops; a sensor hit on one superd is served and banned locally;
    Redis comes back (empty): the ban is pushed and the other superd applies
    it.  The outage is logged once per superd, however long it lasts."""
    first, second = fleet(superd_factory, conf_dir, tmp_path, redis_server.url, 2)
    for superd in (first, second):
        subscribed(superd)
        superd.allow_errors = True  # the outage is an error line, on purpose
    redis_server.stop()
    first.wait_for_event(lambda e: e.get("event") == "ban_store" and e.get("state") == "down")
    outage = len(first.events())
    assert not fetch("127.0.0.4", first.port("trap"))
    assert not fetch("127.0.0.4", first.port("daytime"))
    assert fetch("127.0.0.2", first.port("daytime"))
    first.wait_for_events(retry_scheduled, 3, after=outage)  # they fail meanwhile
    redis_server.start()
    remote_ban(second, "127.0.0.4", 20)
    assert not fetch("127.0.0.4", second.port("daytime"))
    downs = [e for e in first.events()
             if e.get("event") == "ban_store" and e.get("state") == "down"]
    assert len(downs) == 1
    assert b"127.0.0.4" in redis_server.command("KEYS", "superd:ban:*")


def test_password_and_database(
        redis_with_password: RedisServer,  # noqa: F811 (first: stopped after the daemons)
        superd_factory: Callable[..., Any], conf_dir: Callable[..., Path],
        tmp_path: Path) -> None:
    """With AUTH and database 3 both connections work: a ban crosses over and
    is stored in database 3 (not 0)."""
    url = redis_with_password.url_for(3)
    first, second = fleet(superd_factory, conf_dir, tmp_path, url, 2,
                          "--ban-store-password-file",
                          redis_with_password.password_file(tmp_path))
    for superd in (first, second):
        subscribed(superd)
    assert not fetch("127.0.0.5", first.port("trap"))
    remote_ban(second, "127.0.0.5", 5)
    assert b"127.0.0.5" in redis_with_password.command("KEYS", "superd:ban:*", db=3)
    assert b"127.0.0.5" not in redis_with_password.command("KEYS", "superd:ban:*")


def test_starting_superd_loads_the_current_set(
        redis_server: RedisServer,  # noqa: F811 (first: stopped after the daemons)
        superd_factory: Callable[..., Any], conf_dir: Callable[..., Path],
        tmp_path: Path) -> None:
    """Bans already in Redis apply to a superd that starts later; a stored
    ban whose end has passed (a key without TTL) is not resurrected."""
    now_ms = int(time.time() * 1000)
    redis_server.command("SET", "superd:ban:127.0.0.6", str(now_ms + 600_000),
                         "PXAT", str(now_ms + 600_000))
    redis_server.command("SET", "superd:ban:127.0.0.7", str(now_ms - 1000))
    redis_server.command("SET", "superd:ban:127.0.0.8", "inf")
    (superd,) = fleet(superd_factory, conf_dir, tmp_path, redis_server.url, 1)
    loaded = superd.wait_for_event(lambda e: e.get("event") == "ban_store"
                                   and e.get("state") == "loaded", 10)
    assert (loaded["loaded"], loaded["changed"]) == (3, 2)
    assert not fetch("127.0.0.6", superd.port("daytime"))
    assert not fetch("127.0.0.8", superd.port("daytime"))
    assert fetch("127.0.0.7", superd.port("daytime"))


def test_wrong_password_is_one_outage_line_and_no_harm(
        redis_with_password: RedisServer,  # noqa: F811 (first: stopped after the daemons)
        superd_factory: Callable[..., Any], conf_dir: Callable[..., Path],
        tmp_path: Path) -> None:
    """A refused AUTH is reported once, with the reason, while superd serves
    and bans locally through several reconnection attempts."""
    (superd,) = fleet(superd_factory, conf_dir, tmp_path, redis_with_password.url, 1,
                      "--ban-store-password-file",
                      redis_with_password.password_file(tmp_path, "wrong"))
    superd.allow_errors = True
    down = superd.wait_for_event(lambda e: e.get("event") == "ban_store"
                                 and e.get("state") == "down", 10)
    assert "AUTH refused" in down["why"]
    superd.wait_for_events(retry_scheduled, 3, after=superd.events().index(down))
    assert fetch("127.0.0.2", superd.port("daytime"))
    assert not fetch("127.0.0.3", superd.port("trap"))
    assert not fetch("127.0.0.3", superd.port("daytime"))
    downs = [e for e in superd.events()
             if e.get("event") == "ban_store" and e.get("state") == "down"]
    assert len(downs) == 1


def test_bans_cli_add_and_remove_reach_the_fleet(
        redis_server: RedisServer,  # noqa: F811 (first: stopped after the daemons)
        superd_factory: Callable[..., Any], conf_dir: Callable[..., Path],
        tmp_path: Path) -> None:
    """``superd bans add`` on one host bans on the other; ``superd bans
    remove`` there lifts it on the other and in Redis (no reload brings it back)."""
    first, second = fleet(superd_factory, conf_dir, tmp_path, redis_server.url, 2)
    for superd in (first, second):
        subscribed(superd)
    assert banscli.main(["--state-dir", first.state_dir, "add", "127.0.0.9"]) == 0
    remote_ban(second, "127.0.0.9", 5)
    assert not fetch("127.0.0.9", second.port("daytime"))
    assert banscli.main(["--state-dir", first.state_dir, "remove", "127.0.0.9"]) == 0
    second.wait_for_event(lambda e: e.get("event") == "ban" and e.get("action") == "lift"
                          and e.get("peer_host") == "127.0.0.9", 5)
    assert fetch("127.0.0.9", second.port("daytime"))
    assert fetch("127.0.0.9", first.port("daytime"))
    assert b"127.0.0.9" not in redis_server.command("KEYS", "superd:ban:*")


def test_a_fleet_ban_ends_the_sources_sessions_on_the_other_hosts(
        redis_server: RedisServer,  # noqa: F811 (first: stopped after the daemons)
        superd_factory: Callable[..., Any], conf_dir: Callable[..., Path],
        tmp_path: Path) -> None:
    """A source trips the sensor of one superd: another superd of the fleet,
    where it holds a discard connection, ends that session (EXIT ... banned)
    when the shared ban arrives."""
    import socket

    conf = conf_dir(trap=SENSOR, discard=block("discard", "discard"))
    first, second = (superd_factory(conf, *hosts_args(tmp_path), "--ban-store",
                                    redis_server.url) for _ in range(2))
    for superd in (first, second):
        subscribed(superd)
    with socket.create_connection(("127.0.0.1", second.port("discard")), timeout=10,
                                  source_address=("127.0.0.7", 0)) as held:
        second.wait_for_event(lambda e: e.get("event") == "start"
                              and e.get("peer_host") == "127.0.0.7")
        assert not fetch("127.0.0.7", first.port("trap"))
        remote_ban(second, "127.0.0.7", 5)
        try:
            assert held.recv(64) == b""
        except ConnectionResetError:
            pass  # aborted: an RST is as good as a FIN here
    ended = second.wait_for_event(lambda e: e.get("event") == "exit"
                                  and e.get("reason") == "banned")
    assert ended["service_id"] == "discard"
