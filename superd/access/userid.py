"""
The USERID lookups of one service, as the access gate starts them.

``log_on_success/failure = USERID`` and ``flags = IDONLY`` ask the client's
identd (RFC 1413, ``superd.access.ident``) who owns each connection.  A lookup may
take up to 30 s when identd is silent, and holds a socket meanwhile (and,
for a refused client, the client's connection too), so each kind is bounded
per service; past the bound clients are served or closed as usual, without
USERID.  IDONLY waits are bounded by ``instances``/``per_source`` instead:
the waiting client is counted as a session (xinetd forks it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from superd.access.identrules import must_identify, wants_userid
from superd.config.model import ServiceConfig
from superd.core.runtime import Runtime
from superd.core.session import Peer
from superd.observe import events

if TYPE_CHECKING:
    from superd.access import ident

__all__ = ["MAX_REFUSED_LOOKUPS", "MAX_SERVED_LOOKUPS", "UseridLookups"]

#: Refused connections of one service held open for USERID at once (as
#: xinetd's -logprocs); beyond it a refused client is closed unidentified.
MAX_REFUSED_LOOKUPS = 15
#: USERID lookups of served connections running at once, per service.
MAX_SERVED_LOOKUPS = 256

_log = Logger(namespace="superd.access")


class UseridLookups:
    """What a service asks identd, and how many of its lookups are running."""

    def __init__(self, service: ServiceConfig, runtime: Runtime) -> None:
        self.service = service
        self.runtime = runtime
        #: Admitted clients are looked up (after admission, or first: IDONLY).
        self.on_admit = wants_userid(service, admitted=True)
        #: Refused clients are looked up (their connection held meanwhile).
        self.on_refuse = wants_userid(service, admitted=False)
        #: IDONLY: serve only clients identd names.
        self.first = self.on_admit and must_identify(service)
        self.refused = 0
        self.served = 0
        #: "Too many lookups" was logged since the last one ended.
        self._warned_full = False

    @classmethod
    def of(cls, service: ServiceConfig, runtime: Runtime) -> UseridLookups | None:
        """The lookups of ``service``, or None if it never asks (the usual case)."""
        lookups = cls(service, runtime)
        return lookups if lookups.on_admit or lookups.on_refuse else None

    def lookup(self, local: Peer | None, peer: Peer) -> Deferred[ident.IdentResult]:
        """Start one lookup; it logs USERID (or NOID) itself and never errbacks
        except with CancelledError.  (The client is imported by the first.)"""
        from superd.access import ident

        return ident.log_remote_user(self.runtime.reactor, self.service, local, peer,
                                     port=self.runtime.options.ident_port)

    def for_refused(self, local: Peer, peer: Peer) -> Deferred[ident.IdentResult] | None:
        """The lookup of a refused client, or None when too many are running."""
        if self.refused >= MAX_REFUSED_LOOKUPS:
            return None
        self.refused += 1
        d = self.lookup(local, peer)
        d.addBoth(self._refused_done)
        return d

    def _refused_done(self, result: Any) -> Any:
        self.refused -= 1
        return result

    def beside(self, local: Peer, peer: Peer) -> None:
        """Log the USERID of a served connection (unless too many are running)."""
        if self.served >= MAX_SERVED_LOOKUPS:
            if not self._warned_full:
                self._warned_full = True  # once per saturation
                _log.warn("{service_id}: {limit} ident lookups running; USERID not"
                          " logged for more clients until they end",
                          event=events.EV_IDENT_FAILED, service_id=self.service.id,
                          limit=MAX_SERVED_LOOKUPS, reason="busy")
            return
        self.served += 1
        self.lookup(local, peer).addBoth(self._served_done)

    def _served_done(self, result: object) -> None:
        self.served -= 1
        self._warned_full = False
