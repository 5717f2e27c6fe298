"""
Applying a reload plan to a running ``SuperdService``.

``Transition`` builds the children of changed and added services without
binding; ``bind`` binds the added ones (closing first any dropped socket
whose port a new one needs) and undoes every bind of its own on failure;
``commit`` switches over.  A changed service's bound socket moves to its new
listener (``IListener.adopt``), which serves it with the new settings from
its next connection or datagram on, so none finds the socket closed.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

from twisted.application.service import IService
from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger

from superd.config.errors import Problem
from superd.config.model import Configuration, ServiceConfig, SocketType
from superd.daemon.assembly import Assembly, Failure, Group
from superd.daemon.plan import ReloadPlan
from superd.daemon.service import SuperdService
from superd.net.sockets import BindError
from superd.observe import events

__all__ = ["Transition"]

_log = Logger(namespace="superd.reload")

def _port_key(service: ServiceConfig) -> Optional[Tuple[SocketType, object]]:
    if service.unix is not None:
        return (service.socket_type, service.unix.path)
    return (service.socket_type, service.port) if service.port else None


def _start(child: IService) -> None:
    child.privilegedStartService()
    child.startService()


class Transition:
    """
    One reload's changes to a running ``SuperdService``: ``build`` makes the
    new children, ``bind`` binds them (undoing its own binds on failure),
    ``commit`` switches over.
    """

    def __init__(self, top: SuperdService, plan: ReloadPlan, config: Configuration) -> None:
        self.top = top
        self.plan = plan
        self.config = config
        self._old: Dict[int, Group] = {id(g[0]): g for g in top.groups}
        self._changed: List[Group] = []
        self._added: List[Group] = []
        self._bound: List[IService] = []
        self._closed: List[IService] = []

    def build(self) -> List[Failure]:
        """Make (without binding) the children of changed and added services;
        those that cannot be built, each with its problem (then nothing may
        be bound or committed)."""
        changed = [new for _, new in self.plan.changed]
        assembly = Assembly(self.top.parts, self.config, self.top.builders)
        groups, failures = assembly.build([*changed, *self.plan.added])
        if failures:
            return failures
        self._changed, self._added = groups[:len(changed)], groups[len(changed):]
        for (old, new), (_, children) in zip(self.plan.changed, self._changed, strict=True):
            if len(self._old[id(old)][1]) != len(children):
                return [(new, Problem(old.location.file, old.location.line, old.name, None,
                                      "internal error: its sockets changed without a new"
                                      " identity"))]
        return []

    async def bind(self) -> Optional[BindError]:
        """Bind every added service (freeing ports of dropped ones if needed)."""
        freed = {_port_key(s) for s in self.plan.dropped} - {None}
        first = [g for g in self._added if _port_key(g[0]) not in freed]
        later = [g for g in self._added if _port_key(g[0]) in freed]
        try:
            error = self._bind_groups(first)
            if error is None and later:
                await self._close_dropped({_port_key(g[0]) for g in later})
                error = self._bind_groups(later)
        except Exception:
            self._undo()  # a bug must not leave half a reload listening
            raise
        if error is not None:
            self._undo()
        return error

    def _bind_groups(self, groups: Sequence[Group]) -> Optional[BindError]:
        for _, children in groups:
            for child in children:
                try:
                    child.privilegedStartService()
                except BindError as e:
                    return e
                self._bound.append(child)
        return None

    async def _close_dropped(self, ports: set[Any]) -> None:
        stopping = []
        for service in self.plan.dropped:
            if _port_key(service) in ports:
                for child in self._old[id(service)][1]:
                    self._closed.append(child)
                    stopping.append(Deferred.fromCoroutine(_stopped(child)))
        await DeferredList(stopping)

    def _undo(self) -> None:
        for child in self._bound:
            child.stopService()
        for child in self._closed:
            try:
                _start(child)
            except BindError as e:
                _log.critical("reload rollback could not reopen {where}: {error}",
                              event=events.EV_RELOAD, phase="rollback",
                              where=e.address.describe(), error=str(e))

    def commit(self) -> None:
        """Switch over: move kept sockets, close dropped ones, start new ones."""
        top = self.top
        for (old, _), (_, children) in zip(self.plan.changed, self._changed, strict=True):
            for previous, child in zip(self._old[id(old)][1], children, strict=True):
                child.adopt(previous)
                top.remove_listener(previous)
                top.add_listeners([child])
        for service in self.plan.dropped:
            for child in self._old[id(service)][1]:
                top.remove_listener(child)
        for _, children in self._added:
            top.add_listeners(children)
        top.groups = self._groups()
        top.configuration = self.config

    def _groups(self) -> List[Group]:
        by_config: Dict[int, Group] = {}
        for old, new in self.plan.unchanged:
            by_config[id(new)] = (new, self._old[id(old)][1])
        for group in (*self._changed, *self._added):
            by_config[id(group[0])] = group
        return [by_config[id(s)] for s in self.config.services if id(s) in by_config]


async def _stopped(child: IService) -> None:
    result = child.stopService()
    if isinstance(result, Deferred):
        await result
