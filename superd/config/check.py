"""
What ``superd check`` prints: a table of services, or JSON, from a Configuration.

Pure rendering; the CLI loads the configuration and chooses the format.
Every error, warning and note has the same JSON fields (``finding_json``);
text that came from the files is shown with ``printable`` (bytes that are not
UTF-8 and control characters escaped).
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Sequence

from superd.config.errors import ConfigNote, ConfigWarning, Problem, error_count
from superd.config.model import UNLIMITED, Configuration, ServiceConfig
from superd.config.text import printable

__all__ = ["failures_json", "finding_json", "note_json", "problem_json", "render_json",
           "render_table", "service_summary", "warning_json"]

_COLUMNS = ("id", "name", "proto", "socket", "listen", "kind", "wait", "limits")


def _limit(value: int) -> str:
    return "-" if value == UNLIMITED else str(value)


def listen_text(service: ServiceConfig) -> str:
    """``ADDR:PORT`` for each listen address (``*`` for any), ``unix:PATH``,
    or the mux note."""
    if service.unix is not None:
        return f"unix:{service.unix.path}"
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


def _aligned(rows: Sequence[Sequence[str]], indent: str = "") -> List[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def _count(config: Configuration) -> str:
    text = f"{len(config.services)} service(s) from {len(config.sources)} file(s)"
    if config.failed:
        text += f"; {len(config.failed)} failed"
    if config.disabled:
        text += f"; {len(config.disabled)} disabled"
    return text


def _failed_rows(config: Configuration) -> List[str]:
    if not config.failed:
        return []
    rows = [(printable(f.id), printable(f.name), printable(str(f.location)),
             f"{len(f.problems)} error" + ("s" if len(f.problems) != 1 else ""))
            for f in config.failed]  # fmt: skip
    return ["failed (not started):", *_aligned(rows, "  ")]


def _disabled_rows(config: Configuration) -> List[str]:
    if not config.disabled:
        return []
    rows = [(d.id, d.name, printable(str(d.location)), d.reason.value) for d in config.disabled]
    return ["disabled:", *_aligned(rows, "  ")]


def render_table(config: Configuration) -> str:
    """
    An aligned text table of every service that runs (would run), a count,
    then the failed and the disabled services.  Problems, warnings and notes
    are printed apart (``superd.config.report.report_findings``).
    """
    rows = [_COLUMNS] + [tuple(_row(s)) for s in config.services]
    lines = _aligned(rows)
    lines.append(_count(config))
    if config.ban_store:
        lines.append(f"ban store: {_ban_store(config)}")
    lines += _failed_rows(config) + _disabled_rows(config)
    return "\n".join(lines) + "\n"


def service_summary(service: ServiceConfig) -> Dict[str, Any]:
    """The JSON object describing one service."""
    return {
        "id": service.id,
        "name": service.name,
        "location": printable(str(service.location)),
        "protocol": service.protocol,
        "socket_type": service.socket_type.value,
        "port": service.port,
        "bind": list(service.bind) if service.unix is None else [f"unix:{service.unix.path}"],
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


def finding_json(file: str, line: Optional[int], service: Optional[str],
                 section: Optional[str], attribute: Optional[str], message: str,
                 text: str) -> Dict[str, Any]:
    """The JSON object of one error, warning or note: the same fields for all
    (``service_id`` as in ``superd status`` and the log)."""
    return {"file": printable(file), "line": line or None,
            "service_id": None if service is None else printable(service),
            "section": section,
            "attribute": None if attribute is None else printable(attribute),
            "message": printable(message), "text": printable(text)}


def problem_json(problem: Problem) -> Dict[str, Any]:
    """A ``Problem`` as JSON (``line`` null for the file as a whole)."""
    return finding_json(problem.file, problem.line, problem.service, problem.section,
                        problem.attribute, problem.message, str(problem))


def warning_json(warning: ConfigWarning) -> Dict[str, Any]:
    """A ``ConfigWarning`` as JSON."""
    return finding_json(warning.location.file, warning.location.line, warning.service,
                        warning.section, warning.attribute, warning.message, str(warning))


def note_json(note: ConfigNote) -> Dict[str, Any]:
    """A ``ConfigNote`` as JSON (no line, service or attribute)."""
    return finding_json(note.path, None, None, None, None, note.message, str(note))


def failures_json(config: Configuration) -> Dict[str, Any]:
    """The failed and disabled services, failed files and notes, as JSON."""
    return {
        "failed": [{"id": printable(f.id), "name": printable(f.name),
                    "location": printable(str(f.location)),
                    "problems": [problem_json(p) for p in f.problems]}
                   for f in config.failed],
        "failed_files": [printable(path) for path in config.failed_files],
        "disabled": [{"id": d.id, "name": d.name, "location": printable(str(d.location)),
                      "reason": d.reason.value} for d in config.disabled],
        "notes": [note_json(n) for n in config.notes],
    }  # fmt: skip


def render_json(config: Configuration, problems: Sequence[Problem] = (),
                warnings: Sequence[ConfigWarning] = ()) -> str:
    """
    One JSON document: the services that run (would run), every error
    (``errors``: the configuration's, then ``problems``), the warnings (the
    configuration's after ``warnings``), failed and disabled services, notes
    and files read.  ``ok`` is true when there is no error.
    """
    errors = [*config.problems, *problems]
    document = {
        "ok": not errors,
        "services": [service_summary(s) for s in config.services],
        "errors": [problem_json(p) for p in errors],
        "error_count": error_count(errors),
        "warnings": [warning_json(w) for w in (*warnings, *config.warnings)],
        **failures_json(config),
        "sources": [printable(source) for source in config.sources],
        "ban_store": _ban_store(config),
    }
    return json.dumps(document, indent=2, sort_keys=False) + "\n"
