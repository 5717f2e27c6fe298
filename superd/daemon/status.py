"""
What superd is doing now: a status snapshot (plain JSON-ready values) and
its rendering for people.

``snapshot`` reads the running service tree and the runtime: every service
with its listen addresses, its state (listening; paused by ``cps`` until a
time; suspended while a ``wait = yes`` server runs; backing off), its
counters (accepted, refused by reason) and live sessions; every running
child (pid, service, peer, start time); the bans in force; and the last reload;
with the daemon's version, pid, configuration path, start time and uptime.
SIGUSR1 logs it, and ``superd status`` (``superd.cli.status``) fetches it over
the control socket.

Every time in it is RFC 3339 in UTC (``superd.core.timestamps``), null for
"forever" or "not known"; fields are named as in the log and in ``superd
bans``: ``service_id``, ``peer_host``, ``peer_port``, ``location``.
"""

from __future__ import annotations

import math
import os
from typing import Any, Dict, Iterable, List, Mapping, Optional

import superd
from superd.access.state import AccessState
from superd.config.model import ServiceConfig, ServiceKind
from superd.core.timestamps import rfc3339, rfc3339_or_none
from superd.daemon.bancontrol import ban_rows
from superd.daemon.service import SuperdService
from superd.net.listener import IListener, ListenState

__all__ = ["render_text", "snapshot"]

Json = Dict[str, Any]


def _listen(listener: IListener) -> str:
    # Closed: the configured address.
    return str(listener.address.describe(listener.bound_port()))


def _cps_pause(service: ServiceConfig, access: AccessState) -> Optional[float]:
    """When a cps pause of ``service`` ends (NaN: not known), or None if it
    is not paused."""
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
            return {"state": status.state.value, "until": rfc3339_or_none(status.until)}
    return {"state": ListenState.LISTENING.value}


def _state(service: ServiceConfig, listeners: List[IListener], access: AccessState) -> Json:
    if service.kind is ServiceKind.TCPMUX_CLIENT:
        return {"state": "via tcpmux"}
    if all(listener.status().state is ListenState.CLOSED for listener in listeners):
        return {"state": ListenState.CLOSED.value}
    until = _cps_pause(service, access)
    if until is not None:
        return {"state": "paused", "reason": "cps", "until": rfc3339_or_none(until)}
    return _listener_state(listeners)


def _service(service: ServiceConfig, listeners: List[IListener], access: AccessState) -> Json:
    counters = access.counters.get(service.block_key)
    entry: Json = {
        "id": service.id, "name": service.name, "kind": service.kind.value,
        "socket_type": service.socket_type.value, "protocol": service.protocol,
        "wait": service.wait, "location": str(service.location),
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
             "peer_host": None if c.peer is None else c.peer.host,
             "peer_port": None if c.peer is None else c.peer.port,
             "started": rfc3339_or_none(c.started)} for c in processes.children()]


def _reload(last_reload: Optional[Mapping[str, Any]]) -> Optional[Json]:
    if last_reload is None:
        return None
    result = dict(last_reload)
    when = result.get("time")
    if isinstance(when, (int, float)):
        result["time"] = rfc3339_or_none(when)
    return result


def snapshot(top: SuperdService, last_reload: Optional[Mapping[str, Any]] = None,
             *, pid: Optional[int] = None, started: Optional[float] = None,
             config: Optional[str] = None) -> Json:
    """
    Everything ``superd status`` shows, as JSON-ready values: ``started``
    is when the daemon started (reactor time), ``config`` the ``-c`` it
    runs (null when not known).
    """
    access: AccessState = top.access
    now = access.runtime.seconds()
    configuration = top.configuration
    return {
        "version": superd.__version__,
        "pid": os.getpid() if pid is None else pid,
        "config": config,
        "started": rfc3339_or_none(started),
        "uptime": None if started is None else round(max(0.0, now - started), 3),
        "time": rfc3339(now),
        "sources": list(configuration.sources),
        "services": [_service(s, list(children), access) for s, children in top.groups],
        "children": _children(access),
        "bans": ban_rows(access.bans),
        "reload": _reload(last_reload),
    }


# -- text ----------------------------------------------------------------------

def _when(text: Optional[str], missing: str = "forever") -> str:
    """A snapshot's time as shown in tables: whole seconds, or ``missing``."""
    if not isinstance(text, str):
        return missing
    # "2026-12-07T01:12:36.123456Z" -> "2026-12-07T01:12:36Z": the same
    # format, without the fraction a person does not need.
    head, dot, _ = text.partition(".")
    return head + "Z" if dot and text.endswith("Z") else text


def uptime_text(seconds: float) -> str:
    """``3d 4h 5m 6s``, largest unit first, leading zero units left out."""
    left = int(seconds)
    parts: List[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if left >= size or parts:
            parts.append(f"{left // size}{unit}")
            left %= size
    return " ".join([*parts, f"{left}s"])


def _state_text(entry: Mapping[str, Any]) -> str:
    state = str(entry.get("state", "?"))
    if state == "paused":
        return f"paused by cps until {_when(entry.get('until'), 'unknown')}"
    if state == "suspended":
        return f"suspended (server pid {entry.get('server_pid')})"
    if state == "backing off":
        return f"backing off until {_when(entry.get('until'))}"
    return state


def _peer_text(child: Mapping[str, Any]) -> str:
    host, port = child.get("peer_host"), child.get("peer_port")
    if host is None:
        return "-"
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def _refused_text(refused: Mapping[str, int]) -> str:
    return ", ".join(f"{reason}={count}" for reason, count in refused.items()) or "0"


def _table(header: List[str], rows: List[List[str]]) -> List[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in [header, *rows]]


def _reload_text(result: Optional[Mapping[str, Any]]) -> str:
    if result is None:
        return "last reload: none since start"
    when = _when(result.get("time"), "?")
    if result.get("ok"):
        return (f"last reload: {when} ok (new={result.get('new')} old={result.get('old')}"
                f" dropped={result.get('dropped')})")
    errors = list(result.get("errors") or [])
    noun = "error" if len(errors) == 1 else "errors"
    return "\n  ".join([f"last reload: {when} FAILED, the previous configuration is"
                        f" running ({len(errors)} {noun}):", *errors])


def _daemon_text(status: Mapping[str, Any]) -> List[str]:
    """Which daemon: version, pid, configuration, start time and uptime."""
    uptime = status.get("uptime")
    up = f" (up {uptime_text(uptime)})" if isinstance(uptime, (int, float)) else ""
    return [f"superd {status.get('version', '?')}, pid {status.get('pid')},"
            f" configuration {status.get('config') or '?'}",
            f"started {_when(status.get('started'), '?')}{up}"]


def render_text(status: Mapping[str, Any]) -> str:
    """The snapshot as tables a person reads in a terminal."""
    services = status.get("services", [])
    lines = [*_daemon_text(status),
             f"{len(services)} services, {len(status.get('children', []))} children,"
             f" {len(status.get('bans', []))} bans",
             _reload_text(status.get("reload")), ""]
    lines += _table(
        ["SERVICE", "KIND", "STATE", "LISTEN", "SESSIONS", "ACCEPTED", "REFUSED"],
        [[s["id"], s["kind"], _state_text(s), " ".join(s["listen"]) or "-",
          str(s["sessions"] if s["sessions"] is not None else "-"), str(s["accepted"]),
          _refused_text(s["refused"])] for s in services])
    children = status.get("children", [])
    if children:
        lines += ["", *_table(["PID", "SERVICE", "PEER", "STARTED"],
                              [[str(c["pid"]), c["service_id"], _peer_text(c),
                                _when(c["started"], "?")] for c in children])]
    bans = [b for b in status.get("bans", []) if "host" in b]
    if bans:
        lines += ["", *_table(["BANNED", "UNTIL", "BY SERVICE", "HITS"],
                              [[b["host"], _when(b["until"]), b["service_id"], str(b["hits"])]
                               for b in bans])]
    return "\n".join(lines) + "\n"
