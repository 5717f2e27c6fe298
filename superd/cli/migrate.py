"""
``superd migrate -c /etc/xinetd.conf``: what changes, service by service,
when superd replaces xinetd, so an operator can switch
with confidence.  ``-c`` defaults to ``/etc/superd`` as for every superd
command, so the xinetd tree is named explicitly.

Each rule looks at one loaded ``ServiceConfig`` and says something only when
it applies to that service: a tree of plain ``wait = no`` external servers
gets the notes about children and logs, not the ones about UDP builtins.  A
few notes concern the files themselves (``name=value``, relative includes)
and are found by reading the source lines the configuration came from.
Every error is reported first (xinetd disables bad services silently), and
the services that would not start are listed with their errors.
"""

from __future__ import annotations

import json
import re
from typing import IO, Callable, Dict, List, Optional, Sequence, Tuple

import attrs

from superd.config.check import failures_json, problem_json, warning_json
from superd.config.model import Configuration, FileLog, ServiceConfig, ServiceKind, SocketType
from superd.config.text import printable

__all__ = ["Note", "explain", "file_notes", "render_json", "render_text", "run_migrate",
           "service_notes"]


@attrs.frozen
class Note:
    """One difference: a short topic word and a sentence for the operator."""

    topic: str
    text: str


Rule = Callable[[ServiceConfig, Configuration], Optional[Note]]
_RULES: List[Rule] = []


def _rule(function: Rule) -> Rule:
    _RULES.append(function)
    return function


@_rule
def _precedence(service: ServiceConfig, config: Configuration) -> Optional[Note]:
    if not service.only_from or not service.no_access:
        return None
    return Note("access", "only_from and no_access both set: the most specific matching entry"
                " wins and a tie denies (documented best match); xinetd denies whenever"
                " both lists match.")


@_rule
def _trailing_zero(service: ServiceConfig, config: Configuration) -> Optional[Note]:
    wide = [s.text for s in (*(service.only_from or ()), *service.no_access)
            if s.implicit_wildcard]
    if not wide:
        return None
    return Note("access", f"{', '.join(wide)}: trailing zeros are a wildcard (xinetd's rule,"
                " honoured: 192.168.0.0 means 192.168.0.0/16); write CIDR to say so.")


@_rule
def _mapped(service: ServiceConfig, config: Configuration) -> Optional[Note]:
    # Only a dual-stack wildcard socket sees IPv4 clients as ::ffff:a.b.c.d.
    wildcard = not service.bind or "::" in service.bind
    ipv4_only = "IPv4" in service.flags and "IPv6" not in service.flags
    if not wildcard or ipv4_only or service.v6only:
        return None
    return Note("logs", "IPv4 clients on the dual-stack socket are written as 10.1.2.3,"
                " not ::ffff:10.1.2.3, in from= and everywhere else (matching, per_source,"
                " bans); adjust log scanners that expect the ::ffff: form.")


@_rule
def _v6only(service: ServiceConfig, config: Configuration) -> Optional[Note]:
    if service.v6only is not False:
        return None
    return Note("listen", "v6only = no is honoured (dual-stack); xinetd sets IPV6_V6ONLY"
                " whenever the attribute is present, even as no.")


@_rule
def _binds(service: ServiceConfig, config: Configuration) -> Optional[Note]:
    if len(service.bind) < 2:
        return None
    return Note("listen", f"listens on each bind address ({' '.join(service.bind)}).")


@_rule
def _start_after_checks(service: ServiceConfig, config: Configuration) -> Optional[Note]:
    if service.kind is not ServiceKind.EXTERNAL or not service.log_on_success:
        return None
    return Note("logs", "START is logged only for a client that passed every check; xinetd"
                " logs START, then FAIL and EXIT, for one refused by only_from or libwrap.")


@_rule
def _exec_failure(service: ServiceConfig, config: Configuration) -> Optional[Note]:
    if service.kind is not ServiceKind.EXTERNAL:
        return None
    return Note("servers", "a server that cannot be executed is logged as FAIL exec with the"
                " reason and EXIT status=127; xinetd's child exits with status 0.")


@_rule
def _process_groups(service: ServiceConfig, config: Configuration) -> Optional[Note]:
    if service.kind is not ServiceKind.EXTERNAL:
        return None
    return Note("servers", "on stop, and when a reload drops the service, the server's whole"
                " process group gets SIGTERM, then SIGKILL after --grace seconds; xinetd"
                " SIGKILLs only the direct child on reload and leaves servers running on"
                " SIGTERM. A reload stops a running server of a kept service only when its"
                " new address lists, hosts files, access_times or lowered instances refuse"
                " the session (xinetd's manual promises this; its code never does it).")


@_rule
def _wait_yes(service: ServiceConfig, config: Configuration) -> Optional[Note]:
    if service.kind is not ServiceKind.EXTERNAL or not service.wait:
        return None
    text = ("a server that exits at once without serving is restarted with a back-off,"
            " not in a tight loop.")
    if service.socket_type is SocketType.DGRAM:
        text += (" Every datagram's source is checked, and no queued datagram is thrown"
                 " away when the server exits (xinetd drains the socket).")
    return Note("servers", text)


@_rule
def _builtin(service: ServiceConfig, config: Configuration) -> Optional[Note]:
    if service.kind is not ServiceKind.BUILTIN:
        return None
    text = "served in-process (xinetd forks a child per connection): START says pid=0."
    if service.name == "chargen":
        text += (" chargen sends BSD inetd's 72-character lines of the 95 printable"
                 " characters" + (", one 74-byte line per datagram (xinetd sends 1024)"
                                  if service.socket_type is SocketType.DGRAM else "") + ".")
    if service.socket_type is SocketType.DGRAM:
        text += (" It never answers source ports below 1024, other UDP builtins' ports, or"
                 " broadcast/multicast sources (no reflection).")
    return Note("builtins", text)


@_rule
def _cps(service: ServiceConfig, config: Configuration) -> Optional[Note]:
    if service.cps.max <= 0:
        return None
    return Note("limits", f"cps {service.cps.max} {service.cps.wait}: while paused superd"
                " keeps listening and refuses each connection (FAIL connections per"
                " second); xinetd closes the listening socket.")


@_rule
def _sensor(service: ServiceConfig, config: Configuration) -> Optional[Note]:
    if service.kind is not ServiceKind.SENSOR or service.deny_time == 0:
        return None
    return Note("access", "SENSOR bans apply to every service, TCP and UDP, are extended by"
                " a repeat hit, and survive reload and restart (kept in the state"
                " directory); a new ban also ends the source's open sessions"
                " (ban_ends_sessions = no: as xinetd); 'superd bans' lists and lifts them.")


@_rule
def _times(service: ServiceConfig, config: Configuration) -> Optional[Note]:
    wraps = [t for t in service.access_times if t.start > t.end or t.end == 1440]
    if not wraps:
        return None
    return Note("access", "access_times uses 24:00 or wraps past midnight: superd honours it;"
                " xinetd cannot express it.")


@_rule
def _userid(service: ServiceConfig, config: Configuration) -> Optional[Note]:
    if "IDONLY" in service.flags:
        return Note("access", "IDONLY clients wait at most 30 s for their identd, then are"
                    " refused with NOID timeout (xinetd waits without limit); other"
                    " connections never wait for them.")
    if "USERID" not in service.log_on_success | service.log_on_failure:
        return None
    return Note("logs", "USERID lookups run beside the served connection with a 30 s"
                " timeout, never delaying it (xinetd looks up in the child before exec).")


@_rule
def _shared_file_log(service: ServiceConfig, config: Configuration) -> Optional[Note]:
    target = service.log_type
    if not isinstance(target, FileLog):
        return None
    sharing = [s.id for s in config.services if s.log_type == target and s.id != service.id]
    if not sharing:
        return None
    return Note("logs", f"{target.path} is shared with {', '.join(sorted(set(sharing)))}: one"
                " descriptor and one size account for the soft/hard limits (xinetd opens it"
                " once per service).")


@_rule
def _redirect(service: ServiceConfig, config: Configuration) -> Optional[Note]:
    if service.kind is not ServiceKind.REDIRECT:
        return None
    return Note("servers", "redirect is relayed in-process with a connect timeout and"
                " half-close both ways (xinetd forks a relay per connection).")


def service_notes(service: ServiceConfig, config: Configuration) -> List[Note]:
    """Every difference that applies to ``service``."""
    return [note for note in (rule(service, config) for rule in _RULES) if note is not None]


# -- the files themselves ---------------------------------------------------------

_GLUED = re.compile(r"^\s*[A-Za-z_]+\s*[-+]?=\S")
_RELATIVE_INCLUDE = re.compile(r"^\s*(include|includedir)\s+([^/\s]\S*)\s*$")


def file_notes(sources: Sequence[str],
               read: Callable[[str], str]) -> List[Tuple[str, Note]]:
    """Differences written in the files: ``FILE:LINE`` and the note."""
    found: List[Tuple[str, Note]] = []
    for path in sources:
        try:
            text = read(path)
        except OSError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if _GLUED.match(line):
                found.append((f"{path}:{number}", Note(
                    "config", "name=value without spaces is accepted; xinetd drops the"
                    " whole service.")))
            match = _RELATIVE_INCLUDE.match(line)
            if match:
                found.append((f"{path}:{number}", Note(
                    "config", f"{match.group(1)} {match.group(2)} is read relative to this"
                    " file's directory (xinetd: its working directory at boot, / after a"
                    " reload).")))
    return found


GENERAL = (
    Note("config", "a configuration error (bad value, repeated attribute, clashing"
         " services) is reported as FILE:LINE and stops only that service, which superd"
         " status lists as failed; the others start, and superd exits 78 only when none"
         " can (--strict or all_or_nothing = yes: any error stops everything). xinetd"
         " disables the service with a shorter message and carries on."),
    Note("operations", "SIGHUP reload applies service by service: a service whose new"
         " block is broken (or whose file cannot be read) keeps running with its previous"
         " definition, and the rest applies (--strict or all_or_nothing = yes: a broken"
         " file keeps the whole running configuration); kept services keep their sockets"
         " and the sessions their new rules still allow."),
)


def _read(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def explain(config: Configuration,
            read: Callable[[str], str] = _read) -> Dict[str, object]:
    """
    The whole report as JSON-ready values: the differences, and every error,
    warning, note and failed or disabled service with the fields of
    ``superd check --json``.
    """
    return {
        "ok": config.ok,
        "general": [attrs.asdict(n) for n in GENERAL],
        "files": [{"location": printable(where), **attrs.asdict(note)}
                  for where, note in file_notes(config.sources, read)],
        "errors": [problem_json(p) for p in config.problems],
        "error_count": config.error_count,
        "warnings": [warning_json(w) for w in config.warnings],
        **failures_json(config),
        "services": [{"id": s.id, "name": s.name, "location": printable(str(s.location)),
                      "kind": s.kind.value,
                      "notes": [attrs.asdict(n) for n in service_notes(s, config)]}
                     for s in config.services],
    }


def render_json(config: Configuration, read: Callable[[str], str] = _read) -> str:
    """``superd migrate --json``."""
    return json.dumps(explain(config, read), indent=2) + "\n"


def render_text(config: Configuration, read: Callable[[str], str] = _read) -> str:
    """``superd migrate``: per service, what superd does differently."""
    lines = ["Everywhere:"]
    lines += [f"  - [{n.topic}] {n.text}" for n in GENERAL]
    lines += [f"  - {printable(where)}: [{n.topic}] {n.text}"
              for where, n in file_notes(config.sources, read)]
    lines += [f"  - warning: {w}" for w in config.warnings]
    lines += [f"  - note: {n}" for n in config.notes]
    for service in config.services:
        lines += ["", f"service {service.id} ({service.kind.value}, {service.location}):"]
        notes = service_notes(service, config) or [Note("same", "nothing changes.")]
        lines += [f"  - [{n.topic}] {n.text}" for n in notes]
    for failed in config.failed:
        where = printable(str(failed.location))
        lines += ["", f"service {printable(failed.id)} (not started, {where}):"]
        lines += [f"  - error: {p}" for p in failed.problems]
    return "\n".join(lines) + "\n"


def run_migrate(path: str, as_json: bool, strict: bool, out: IO[str], err: IO[str]) -> int:
    """
    ``superd migrate -c PATH [--json]``: load, then explain.  Errors come
    first (on stderr, or in the JSON document); exit status 78 if any.
    """
    from superd.config.load import load_configuration
    from superd.core.exits import EX_CONFIG

    config = load_configuration(path, strict=strict, isolate=True)
    if config.problems and not as_json:
        print("superd would not start the services these errors concern (xinetd would"
              " disable or half-apply them):", file=err)
        for problem in config.problems:
            print(f"  {problem}", file=err)
        err.flush()
    out.write(render_json(config) if as_json else render_text(config))
    return EX_CONFIG if config.problems else 0
