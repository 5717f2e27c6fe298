"""
What a reload will do, service by service, computed from the old and the new
configuration without touching anything.

Services are compared by identity (``service_key``: id, name, socket type,
protocol, wait, port, kind, bind or UNIX socket path, and the options of
the listening socket),
xinetd's rule plus bind: equal services are unchanged; same identity with
other settings is changed (its sockets are kept); the rest are added or
dropped.  ``superd.daemon.transition`` applies the plan.
"""

from __future__ import annotations

from typing import Callable, Dict, FrozenSet, List, Tuple

import attrs

from superd.config.model import Configuration, ServiceConfig, ServiceKind, SocketType

__all__ = ["ReloadPlan", "plan_reload", "service_key"]

#: Flags that shape the listening socket itself; changing one re-binds.
LISTEN_FLAGS = frozenset({"IPv4", "IPv6", "NODELAY", "KEEPALIVE"})

ServiceKey = Tuple[object, ...]


def service_key(service: ServiceConfig) -> ServiceKey:
    """What must stay equal for a reload to keep a service's sockets (a UNIX
    socket's mode and owner may change: they are given to the kept file)."""
    return (service.id, service.name, service.socket_type, service.protocol,
            service.wait, service.port, service.kind, service.bind, service.v6only,
            service.flags & LISTEN_FLAGS, service.unix and service.unix.path)


@attrs.frozen
class ReloadPlan:
    """What a reload does, service by service (computed without side effects)."""

    #: (old, new) pairs that are equal: nothing to do.
    unchanged: Tuple[Tuple[ServiceConfig, ServiceConfig], ...] = ()
    #: (old, new) pairs with the same identity and other settings.
    changed: Tuple[Tuple[ServiceConfig, ServiceConfig], ...] = ()
    added: Tuple[ServiceConfig, ...] = ()
    dropped: Tuple[ServiceConfig, ...] = ()
    #: Service ids no longer configured at all: their children are stopped.
    stopped_ids: FrozenSet[str] = frozenset()


def _mux_clients(config: Configuration) -> Tuple[ServiceConfig, ...]:
    return tuple(s for s in config.services if s.kind is ServiceKind.TCPMUX_CLIENT)


def _context_changed(old: Configuration, new: Configuration) -> Callable[[ServiceConfig], bool]:
    """Which services' handlers depend on other services that changed."""
    protected = old.protected_ports != new.protected_ports
    mux = _mux_clients(old) != _mux_clients(new)

    def depends(service: ServiceConfig) -> bool:
        builtin = service.kind is ServiceKind.BUILTIN
        if protected and builtin and service.socket_type is SocketType.DGRAM:
            return True  # UDP builtins never answer the other builtins' ports
        return mux and builtin and service.name == "tcpmux"
    return depends


def plan_reload(old: Configuration, new: Configuration) -> ReloadPlan:
    """Compare ``old`` and ``new`` by ``service_key``."""
    waiting: Dict[ServiceKey, List[ServiceConfig]] = {}
    for service in old.services:
        waiting.setdefault(service_key(service), []).append(service)
    depends = _context_changed(old, new)
    unchanged, changed, added = [], [], []
    for service in new.services:
        candidates = waiting.get(service_key(service))
        if not candidates:
            added.append(service)
            continue
        previous = candidates.pop(0)
        if previous == service and not depends(service):
            unchanged.append((previous, service))
        else:
            changed.append((previous, service))
    dropped = tuple(s for left in waiting.values() for s in left)
    remaining = {s.id for s in new.services}
    return ReloadPlan(tuple(unchanged), tuple(changed), tuple(added), dropped,
                      frozenset(s.id for s in dropped if s.id not in remaining))
