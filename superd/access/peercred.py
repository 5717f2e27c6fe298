"""
``only_uid`` and ``only_gid``: who may use a UNIX-domain socket, by the
credentials the kernel recorded when the peer connected.

A peer is admitted when its uid is in ``only_uid`` or its primary group or
one of its supplementary groups is in ``only_gid`` (either list alone
decides by itself).  Anything that is not a ``UnixPeer`` -- which cannot
reach a UNIX service -- is refused, as is a peer whose credentials could
not be read (uid and gid -1).
"""

from __future__ import annotations

from typing import AbstractSet, Optional

from superd.access.decision import ALLOW, Decision, deny
from superd.config.model import ServiceConfig
from superd.core.session import Peer, UnixPeer
from superd.observe import events

__all__ = ["PeerCredentialsPolicy"]

_NOBODY: AbstractSet[int] = frozenset()


class PeerCredentialsPolicy:
    """Admits UNIX peers whose uid or groups are listed."""

    reason = events.REASON_CREDENTIALS

    def __init__(self, uids: Optional[AbstractSet[int]],
                 gids: Optional[AbstractSet[int]]) -> None:
        self._uids = _NOBODY if uids is None else uids
        self._gids = _NOBODY if gids is None else gids

    @classmethod
    def for_service(cls, service: ServiceConfig) -> Optional[PeerCredentialsPolicy]:
        """The policy of ``service``, or None when it lists neither."""
        if service.only_uid is None and service.only_gid is None:
            return None
        return cls(service.only_uid, service.only_gid)

    def check(self, peer: Peer, now: float) -> Decision:
        if not isinstance(peer, UnixPeer):
            return deny(self.reason, "no credentials")
        if peer.uid in self._uids:
            return ALLOW
        gids = self._gids
        if peer.gid in gids or not gids.isdisjoint(peer.groups):
            return ALLOW
        return deny(self.reason)
