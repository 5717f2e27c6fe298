"""
The policies of one service, in the order below, and how they run.

Order: SENSOR ban list, address lists (``only_uid``/``only_gid`` for a UNIX
socket), hosts.allow/deny (not for a UNIX socket), access_times, cps,
instances, per_source, max_load, global ``--limit``.  Only the policies a
service configures are built, so a service without lists or limits pays for
nothing it does not use.  The first denial wins; a policy that raises is
logged and denies with its own reason word; a policy that must wait (a name
lookup) suspends the rest until its answer arrives.

A listening port that hands over connections in batches (accepted first,
then decided) asks ``batch_policies`` once per batch: a policy whose
``allows_everyone()`` says it would admit every peer -- no ban in force,
empty hosts.allow and hosts.deny -- is left out of that batch's decisions.
The answer holds for the whole batch: a ban comes from a sensor's own port,
the operator or the ban database, each its own reactor event, never in the
middle of a batch; and every connection of the batch arrived before the
hosts files are looked at, so a change written before a client connected
is seen, as when each connection is decided alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from superd.access.addresses import AddressPolicy, AddressRules
from superd.access.bans import BanList
from superd.access.decision import ALLOW, Decision, MaybeDeferred, Policy, deny
from superd.access.hostsaccess import HostsAccessPolicy, daemon_name
from superd.access.limits import (
    GlobalLimitPolicy,
    InstancesPolicy,
    NetworkPerSourcePolicy,
    PerSourcePolicy,
)
from superd.access.loadavg import LoadPolicy
from superd.access.peercred import PeerCredentialsPolicy
from superd.access.state import AccessState
from superd.access.times import TimePolicy
from superd.config.model import UNLIMITED, ServiceConfig, ServiceKind
from superd.core.session import Peer
from superd.observe import events

__all__ = ["BANNED", "BanPolicy", "batch_policies", "build_policies", "policies_for",
           "run_policies", "source_checks"]

_log = Logger(namespace="superd.access")
#: The denial of a banned source (the factory recognises it by identity).
BANNED = Decision(False, events.REASON_ADDRESS, "banned")


class BanPolicy:
    """Denies sources a SENSOR has banned (xinetd's global_no_access)."""

    reason = events.REASON_ADDRESS

    def __init__(self, bans: BanList) -> None:
        self._bans = bans
        self._is_banned = bans.is_banned

    def allows_everyone(self) -> bool:
        """True while no source is banned (see ``batch_policies``)."""
        return not self._bans

    def check(self, peer: Peer, now: float) -> Decision:
        if self._is_banned(peer.host):
            return BANNED
        return ALLOW


def source_checks(service: ServiceConfig, state: AccessState) -> list[Policy]:
    """
    The service's checks of who the peer is and when it comes: address
    lists, hosts.allow/deny, access_times -- what a reload re-applies to
    live sessions (``superd.access.recheck``).
    """
    policies: list[Policy] = []
    rules = AddressRules.for_service(service)
    if rules is not None:
        resolver = state.resolver if rules.needs_names else None
        policies.append(AddressPolicy(rules, resolver))
    credentials = PeerCredentialsPolicy.for_service(service)
    if credentials is not None:
        policies.append(credentials)
    if ("NOLIBWRAP" not in service.flags and state.hosts is not None
            and service.unix is None):
        policies.append(HostsAccessPolicy(daemon_name(service), state.hosts))
    if service.access_times:
        policies.append(TimePolicy(service.access_times, state.localtime))
    return policies


def _filters(service: ServiceConfig, state: AccessState) -> list[Policy]:
    policies: list[Policy] = [BanPolicy(state.bans), *source_checks(service, state)]
    if service.cps.max > 0:
        policies.append(state.rate_for(service))
    return policies


def build_policies(service: ServiceConfig, state: AccessState, *,
                   sessions: bool) -> list[Policy]:
    """
    The service's policies in order.  ``sessions`` adds the limits on live
    sessions (instances, per_source, --limit), which in-process datagram
    services do not have.
    """
    policies = _filters(service, state)
    if sessions and service.instances != UNLIMITED:
        policies.append(InstancesPolicy(service.block_key, service.instances,
                                        state.counter))
    if sessions and service.per_source != UNLIMITED:
        if service.v6_source_prefix == 128:
            policies.append(PerSourcePolicy(service.block_key, service.per_source,
                                            state.counter))
        else:
            policies.append(NetworkPerSourcePolicy(service.block_key, service.per_source,
                                                   state.counter, service.v6_source_prefix))
    if service.max_load is not None:
        policies.append(LoadPolicy(service.max_load, state.load))
    limit = state.runtime.options.limit
    if service.kind is ServiceKind.EXTERNAL and limit is not None and state.processes:
        policies.append(GlobalLimitPolicy(limit, state.processes))
    return policies


def policies_for(service: ServiceConfig, state: AccessState, *,
                 sessions: bool) -> list[Policy]:
    """``build_policies``, compiled once per loaded ``ServiceConfig``."""
    compiled = state.compiled
    key = f"{service.block_key}\0{sessions}"
    hit = compiled.get(key)
    if hit is not None and hit[0] is service:
        policies: list[Policy] = hit[1]
        return policies
    policies = build_policies(service, state, sessions=sessions)
    compiled[key] = (service, policies)
    return policies


def batch_policies(policies: Sequence[Policy]) -> list[Policy]:
    """
    The policies that must see each connection of an accept batch starting
    now: ``policies`` without those whose ``allows_everyone()`` (a policy
    may have one) is true.  A policy that raises is kept, so that its
    ``check`` fails and denies as usual.
    """
    kept = []
    for policy in policies:
        allows_everyone = getattr(policy, "allows_everyone", None)
        try:
            if allows_everyone is not None and allows_everyone():
                continue
        except Exception:
            pass
        kept.append(policy)
    return kept


def _crashed(policy: Policy, peer: Peer, failure: Failure) -> Decision:
    _log.failure("access policy {policy} failed for {peer_host}; denying",
                 failure, event=events.EV_POLICY_ERROR, policy=type(policy).__name__,
                 peer_host=peer.host)
    return deny(policy.reason, "policy error")


def run_policies(policies: Sequence[Policy], peer: Peer,
                 now: Callable[[], float], start: int = 0) -> MaybeDeferred:
    """The first denial among ``policies[start:]``, else ALLOW."""
    at = now()  # one instant for one decision (resumed after a wait: a new one)
    # No enumerate: the position is needed only by a policy that must wait.
    for policy in policies[start:] if start else policies:
        try:
            outcome = policy.check(peer, at)
        except Exception:
            return _crashed(policy, peer, Failure())
        if outcome is ALLOW:  # the usual answer: one identity test
            continue
        if isinstance(outcome, Decision):
            if not outcome.allowed:
                return outcome
            continue
        rest = start + list(policies[start:]).index(policy) + 1
        return _resume(outcome, policies, policy, peer, now, rest)
    return ALLOW


def _resume(pending: Deferred[Decision], policies: Sequence[Policy],
            policy: Policy, peer: Peer, now: Callable[[], float],
            rest: int) -> Deferred[Decision]:
    def next_step(decision: Decision) -> MaybeDeferred:
        if not decision.allowed:
            return decision
        return run_policies(policies, peer, now, rest)
    result: Deferred[Decision] = pending.addCallbacks(
        next_step, lambda failure: _crashed(policy, peer, failure))
    return result
