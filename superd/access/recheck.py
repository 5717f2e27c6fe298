"""
A reload re-checks the live sessions, as xinetd(8) promises for its hard
reconfiguration (xinetd's code never does it).

Each live session is matched to its service in the new configuration -- by
configuration block (``ServiceConfig.block_key``), else by id when exactly
one block has it (a changed ``bind``) -- and ended, for
``events.END_RECONFIGURED``, when

* the service's new address lists, hosts.allow/deny or ``access_times``
  refuse its source (``pipeline.source_checks``; a check that must look a
  name up ends it once answered), or
* the service's new ``instances`` is below its live sessions: the newest go.

Sessions whose service is gone, and the clients of ``wait = yes`` servers
(superd never sees them), are not re-checked.  Bans are not re-applied here:
a new ban ends its source's sessions when it starts.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.logger import Logger

from superd.access.decision import Decision, Policy
from superd.access.pipeline import run_policies, source_checks
from superd.access.state import AccessState
from superd.config.model import UNLIMITED, ServiceConfig
from superd.core.session import Session
from superd.observe import events

__all__ = ["recheck_sessions"]

_log = Logger(namespace="superd.reload")


def recheck_sessions(state: AccessState,
                     services: Sequence[ServiceConfig]) -> "Deferred[int]":
    """End the live sessions that ``services`` (the new configuration's)
    refuse; fires with how many (at once, unless a name must be looked up)."""
    return _Recheck(state, services).run()


class _Recheck:
    """One reload's pass over the live sessions."""

    def __init__(self, state: AccessState, services: Sequence[ServiceConfig]) -> None:
        self._state = state
        self._by_block = {s.block_key: s for s in services}
        by_id: Dict[str, List[ServiceConfig]] = {}
        for service in services:
            by_id.setdefault(service.id, []).append(service)
        self._by_id = {sid: found[0] for sid, found in by_id.items() if len(found) == 1}
        self._checks: Dict[str, List[Policy]] = {}
        self.ended = 0

    def service_of(self, session: Session) -> Optional[ServiceConfig]:
        """The new configuration's block serving ``session``, if any."""
        return self._by_block.get(session.block) or self._by_id.get(session.service_id)

    def _checks_of(self, service: ServiceConfig) -> List[Policy]:
        checks = self._checks.get(service.block_key)
        if checks is None:
            checks = self._checks[service.block_key] = source_checks(service, self._state)
        return checks

    def run(self) -> "Deferred[int]":
        pending: List[Deferred[None]] = []
        for session in self._state.counter.sessions():
            service = self.service_of(session)
            if service is None or session.peer is None or session.end_reason is not None:
                continue
            checks = self._checks_of(service)
            if not checks:
                continue
            outcome = run_policies(checks, session.peer, self._state.runtime.seconds)
            if isinstance(outcome, Decision):
                self._decided(outcome, session)
            else:
                pending.append(outcome.addCallback(self._decided, session))
        if not pending:
            return succeed(self._finish(None))
        return gatherResults(pending, consumeErrors=True).addCallback(self._finish)

    def _decided(self, decision: Decision, session: Session) -> None:
        if not decision.allowed:
            self.ended += self._state.end_session(session, events.END_RECONFIGURED)

    def _finish(self, _: object) -> int:
        self._over_instances()
        if self.ended:
            _log.info("reload ended {count} live sessions its rules refuse",
                      event=events.EV_SESSIONS_ENDED, reason=events.END_RECONFIGURED,
                      count=self.ended)
        return self.ended

    def _over_instances(self) -> None:
        """End the newest sessions of each service above its new ``instances``."""
        running: Dict[str, List[Session]] = {}
        for session in self._state.counter.sessions():  # oldest first
            service = self.service_of(session)
            if (service is not None and service.instances != UNLIMITED
                    and session.end_reason is None):
                running.setdefault(service.block_key, []).append(session)
        for block, sessions in running.items():
            for session in sessions[self._by_block[block].instances:]:
                self.ended += self._state.end_session(session, events.END_RECONFIGURED)
