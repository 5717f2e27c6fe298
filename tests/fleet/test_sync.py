"""
superd.fleet.sync: local bans go out (now or after an outage), fleet bans come
in through BanList.merge, expired bans are never resurrected, and the outage
is logged once.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs
from twisted.python.failure import Failure

from superd.access.bans import BanList
from superd.access.banstore import Ban, BanStore
from superd.config.storeurl import RedisTarget
from superd.fleet.client import RedisProtocol, SubscriberProtocol
from superd.fleet.resp import encode
from superd.fleet.sync import SharedBans
from superd.fleet.wire import LIFT_SCRIPT, MERGE_SCRIPT, format_expiry

NOW = 1_800_000_000.0


def setup(stored: tuple[Ban, ...] = ()) -> tuple[SharedBans, BanList, Clock]:
    clock = Clock()
    clock.advance(NOW)
    store = BanStore(":memory:")
    for ban in stored:
        store.put(ban)
    bans = BanList(store, clock)
    shared = SharedBans(bans, RedisTarget("127.0.0.1"), clock)
    shared.running = True
    shared.bans.listeners.append(shared.local_ban)
    return shared, bans, clock


def commands(shared: SharedBans, clock: Clock,
             answer: bool = True) -> tuple[RedisProtocol, StringTransport]:
    """A command connection; ``answer``: Redis answers its PING (then it is
    usable, and the transport holds only what was sent after)."""
    protocol = RedisProtocol(clock, shared._lost, on_connected=shared._commands_ready)
    transport = StringTransport()
    protocol.makeConnection(transport)
    assert transport.value() == encode("PING")
    if answer:
        transport.clear()
        protocol.dataReceived(b"+PONG\r\n")
    return protocol, transport


def subscribe(shared: SharedBans, clock: Clock) -> SubscriberProtocol:
    protocol = shared._build_subscriber()
    protocol.makeConnection(StringTransport())
    protocol.dataReceived(b"*3\r\n$9\r\nsubscribe\r\n$13\r\nsuperd:bans:0\r\n:1\r\n")
    return protocol


def merge_command(host: str, expires: float, service: str) -> bytes:
    value = format_expiry(expires)
    return encode("EVAL", MERGE_SCRIPT, 1, "superd:ban:" + host, value,
                  "superd:bans:0", f"{host} {value} {service}")


def test_local_ban_is_sent_with_its_absolute_expiry() -> None:
    """A sensor ban becomes one EVAL carrying host, expiry in ms and the channel."""
    shared, bans, clock = setup()
    _, transport = commands(shared, clock)
    bans.ban("10.0.0.1", 10, "trap")
    assert transport.value() == merge_command("10.0.0.1", NOW + 600, "trap")
    shared._commands.dataReceived(b":1\r\n")  # type: ignore[union-attr]
    assert shared.pending == {}


def test_bans_made_during_an_outage_are_pushed_on_return_unless_expired() -> None:
    """Without Redis, bans wait; when it returns the live one is pushed, the
    one that expired meanwhile is dropped (never resurrected)."""
    shared, bans, clock = setup()
    bans.ban("10.0.0.1", 1, "trap")
    bans.ban("10.0.0.2", 10, "trap")
    assert set(shared.pending) == {"10.0.0.1", "10.0.0.2"}
    clock.advance(120)
    _, transport = commands(shared, clock)
    assert transport.value() == merge_command("10.0.0.2", NOW + 600, "trap")
    assert "10.0.0.1" not in shared.pending


def test_failed_send_stays_pending() -> None:
    """A connection lost before the reply leaves the ban waiting for the next one."""
    shared, bans, clock = setup()
    protocol, _ = commands(shared, clock)
    bans.ban("10.0.0.1", 10, "trap")
    protocol.connectionLost()
    assert "10.0.0.1" in shared.pending
    _, transport = commands(shared, clock)
    assert transport.value() == merge_command("10.0.0.1", NOW + 600, "trap")


def test_local_bans_stored_before_start_are_seeded() -> None:
    """Bans in the SQLite list (e.g. made during an outage before a restart) are shared."""
    shared, _, _ = setup((Ban("10.0.0.7", NOW + 60, NOW, "trap"),
                          Ban("10.0.0.8", NOW - 1, NOW - 100, "trap"),
                          Ban("10.0.0.9", None, NOW, "trap")))
    shared._seed_from_local()
    assert shared.pending == {"10.0.0.7": (NOW + 60, "trap"), "10.0.0.9": (math.inf, "trap")}


def test_published_ban_is_merged_and_not_sent_back() -> None:
    """A fleet message bans locally (logged as remote) without an EVAL of its own."""
    shared, bans, clock = setup()
    _, transport = commands(shared, clock)
    subscriber = subscribe(shared, clock)
    with capturedLogs() as events:
        subscriber.dataReceived(encode_message(b"10.0.0.5 %d trap" % ((NOW + 60) * 1000)))
    assert bans.is_banned("10.0.0.5")
    assert [e["action"] for e in events if e.get("event") == "ban"] == ["remote"]
    assert transport.value().count(b"EVAL") == 0


def encode_message(data: bytes) -> bytes:
    return (b"*3\r\n$7\r\nmessage\r\n$13\r\nsuperd:bans:0\r\n$%d\r\n%s\r\n"
            % (len(data), data))


def test_expired_or_malformed_messages_change_nothing() -> None:
    """Expired bans, junk hosts and junk expiries are ignored."""
    shared, bans, clock = setup()
    for message in [b"10.0.0.5 %d x" % ((NOW - 1) * 1000), b"not-an-ip 99999999999999 x",
                    b"10.0.0.5 soon x", b"10.0.0.5 1", b"\xff\xfe 1 2", b"::ffff:1.2.3.4 inf x"]:
        shared._message(message)
    assert len(bans) == 0


def test_load_merges_the_scanned_set() -> None:
    """After both connections are up, SCAN pages and MGET values are merged."""
    shared, bans, clock = setup()
    protocol, transport = commands(shared, clock)
    subscribe(shared, clock)
    assert transport.value().endswith(encode("SCAN", "0", "MATCH", "superd:ban:*", "COUNT", 256))
    protocol.dataReceived(b"*2\r\n$1\r\n0\r\n*3\r\n$19\r\nsuperd:ban:10.0.0.1\r\n"
                          b"$19\r\nsuperd:ban:10.0.0.2\r\n$18\r\nsuperd:ban:garbage\r\n")
    protocol.dataReceived(b"*3\r\n$3\r\ninf\r\n$13\r\n%d\r\n$1\r\n5\r\n" % ((NOW - 5) * 1000))
    assert bans.expiry("10.0.0.1") == math.inf
    assert not bans.is_banned("10.0.0.2")  # expired in Redis's copy: not resurrected


def test_outage_is_logged_once_and_recovery_once() -> None:
    """Both connections lost and failed attempts while down log one 'down';
    coming back logs 'up' once."""
    shared, _, clock = setup()
    with capturedLogs() as events:
        protocol, _ = commands(shared, clock)
        subscriber = subscribe(shared, clock)
        protocol.connectionLost()
        subscriber.connectionLost()
        for _ in range(3):
            shared._down("connection refused")  # what a failed attempt reports
        commands(shared, clock)
        subscribe(shared, clock)
    states = [e["state"] for e in events if e.get("event") == "ban_store"
              and e.get("state") in ("up", "down")]
    assert states == ["up", "down", "up"]


def test_merge_keeps_the_longer_ban() -> None:
    """BanList.merge only bans or extends; a shorter or equal expiry changes nothing."""
    _, bans, _ = setup()
    assert bans.merge("10.0.0.1", NOW + 100, "x")
    assert not bans.merge("10.0.0.1", NOW + 50, "x")
    assert bans.merge("10.0.0.1", math.inf, "x")
    assert not bans.merge("10.0.0.2", NOW, "x")
    assert bans.store.get("10.0.0.1") is not None


def test_server_that_is_not_redis_at_start_is_an_outage_with_its_reason() -> None:
    """Connecting works but the server talks garbage: one 'down' line naming why."""
    shared, _, clock = setup()
    with capturedLogs() as events:
        for _ in range(3):
            protocol, transport = commands(shared, clock, answer=False)
            protocol.dataReceived(b"HTTP/1.0 400 Bad Request\r\n")
            assert transport.disconnecting
            protocol.connectionLost()
    downs = [e for e in events if e.get("event") == "ban_store" and e.get("state") == "down"]
    assert len(downs) == 1
    assert "protocol error" in downs[0]["why"]


def test_large_backlog_is_sent_a_window_at_a_time() -> None:
    """With many bans waiting, at most WINDOW merges are in flight; each
    answer sends the next, until all are out."""
    from superd.fleet.sync import WINDOW

    shared, bans, clock = setup()
    for i in range(300):
        bans.ban(f"10.1.{i // 250}.{i % 250}", 10, "trap")
    protocol, transport = commands(shared, clock)
    assert transport.value().count(b"EVAL") == WINDOW
    for _ in range(300):
        protocol.dataReceived(b":1\r\n")
    assert shared.pending == {}
    assert transport.value().count(b"EVAL") == 300


def test_refused_merges_are_logged_once_and_stay_pending() -> None:
    """Error replies (an old Redis) keep the bans waiting and log one line."""
    shared, bans, clock = setup()
    protocol, _ = commands(shared, clock)
    with capturedLogs() as events:
        for i in range(3):
            bans.ban(f"10.0.0.{i}", 10, "trap")
            protocol.dataReceived(b"-ERR syntax error\r\n")
    assert len(shared.pending) == 3
    refused = [e for e in events if e.get("state") == "refused"]
    assert len(refused) == 1


def test_ban_lifted_by_hand_is_lifted_on_the_fleet(tmp_path: Path) -> None:
    """``superd bans remove`` (another connection editing the database) becomes
    one DEL + PUBLISH, sent first on the next connection and only once."""
    clock = Clock()
    clock.advance(NOW)
    bans = BanList(BanStore(str(tmp_path / "bans.sqlite3")), clock)
    shared = SharedBans(bans, RedisTarget("127.0.0.1"), clock)
    shared.running = True
    bans.listeners.append(shared.local_ban)
    bans.removal_listeners.append(shared.local_lift)
    bans.ban("10.0.0.1", 10, "trap")
    cli = BanStore(str(tmp_path / "bans.sqlite3"))
    assert cli.remove("10.0.0.1")
    cli.close()
    assert bans.refresh()
    assert shared.pending_lifts == {"10.0.0.1"} and shared.pending == {}
    protocol, transport = commands(shared, clock)
    lift = encode("EVAL", LIFT_SCRIPT, 1, "superd:ban:10.0.0.1", "superd:bans:0",
                  "10.0.0.1 0 -")
    assert transport.value() == lift
    shared.flush()
    assert transport.value() == lift  # not sent twice
    protocol.dataReceived(b":1\r\n")
    assert shared.pending_lifts == set()


def test_ban_added_by_hand_is_shared(tmp_path: Path) -> None:
    """``superd bans add`` in another process reaches the fleet like a sensor ban."""
    clock = Clock()
    clock.advance(NOW)
    bans = BanList(BanStore(str(tmp_path / "bans.sqlite3")), clock)
    shared = SharedBans(bans, RedisTarget("127.0.0.1"), clock)
    bans.listeners.append(shared.local_ban)
    cli = BanStore(str(tmp_path / "bans.sqlite3"))
    cli.put(Ban("10.0.0.9", None, NOW, "cli"))
    cli.close()
    assert bans.refresh()
    assert shared.pending == {"10.0.0.9": (math.inf, "cli")}


def test_lift_message_unbans_a_fleet_ban_here() -> None:
    """A published lift removes a ban the fleet made."""
    shared, bans, clock = setup()
    shared._message(b"10.0.0.1 %d trap" % ((NOW + 600) * 1000))
    assert bans.is_banned("10.0.0.1")
    with capturedLogs() as events:
        shared._message(b"10.0.0.1 0 -")
    assert not bans.is_banned("10.0.0.1")
    assert [e["action"] for e in events if e.get("event") == "ban"] == ["lift"]


def test_lift_message_never_lifts_a_ban_made_here() -> None:
    """The channel cannot switch a sensor off: a lift on it leaves this
    host's own ban in force (and still to be shared)."""
    shared, bans, clock = setup()
    bans.ban("10.0.0.1", 10, "trap")
    shared._message(b"10.0.0.1 0 -")
    assert bans.is_banned("10.0.0.1")
    assert "10.0.0.1" in shared.pending


def test_a_flood_on_the_channel_is_held_to_the_budget_and_reported_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """150,000 valid ban messages at once: a burst is applied, the rest
    dropped unread, one report line for the interval; the list keeps room,
    and a sensor hit still bans (its ban made room if needed)."""
    from superd.access import bans as bans_module
    from superd.fleet.budget import BURST, REPORT_INTERVAL

    monkeypatch.setattr(bans_module, "MAX_BANS", 1000)
    shared, bans, clock = setup()
    subscriber = subscribe(shared, clock)
    with capturedLogs() as events:
        for n in range(150_000):
            host = f"10.{n // 65536}.{n // 256 % 256}.{n % 256}"
            shared._message(b"%s %d x" % (host.encode(), (NOW + 3600) * 1000))
        clock.advance(REPORT_INTERVAL)
    assert len(bans) == 1000  # full: BURST were admitted, the cap holds
    (report,) = [e for e in events if e.get("state") == "dropped"]
    assert report["dropped"] == 150_000 - BURST and report["malformed"] == 0
    bans.ban("127.0.0.60", 10, "trap")
    assert bans.is_banned("127.0.0.60")
    assert subscriber.transport is not None


def test_malformed_messages_are_counted_not_logged_each() -> None:
    """Junk on the channel is one report line per interval, not a line each."""
    from superd.fleet.budget import REPORT_INTERVAL

    shared, _, clock = setup()
    with capturedLogs() as events:
        for _ in range(500):
            shared._message(b"junk")
        clock.advance(REPORT_INTERVAL)
    lines = [e for e in events if e.get("event") == "ban_store"]
    assert [(e["state"], e["malformed"]) for e in lines] == [("dropped", 500)]


def test_a_server_that_accepts_and_closes_is_down() -> None:
    """Connected, then closed before answering: reported down (once), with why."""
    shared, _, clock = setup()
    with capturedLogs() as events:
        for _ in range(3):
            protocol, _ = commands(shared, clock, answer=False)
            protocol.connectionLost(Failure(ConnectionDone()))
    downs = [e for e in events if e.get("event") == "ban_store" and e.get("state") == "down"]
    assert [e["why"] for e in downs] == ["connection closed by the server"]
    assert shared.state == "down" and shared.why == "connection closed by the server"


def test_connection_is_usable_only_once_redis_answered() -> None:
    """No PONG yet: nothing is sent and the store is not up."""
    shared, bans, clock = setup()
    protocol, transport = commands(shared, clock, answer=False)
    subscribe(shared, clock)
    bans.ban("10.0.0.1", 10, "trap")
    assert transport.value() == encode("PING") and shared.state == "starting"
    protocol.dataReceived(b"+PONG\r\n")
    assert shared.state == "up"
    assert transport.value().startswith(encode("PING") + merge_command(
        "10.0.0.1", NOW + 600, "trap"))


def test_acl_user_authenticates_both_connections() -> None:
    """``redis://user:pw@`` sends AUTH user pw on both connections (not just pw)."""
    clock = Clock()
    clock.advance(NOW)
    bans = BanList(BanStore(":memory:"), clock)
    shared = SharedBans(bans, RedisTarget("127.0.0.1", password="pw", username="superd"),
                        clock)
    protocol = RedisProtocol(clock, shared._lost, on_connected=shared._commands_ready)
    transport = StringTransport()
    protocol.makeConnection(transport)
    assert transport.value() == encode("AUTH", "superd", "pw") + encode("PING")
    subscriber = shared._build_subscriber()
    sub_transport = StringTransport()
    subscriber.makeConnection(sub_transport)
    assert sub_transport.value().startswith(encode(b"AUTH", b"superd", b"pw"))

