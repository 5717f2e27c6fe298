"""
What superd is doing now: a status snapshot (plain JSON-ready values) and
its rendering for people.

``snapshot`` reads the running service tree and the runtime: every service
with its listen addresses, its state (listening; paused by ``cps`` until a
time; suspended while a ``wait = yes`` server runs; backing off), its
counters (accepted, refused by reason) and live sessions; every running
child (pid, service, peer, start time); the bans in force (the list every
connection is checked against, not the database file), where they are kept
(the database, degraded or not; the shared store, up or down); the services
that do not run because of configuration errors (with those errors, as
``superd check --json`` gives them, and whether a previous definition keeps
running), the disabled ones; and the last reload; with the daemon's version,
pid, configuration path, start time and uptime.  SIGUSR1 logs it, and
``superd status`` (``superd.cli.status``) fetches it over the control socket.

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
from superd.config.check import failures_json, problem_json
from superd.config.model import ServiceConfig, ServiceKind
from superd.core.timestamps import rfc3339, rfc3339_or_none
from superd.daemon.bancontrol import ban_rows
from superd.daemon.isolation import Kept, failed_json
from superd.daemon.service import SuperdService
from superd.fleet import SERVICE_NAME as BAN_STORE_SERVICE
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


def _service(service: ServiceConfig, listeners: List[IListener], access: AccessState,
             kept: Optional[Kept] = None) -> Json:
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
        # Why the previous definition runs (its new block failed at a reload).
        "kept": None if kept is None else kept.reason,
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


def _ban_database(access: AccessState) -> Json:
    database = access.bans.database
    return {"path": database.path, "state": database.state, "error": database.error,
            "unsaved": len(database.unsaved)}


def _ban_store(top: Any) -> Optional[Json]:
    """The shared ban store (Redis), if the daemon has one."""
    named = getattr(top, "namedServices", {})
    shared = named.get(BAN_STORE_SERVICE) if isinstance(named, dict) else None
    if shared is None:
        return None
    from superd.fleet.sync import SharedBans  # only a daemon with a ban store has one

    if not isinstance(shared, SharedBans):
        return None
    return {"where": shared.target.describe(), "state": shared.state, "error": shared.why}


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
    kept = {id(k.service): k for k in top.kept}
    failures = failures_json(configuration)
    return {
        "version": superd.__version__,
        "pid": os.getpid() if pid is None else pid,
        "config": config,
        "started": rfc3339_or_none(started),
        "uptime": None if started is None else round(max(0.0, now - started), 3),
        "time": rfc3339(now),
        "sources": list(configuration.sources),
        "services": [_service(s, list(children), access, kept.get(id(s)))
                     for s, children in top.groups],
        "failed": failed_json(configuration, top.kept),
        "failed_count": len(configuration.failed),
        "failed_files": failures["failed_files"],
        "disabled": failures["disabled"],
        "errors": [problem_json(p) for p in configuration.problems],
        "error_count": configuration.error_count,
        "notes": failures["notes"],
        "children": _children(access),
        "bans": ban_rows(access.bans),
        "ban_database": _ban_database(access),
        "ban_store": _ban_store(top),
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


def _count(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _reload_text(result: Optional[Mapping[str, Any]]) -> str:
    if result is None:
        return "last reload: none since start"
    when = _when(result.get("time"), "?")
    counts = f"new={result.get('new')} old={result.get('old')} dropped={result.get('dropped')}"
    if result.get("ok"):
        return f"last reload: {when} ok ({counts})"
    errors = list(result.get("errors") or [])
    if result.get("partial"):
        failed = result.get("failed_count", len(result.get("failed") or []))
        return "\n  ".join([f"last reload: {when} PARTLY APPLIED ({counts}):"
                            f" {_count(failed, 'service')} failed, {_count(len(errors), 'error')}"
                            ":", *errors])
    return "\n  ".join([f"last reload: {when} FAILED, the previous configuration is"
                        f" running ({_count(len(errors), 'error')}):", *errors])


def _state_column(entry: Mapping[str, Any]) -> str:
    text = _state_text(entry)
    return f"{text} (previous definition)" if entry.get("kept") else text


def _failed_lines(status: Mapping[str, Any]) -> List[str]:
    """The failed services, each with its errors, and the failed files."""
    failed = status.get("failed") or []
    lines: List[str] = []
    if failed:
        lines += ["", "FAILED (configuration errors):"]
    for entry in failed:
        state = entry.get("state", "failed")
        if entry.get("previous"):
            state += ", previous definition running (" + " ".join(entry["previous"]) + ")"
        else:
            state += ", not running"
        lines.append(f"  {entry['id']}  {entry['location']}  {state}")
        lines += [f"    {problem['text']}" for problem in entry.get("problems") or []]
    more = int(status.get("failed_count", len(failed))) - len(failed)
    if more > 0:
        lines.append(f"  ... and {_count(more, 'more failed service')} not listed")
    unreadable = status.get("failed_files") or []
    if unreadable:
        lines += ["", "FILES NOT READ AS A WHOLE:", *(f"  {path}" for path in unreadable)]
    return lines


def _disabled_lines(status: Mapping[str, Any]) -> List[str]:
    disabled = status.get("disabled") or []
    if not disabled:
        return []
    return ["", *_table(["DISABLED", "WHERE", "WHY"],
                        [[d["id"], d["location"], d["reason"]] for d in disabled])]


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
    failed = status.get("failed_count", len(status.get("failed") or []))
    disabled = status.get("disabled") or []
    lines = [*_daemon_text(status),
             f"{len(services)} services, {failed} failed, {len(disabled)} disabled,"
             f" {len(status.get('children', []))} children, {len(status.get('bans', []))} bans",
             _reload_text(status.get("reload")), *_ban_storage_text(status), ""]
    lines += _table(
        ["SERVICE", "KIND", "STATE", "LISTEN", "SESSIONS", "ACCEPTED", "REFUSED"],
        [[s["id"], s["kind"], _state_column(s), " ".join(s["listen"]) or "-",
          str(s["sessions"] if s["sessions"] is not None else "-"), str(s["accepted"]),
          _refused_text(s["refused"])] for s in services])
    lines += _failed_lines(status) + _disabled_lines(status)
    children = status.get("children", [])
    if children:
        lines += ["", *_table(["PID", "SERVICE", "PEER", "STARTED"],
                              [[str(c["pid"]), c["service_id"], _peer_text(c),
                                _when(c["started"], "?")] for c in children])]
    bans = [b for b in status.get("bans", []) if "host" in b]
    if bans:
        lines += ["", *_table(["BANNED", "UNTIL", "BY SERVICE", "HITS"],
                              [[b["host"], _when(b["until"]),
                                b["service_id"] + (" (fleet)" if b.get("remote") else ""),
                                str(b["hits"])] for b in bans])]
    return "\n".join(lines) + "\n"
