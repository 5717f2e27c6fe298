"""
What superd is doing now: a status snapshot (plain JSON-ready values) and
its rendering for people.

``snapshot`` reads the running service tree and the runtime: every service
with its listen addresses, its state (listening; paused by ``cps`` until a
time; suspended while a ``wait = yes`` server runs; backing off), its
counters (accepted, refused by reason) and live sessions; every running
child (pid, service, peer, start time); the bans in force (the list every
connection is checked against, not the database file), where they are kept
(the database, degraded or not; the shared store, up or down); and the last
reload.
SIGUSR1 logs it, and ``superd status`` (``superd.cli.status``) fetches it over
the control socket.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any, Dict, Iterable, List, Mapping, Optional

from superd.access.state import AccessState
from superd.config.model import ServiceConfig, ServiceKind
from superd.daemon.bancontrol import ban_rows
from superd.daemon.service import SuperdService
from superd.fleet.sync import SharedBans
from superd.net.listener import IListener, ListenState

__all__ = ["render_text", "snapshot"]

Json = Dict[str, Any]


def _listen(listener: IListener) -> str:
    # Closed: the configured address.
    return str(listener.address.describe(listener.bound_port()))


def _cps_pause(service: ServiceConfig, access: AccessState) -> Optional[float]:
    """When a cps pause of ``service`` ends, or None if it is not paused."""
    rate = access.rates.get((service.block_key, service.cps))
    if rate is None or not rate.deactivated:
        return None
    until = rate.reactivates_at
    return math.nan if until is None else float(until)


def _listener_state(listeners: Iterable[IListener]) -> Json:
    """The first one not simply listening (a wait = yes server), else listening."""
    for listener in listeners:
        status = listener.status()
        if status.state is ListenState.SUSPENDED:
            return {"state": status.state.value, "server_pid": status.server_pid}
        if status.state is ListenState.BACKING_OFF:
            return {"state": status.state.value, "until": status.until}
    return {"state": ListenState.LISTENING.value}


def _state(service: ServiceConfig, listeners: List[IListener], access: AccessState) -> Json:
    if service.kind is ServiceKind.TCPMUX_CLIENT:
        return {"state": "via tcpmux"}
    if all(listener.status().state is ListenState.CLOSED for listener in listeners):
        return {"state": ListenState.CLOSED.value}
    until = _cps_pause(service, access)
    if until is not None:
        return {"state": "paused", "reason": "cps", "until": until}
    return _listener_state(listeners)


def _service(service: ServiceConfig, listeners: List[IListener], access: AccessState) -> Json:
    counters = access.counters.get(service.block_key)
    entry: Json = {
        "id": service.id, "name": service.name, "kind": service.kind.value,
        "socket_type": service.socket_type.value, "protocol": service.protocol,
        "wait": service.wait, "where": str(service.location),
        "listen": [_listen(listener) for listener in listeners],
        "accepted": counters.accepted if counters else 0,
        "refused": dict(sorted(counters.refused.items())) if counters else {},
        # Live sessions superd ended itself, by reason (banned, reconfigured).
        "ended": dict(sorted(counters.ended.items())) if counters else {},
        "sessions": access.counter.running(service.block_key),
    }
    entry.update(_state(service, listeners, access))
    return entry


def _children(access: AccessState) -> List[Json]:
    processes = access.processes
    if processes is None:
        return []
    return [{"pid": c.pid, "service_id": c.service_id,
             "peer": None if c.peer is None else f"{c.peer.host}:{c.peer.port}",
             "started": c.started} for c in processes.children()]


def _ban_database(access: AccessState) -> Json:
    database = access.bans.database
    return {"path": database.path, "state": database.state, "error": database.error,
            "unsaved": len(database.unsaved)}


def _ban_store(top: Any) -> Optional[Json]:
    """The shared ban store (Redis), if the daemon has one."""
    named = getattr(top, "namedServices", {})
    shared = named.get(SharedBans.name) if isinstance(named, dict) else None
    if not isinstance(shared, SharedBans):
        return None
    return {"where": shared.target.describe(), "state": shared.state, "error": shared.why}


def snapshot(top: SuperdService, last_reload: Optional[Mapping[str, Any]] = None,
             *, pid: Optional[int] = None) -> Json:
    """Everything ``superd status`` shows, as JSON-ready values."""
    access: AccessState = top.access
    now = access.runtime.seconds()
    configuration = top.configuration
    return {
        "pid": os.getpid() if pid is None else pid,
        "time": now,
        "sources": list(configuration.sources),
        "services": [_service(s, list(children), access) for s, children in top.groups],
        "children": _children(access),
        "bans": ban_rows(access.bans),
        "ban_database": _ban_database(access),
        "ban_store": _ban_store(top),
        "reload": None if last_reload is None else dict(last_reload),
    }


# -- text ----------------------------------------------------------------------

def _when(seconds: Optional[float]) -> str:
    if seconds is None:
        return "forever"
    if math.isnan(seconds):
        return "?"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


def _state_text(entry: Mapping[str, Any]) -> str:
    state = str(entry.get("state", "?"))
    if state == "paused":
        return f"paused by cps until {_when(entry.get('until'))}"
    if state == "suspended":
        return f"suspended (server pid {entry.get('server_pid')})"
    if state == "backing off":
        return f"backing off until {_when(entry.get('until'))}"
    return state


def _refused_text(refused: Mapping[str, int]) -> str:
    return ", ".join(f"{reason}={count}" for reason, count in refused.items()) or "0"


def _table(header: List[str], rows: List[List[str]]) -> List[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in [header, *rows]]


def _reload_text(result: Optional[Mapping[str, Any]]) -> str:
    if result is None:
        return "last reload: none since start"
    when = _when(result.get("time"))
    if result.get("ok"):
        return (f"last reload: {when} ok (new={result.get('new')} old={result.get('old')}"
                f" dropped={result.get('dropped')})")
    errors = list(result.get("errors") or [])
    noun = "error" if len(errors) == 1 else "errors"
    return "\n  ".join([f"last reload: {when} FAILED, the previous configuration is"
                        f" running ({len(errors)} {noun}):", *errors])


def _ban_storage_text(status: Mapping[str, Any]) -> List[str]:
    """Where bans are kept, when that is not as it should be (or is shared)."""
    lines = []
    database = status.get("ban_database") or {}
    if database.get("state") == "degraded":
        lines.append(f"ban database: {database.get('path')} DEGRADED, bans are kept in"
                     f" memory ({database.get('unsaved')} changes not stored):"
                     f" {database.get('error')}")
    shared = status.get("ban_store")
    if shared:
        why = f" ({shared.get('error')})" if shared.get("state") == "down" else ""
        lines.append(f"ban store: {shared.get('where')} {shared.get('state')}{why}")
    return lines


def render_text(status: Mapping[str, Any]) -> str:
    """The snapshot as tables a person reads in a terminal."""
    services = status.get("services", [])
    lines = [f"superd pid {status.get('pid')}: {len(services)} services,"
             f" {len(status.get('children', []))} children, {len(status.get('bans', []))} bans",
             _reload_text(status.get("reload")), *_ban_storage_text(status), ""]
    lines += _table(
        ["SERVICE", "KIND", "STATE", "LISTEN", "SESSIONS", "ACCEPTED", "REFUSED"],
        [[s["id"], s["kind"], _state_text(s), " ".join(s["listen"]) or "-",
          str(s["sessions"] if s["sessions"] is not None else "-"), str(s["accepted"]),
          _refused_text(s["refused"])] for s in services])
    children = status.get("children", [])
    if children:
        lines += ["", *_table(["PID", "SERVICE", "PEER", "STARTED"],
                              [[str(c["pid"]), c["service_id"], c["peer"] or "-",
                                _when(c["started"])] for c in children])]
    bans = [b for b in status.get("bans", []) if "host" in b]
    if bans:
        lines += ["", *_table(["BANNED", "UNTIL", "BY SERVICE", "HITS"],
                              [[b["host"], _when(b["until"]),
                                b["service_id"] + (" (fleet)" if b.get("remote") else ""),
                                str(b["hits"])] for b in bans])]
    return "\n".join(lines) + "\n"
