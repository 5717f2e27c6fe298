"""
An access decision and the shape every access policy has.

A policy answers one question about one peer -- allow or deny, with xinetd's
reason word -- either at once (a ``Decision``) or, when it must wait for a
name lookup, later (a ``Deferred`` firing with a ``Decision``).  Policies
only decide; counting, bans and logging live in the factory.
"""

from __future__ import annotations

from typing import Protocol, Union

import attrs
from twisted.internet.defer import Deferred

from superd.core.session import Peer
from superd.observe import events

__all__ = [
    "ALLOW",
    "Decision",
    "MaybeDeferred",
    "Policy",
    "deny",
]


@attrs.frozen
class Decision:
    """Allow or deny; a denial carries xinetd's reason word and a detail."""

    allowed: bool
    reason: str = ""
    detail: str = ""


#: The one allowing decision (shared: deciding allocates nothing).
ALLOW = Decision(True)

_DENIALS = {
    reason: Decision(False, reason)
    for reason in (
        events.REASON_ADDRESS, events.REASON_TIME, events.REASON_CPS,
        events.REASON_SERVICE_LIMIT, events.REASON_PER_SOURCE,
        events.REASON_PROCESS_LIMIT, events.REASON_LIBWRAP,
        events.REASON_LOAD, events.REASON_CREDENTIALS,
    )
}


def deny(reason: str, detail: str = "") -> Decision:
    """A denial for ``reason`` (shared instances when there is no detail)."""
    if not detail and reason in _DENIALS:
        return _DENIALS[reason]
    return Decision(False, reason, detail)


MaybeDeferred = Union[Decision, "Deferred[Decision]"]


class Policy(Protocol):
    """One access rule of one service."""

    #: The reason word used when the policy itself fails (it then denies).
    reason: str

    def check(self, peer: Peer, now: float) -> MaybeDeferred:
        """Decide for ``peer`` at time ``now`` (the injected clock's seconds)."""
