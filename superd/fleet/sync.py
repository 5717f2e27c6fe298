"""
Sensor bans shared through Redis, on top of the local SQLite ban list.

Every ban made here (``BanList.listeners``) is written to Redis as the key
``superd:ban:<host>`` whose value is its absolute expiry in milliseconds
(``inf``: forever) and whose TTL ends with it, and published on
``superd:bans:<db>`` -- both by one Lua script, which keeps the longer of
the stored and the new ban, so concurrent hosts and late reconciliation can
only extend a ban.  Every superd subscribes and merges what is published
(``BanList.merge``: absolute expiries, so an expired ban is never
resurrected); after subscribing it SCANs the current set, on start and on
every reconnection.

Redis is an accelerator, never a dependency: local bans keep working (the
list in force is the source of truth for this host), bans made while Redis
is away wait in a bounded ``pending`` map and are pushed when it returns,
and the outage is logged once (``ban_store`` events: ``down``/``up``).  A
connection counts as up once Redis has answered on it (AUTH, SELECT, PING;
the subscription confirmed): a server that accepts and closes, or never
answers, is reported down.  Reconnection uses ClientService's exponential
back-off.  The connections are bounded by ``superd.fleet.client``.

What arrives on the channel cannot switch this host's sensors off: messages
are admitted within a budget (``superd.fleet.budget``), fleet bans are the
first to go when the local list is full and never push out this host's own
(``BanList.merge``), and a lift from the fleet lifts only a ban that came
from the fleet.  ``rediss://`` (TLS, the server's certificate verified) and
an ACL user (``AUTH user password``) protect the channel itself.
"""

from __future__ import annotations

import math
from itertools import islice
from typing import Any, Optional

from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger

from superd.config.model import UpstreamTLS
from superd.config.storeurl import RedisTarget
from superd.fleet import SERVICE_NAME
from superd.fleet.budget import MessageBudget
from superd.fleet.client import RedisProtocol, SubscriberProtocol
from superd.fleet.resp import RedisError, Reply
from superd.fleet.wire import (
    LIFT_SCRIPT,
    LIFTED,
    MERGE_SCRIPT,
    format_expiry,
    message_label,
    parse_expiry,
    parse_host,
    parse_message,
)
from superd.observe import events

__all__ = ["EV_BAN_STORE", "SharedBans"]

_log = Logger(namespace="superd.fleet")

EV_BAN_STORE = events.EV_BAN_STORE
#: Bans waiting for Redis (made during an outage); past this, the local
#: list still has them and the next start pushes them.
MAX_PENDING = 100_000
#: Merge commands in flight at once.
WINDOW = 64
#: SCAN page size when loading the shared set.
SCAN_COUNT = 256
#: A bound on keys loaded (the local list holds at most as many).
MAX_LOADED = 100_000

class _Factory(Factory):
    """Builds one protocol per connection attempt of a ClientService."""

    noisy = False

    def __init__(self, build: Any) -> None:
        self._build = build

    def buildProtocol(self, addr: Any) -> Protocol:
        protocol: Protocol = self._build()
        return protocol


class SharedBans(MultiService):
    """Keeps ``bans`` (a BanList) in step with the fleet's bans in Redis."""

    name = SERVICE_NAME

    def __init__(self, bans: Any, target: RedisTarget, reactor: Any,
                 endpoint_for: Any = None, *, ca_pem: Optional[bytes] = None) -> None:
        super().__init__()
        self.bans = bans
        self.target = target
        self._reactor = reactor
        self._endpoint_for = endpoint_for or self._hostname_endpoint
        #: The CA(s) a ``rediss://`` server's certificate must chain to
        #: (None: the system's trust store).
        self._ca_pem = ca_pem
        #: Why the store is (or last was) down, for ``superd status``.
        self.why: Optional[str] = None
        self.budget = MessageBudget(reactor, self._report_dropped)
        self.pending: dict[str, tuple[float, str]] = {}
        #: Bans lifted here (``superd bans remove``) not yet lifted in Redis.
        self.pending_lifts: set[str] = set()
        self._in_flight: set[str] = set()
        self._commands: Optional[RedisProtocol] = None
        self._subscribed: Optional[SubscriberProtocol] = None
        #: "starting", "up" or "down" (logged once per change).
        self.state = "starting"
        self._loading = False
        self.full_logged = False
        self._refusal_logged = False

    # -- lifecycle -------------------------------------------------------

    def _hostname_endpoint(self) -> Any:
        from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS

        endpoint = HostnameEndpoint(self._reactor, self.target.host.encode(),
                                    self.target.port, timeout=5)
        if not self.target.tls:
            return endpoint
        # Imported for rediss:// only: it loads OpenSSL.
        from superd.config.tlscontext import client_options

        # The certificate must name the host of the URL (a DNS name or an
        # IP address) and chain to the configured CA or the system's.
        return wrapClientTLS(client_options(UpstreamTLS(self.target.host, self._ca_pem)),
                             endpoint)

    def startService(self) -> None:
        self.bans.listeners.append(self.local_ban)
        self.bans.removal_listeners.append(self.local_lift)
        self._seed_from_local()
        # Two connections, each a child service that reconnects on its own:
        # one for commands, one subscribed to the channel.
        policy = backoffPolicy(initialDelay=0.5, maxDelay=10.0)
        connections = [ClientService(self._endpoint_for(), _Factory(build),
                                     retryPolicy=policy, clock=self._reactor)
                       for build in (self._build_commands, self._build_subscriber)]
        for child in connections:
            child.setServiceParent(self)
        super().startService()
        commands = connections[0]
        first = commands.whenConnected(failAfterFailures=1)
        first.addErrback(lambda failure: self._down(str(failure.value)))

    def stopService(self) -> Deferred[Any]:
        if self.local_ban in self.bans.listeners:
            self.bans.listeners.remove(self.local_ban)
        if self.local_lift in self.bans.removal_listeners:
            self.bans.removal_listeners.remove(self.local_lift)
        self.budget.flush()
        stopped: Deferred[Any] = super().stopService()
        for child in list(self):
            self.removeService(child)  # a restart makes new connections
        return stopped

    def _seed_from_local(self) -> None:
        """Bans this host made (maybe while no Redis was there) are pushed."""
        for ban in self.bans.entries():
            if not ban.remote:
                self._remember(ban.host, math.inf if ban.expires is None else ban.expires,
                               ban.service)

    # -- connection state ------------------------------------------------

    def _build_commands(self) -> RedisProtocol:
        return RedisProtocol(self._reactor, self._lost, on_connected=self._commands_ready)

    def _build_subscriber(self) -> SubscriberProtocol:
        return SubscriberProtocol(self._reactor, self._lost, self.target.channel.encode(),
                                  self._message, on_subscribed=self._subscriber_ready,
                                  password=self.target.password,
                                  username=self.target.username)

    def _auth(self) -> list[Any]:
        if self.target.password is None:
            return []
        if self.target.username is not None:
            return ["AUTH", self.target.username, self.target.password]
        return ["AUTH", self.target.password]

    def _commands_ready(self, protocol: RedisProtocol) -> None:
        """Connected: AUTH, SELECT, then a PING whose answer makes it usable."""
        def refused(failure: Any, what: str) -> None:
            if failure.check(RedisError):  # not a lost connection: a refusal
                protocol.drop(f"{what} refused: {failure.value}")

        auth = self._auth()
        if auth:
            protocol.command(*auth).addErrback(refused, "AUTH")
        if self.target.db:
            protocol.command("SELECT", self.target.db).addErrback(refused, "SELECT")
        ping = protocol.command("PING")
        ping.addCallbacks(self._answered, refused, callbackArgs=(protocol,),
                          errbackArgs=("PING",))

    def _answered(self, reply: Reply, protocol: RedisProtocol) -> None:
        if reply != b"PONG":
            protocol.drop(f"PING answered {reply!r:.80}")
            return
        self._commands = protocol
        self._refusal_logged = False
        self._check_state("")
        self.flush()
        self._maybe_load()

    def _subscriber_ready(self, protocol: SubscriberProtocol) -> None:
        self._subscribed = protocol
        self._check_state("")
        self._maybe_load()

    def _lost(self, protocol: Any) -> None:
        if protocol is self._commands:
            self._commands = None
            self._in_flight.clear()
        if protocol is self._subscribed:
            self._subscribed = None
        why = protocol.drop_reason or protocol.lost_reason or "connection lost"
        self._check_state(why)
        if self.state == "starting":
            self._down(why)  # reachable, but not a usable Redis

    def _check_state(self, why: str) -> None:
        """Up when both connections work; down (logged once) when one fails."""
        if self._commands is not None and self._subscribed is not None:
            self._up()
        elif self.state == "up":
            self._down(why)

    def _up(self) -> None:
        if self.state != "up":
            was = self.state
            self.state = "up"
            self.why = None
            _log.info("ban store {where} reachable{again}; {count} local bans to push",
                      event=EV_BAN_STORE, state="up", where=self.target.describe(),
                      again=" again" if was == "down" else "", count=len(self.pending))

    def _down(self, why: str) -> None:
        if self.state == "down" or not self.running:
            return
        self.state = "down"
        self.why = why
        _log.error("ban store {where} unreachable ({why}): serving with local bans;"
                   " retrying with back-off", event=EV_BAN_STORE, state="down",
                   where=self.target.describe(), why=why)

    # -- local bans out --------------------------------------------------

    def _remember(self, host: str, expires: float, service_id: str) -> None:
        known = self.pending.get(host)
        if known is None and len(self.pending) >= MAX_PENDING:
            if not self.full_logged:
                self.full_logged = True
                _log.error("too many bans waiting for the ban store; the rest stay"
                           " local until restart", event=EV_BAN_STORE, state="full")
            return
        if known is None or known[0] < expires:
            self.pending[host] = (expires, service_id)

    def local_ban(self, host: str, expires: float, service_id: str) -> None:
        """A ban made on this host: share it (now, or when Redis is back)."""
        self._remember(host, expires, service_id)
        self.flush()

    def local_lift(self, host: str) -> None:
        """A ban lifted here by hand: lift it on the fleet (now, or when Redis is back)."""
        self.pending.pop(host, None)
        if len(self.pending_lifts) < MAX_PENDING:
            self.pending_lifts.add(host)
        self.flush()

    def _send_lifts(self, commands: RedisProtocol) -> None:
        # Lifts go first: on the same connection they reach Redis before the
        # SCAN of a reload, which would otherwise bring the ban back.
        for host in list(self.pending_lifts):
            self.pending_lifts.discard(host)
            message = f"{host} {LIFTED} -"
            d = commands.command("EVAL", LIFT_SCRIPT, 1, self.target.key_prefix + host,
                                 self.target.channel, message)
            d.addErrback(self._lift_not_sent, host)

    def _lift_not_sent(self, failure: Any, host: str) -> None:
        self.pending_lifts.add(host)  # retried on the next flush or connection

    def flush(self) -> None:
        """Send waiting lifts, then waiting bans, at most WINDOW at a time."""
        commands = self._commands
        if commands is None:
            return
        if self.pending_lifts:
            self._send_lifts(commands)
        now = self._reactor.seconds()
        # Only the head of the map: the in-flight bans (at most WINDOW) stay
        # there until answered, so the next sendable ones are within 2 *
        # WINDOW -- a flush per reply stays O(WINDOW) with 100,000 waiting.
        for host, (expires, service_id) in list(islice(self.pending.items(), 2 * WINDOW)):
            if len(self._in_flight) >= WINDOW:
                return
            if expires <= now:
                del self.pending[host]  # expired while waiting: never resurrect
                continue
            if host not in self._in_flight:
                self._send(commands, host, expires, service_id)

    def _send(self, commands: RedisProtocol, host: str, expires: float,
              service_id: str) -> None:
        value = format_expiry(expires)
        message = f"{host} {value} {message_label(service_id)}"
        self._in_flight.add(host)
        d = commands.command("EVAL", MERGE_SCRIPT, 1, self.target.key_prefix + host,
                             value, self.target.channel, message)
        d.addCallbacks(self._sent, self._not_sent, callbackArgs=(host, expires),
                       errbackArgs=(host,))

    def _sent(self, reply: Reply, host: str, expires: float) -> None:
        self._in_flight.discard(host)
        waiting = self.pending.get(host)
        if waiting is not None and waiting[0] <= expires:
            del self.pending[host]
        self.flush()

    def _not_sent(self, failure: Any, host: str) -> None:
        self._in_flight.discard(host)  # stays pending: retried on reconnection
        if failure.check(RedisError) and not self._refusal_logged:
            # Redis answered but refused (e.g. a Redis older than 6.2 has no
            # SET PXAT): say so once per connection, not once per ban.
            self._refusal_logged = True
            _log.error("the ban store refused a ban: {error}", event=EV_BAN_STORE,
                       state="refused", error=str(failure.value))

    # -- fleet bans in ---------------------------------------------------

    def _message(self, data: bytes) -> None:
        if not self.budget.take():
            return  # counted; reported with the others
        parsed = parse_message(data)
        if parsed is None:
            self.budget.bad()
            return
        self.apply(*parsed)

    def _report_dropped(self, dropped: int, malformed: int, interval: float) -> None:
        _log.warn("ban store channel: {dropped} messages over the budget of {rate:g}/s"
                  " (burst {burst:g}) dropped and {malformed} malformed ones ignored in"
                  " the last {interval:g} s", event=EV_BAN_STORE, state="dropped",
                  dropped=dropped, malformed=malformed, interval=interval,
                  rate=self.budget.rate, burst=self.budget.burst)

    def apply(self, host: str, expires: float, service_id: str) -> bool:
        """Merge a fleet ban into the local list; True if it changed anything."""
        if expires == 0:
            return self._lift(host)
        if not self.bans.merge(host, expires, service_id):
            return False
        _log.warn("Adding {peer_host} to the global_no_access list (shared by"
                  " service {service_id} of the fleet)", event=events.EV_BAN,
                  action="remote", peer_host=host, service_id=service_id,
                  expires=None if math.isinf(expires) else expires)
        return True

    def _lift(self, host: str) -> bool:
        # Only what the fleet banned: a lift on the channel never ends a ban
        # this host's sensors (or its operator) made, nor stops sharing it.
        if not self.bans.is_remote(host) or not self.bans.unban(host):
            return False
        self.pending.pop(host, None)
        _log.warn("Removing {peer_host} from the global_no_access list (lifted on"
                  " another host of the fleet)", event=events.EV_BAN, action="lift",
                  peer_host=host)
        return True

    def _maybe_load(self) -> None:
        if self._commands is None or self._subscribed is None or self._loading:
            return
        self._loading = True
        d = ensureDeferred(self._load(self._commands))
        d.addErrback(lambda f: _log.warn("loading the shared bans stopped: {error}",
                                         event=EV_BAN_STORE, state="load_error",
                                         error=str(f.value)))
        d.addBoth(lambda _: setattr(self, "_loading", False))

    async def _load(self, commands: RedisProtocol) -> int:
        """SCAN every shared ban and merge it; how many changed the local list."""
        cursor: bytes = b"0"
        loaded = changed = 0
        pattern = self.target.key_prefix + "*"
        while loaded < MAX_LOADED:
            reply = await commands.command("SCAN", cursor, "MATCH", pattern,
                                           "COUNT", SCAN_COUNT)
            cursor, keys = _scan_page(reply)
            if keys:
                values = await commands.command("MGET", *keys)
                changed += self._merge_page(keys, values)
                loaded += len(keys)
            if cursor == b"0":
                break
        _log.info("loaded {loaded} shared bans ({changed} new here)", event=EV_BAN_STORE,
                  state="loaded", loaded=loaded, changed=changed)
        return changed

    def _merge_page(self, keys: list[bytes], values: Reply) -> int:
        if not isinstance(values, list) or len(values) != len(keys):
            raise ValueError("MGET reply does not match its keys")
        changed = 0
        prefix = len(self.target.key_prefix)
        for key, value in zip(keys, values, strict=True):
            host = parse_host(key[prefix:].decode("ascii", "replace"))
            text = value.decode("ascii", "replace") if isinstance(value, bytes) else ""
            expires = parse_expiry(text)
            if host is not None and expires:  # 0 lifts only as a message
                changed += self.apply(host, expires, "fleet")
        return changed


def _scan_page(reply: Reply) -> tuple[bytes, list[bytes]]:
    """``(cursor, keys)`` of a SCAN reply; raises ValueError on any other shape."""
    if not (isinstance(reply, list) and len(reply) == 2 and isinstance(reply[0], bytes)
            and reply[0].isdigit() and isinstance(reply[1], list)):
        raise ValueError("malformed SCAN reply")
    keys = [k for k in reply[1] if isinstance(k, bytes)]
    if len(keys) != len(reply[1]):
        raise ValueError("malformed SCAN keys")
    return reply[0], keys
