"""
What ``superd check`` prints: a table of services, or JSON, from a Configuration.

Pure rendering; the CLI loads the configuration and chooses the format.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Sequence

from superd.config.model import UNLIMITED, Configuration, ServiceConfig

__all__ = ["render_json", "render_table", "service_summary"]

_COLUMNS = ("id", "name", "proto", "socket", "listen", "kind", "wait", "limits")


def _limit(value: int) -> str:
    return "-" if value == UNLIMITED else str(value)


def listen_text(service: ServiceConfig) -> str:
    """``ADDR:PORT`` for each listen address (``*`` for any), or the mux note."""
    if service.port is None:
        return "(via tcpmux)"
    hosts = service.bind or ("*",)
    return " ".join(f"[{h}]:{service.port}" if ":" in h else f"{h}:{service.port}" for h in hosts)


def limits_text(service: ServiceConfig) -> str:
    """``instances/per_source`` and ``cps``, compactly."""
    return (
        f"inst={_limit(service.instances)} per_src={_limit(service.per_source)} "
        f"cps={service.cps.max}/{service.cps.wait}"
    )


def _row(service: ServiceConfig) -> Sequence[str]:
    return (
        service.id,
        service.name,
        service.protocol,
        service.socket_type.value,
        listen_text(service),
        service.kind.value,
        "yes" if service.wait else "no",
        limits_text(service),
    )


def render_table(config: Configuration) -> str:
    """An aligned text table of every service, then the warnings."""
    rows = [_COLUMNS] + [tuple(_row(s)) for s in config.services]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.append(f"{len(config.services)} service(s) from {len(config.sources)} file(s)")
    if config.ban_store:
        lines.append(f"ban store: {_ban_store(config)}")
    lines.extend(f"warning: {warning}" for warning in config.warnings)
    return "\n".join(lines) + "\n"


def service_summary(service: ServiceConfig) -> Dict[str, Any]:
    """The JSON object describing one service."""
    return {
        "id": service.id,
        "name": service.name,
        "location": str(service.location),
        "protocol": service.protocol,
        "socket_type": service.socket_type.value,
        "port": service.port,
        "bind": list(service.bind),
        "kind": service.kind.value,
        "wait": service.wait,
        "type": sorted(service.type),
        "flags": sorted(service.flags),
        "server": service.server,
        "server_args": list(service.server_args),
        "user": service.credentials.user,
        "instances": None if service.instances == UNLIMITED else service.instances,
        "per_source": None if service.per_source == UNLIMITED else service.per_source,
        "cps": [service.cps.max, service.cps.wait],
    }


def _ban_store(config: Configuration) -> Optional[str]:
    """The shared ban store for display: never its password."""
    from superd.config.storeurl import parse_redis_url

    return parse_redis_url(config.ban_store).describe() if config.ban_store else None


def render_json(config: Configuration) -> str:
    """The services, warnings and files read, as one JSON document."""
    warnings: List[Dict[str, Any]] = [
        {
            "file": w.location.file,
            "line": w.location.line,
            "service": w.service,
            "section": w.section,
            "attribute": w.attribute,
            "message": w.message,
            "text": str(w),
        }
        for w in config.warnings
    ]
    document = {
        "services": [service_summary(s) for s in config.services],
        "warnings": warnings,
        "sources": list(config.sources),
        "ban_store": _ban_store(config),
    }
    return json.dumps(document, indent=2, sort_keys=False) + "\n"
