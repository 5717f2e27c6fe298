"""
From drafts to validated ``ServiceConfig`` values, and to one ``Configuration``.

Pure apart from the injected ``LoadEnvironment`` (accounts, ``/etc/services``,
host names, executability, the builtin table): this is where defaults are
filled in, required attributes and impossible combinations are refused,
ports, listen addresses and credentials are resolved, and
``disabled``/``enabled`` and duplicate listeners are applied.  Every problem
is collected, with the services it stops (``superd.config.isolation``);
``build_configuration`` returns them with the services that can run.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import attrs

from superd.config.attributes import FILLED_FROM_DEFAULTS, STRICT_TEXT
from superd.config.conflicts import check_conflicts
from superd.config.credentials import resolve_credentials
from superd.config.draft import Draft, Drafts, Reporter, draft_services
from superd.config.environment import LoadEnvironment
from superd.config.errors import ConfigNote, Location, Problem, capped
from superd.config.extensions import check_extensions, is_user_protocol
from superd.config.isolation import Blame
from superd.config.model import (
    CPS,
    UNLIMITED,
    Configuration,
    DisabledReason,
    DisabledService,
    FailedService,
    Redirect,
    ServiceConfig,
    ServiceKind,
    SocketType,
)
from superd.config.parse import RawBlock
from superd.config.sandbox import sandbox_settings
from superd.config.unixsock import check_unix, unix_overrides

__all__ = ["build_configuration", "build_service"]

_PROTOCOL_OF = {SocketType.STREAM: "tcp", SocketType.DGRAM: "udp"}
_SOCKET_OF = {"tcp": SocketType.STREAM, "udp": SocketType.DGRAM}


@attrs.define
class _Checker:
    """One service's draft under validation, with its error reporting."""

    draft: Draft
    env: LoadEnvironment
    report: Reporter
    failed: bool = False

    @property
    def name(self) -> str:
        assert self.draft.name is not None
        return self.draft.name

    def get(self, key: str, default: Any = None) -> Any:
        return self.draft.values.get(key, default)

    def error(self, attribute: Optional[str], message: str) -> None:
        if message.startswith("missing") and attribute in self.draft.invalid:
            self.failed = True  # already reported as invalid where it was written
            return
        location = self.draft.lines.get(attribute or "", self.draft.location)
        self.report.error(location, message, service=self.name, attribute=attribute)
        self.failed = True

    def warn(self, attribute: Optional[str], message: str) -> None:
        location = self.draft.lines.get(attribute or "", self.draft.location)
        self.report.warn(location, message, service=self.name, attribute=attribute)


def _fill_defaults(draft: Draft, defaults: Draft) -> None:
    for key in FILLED_FROM_DEFAULTS & defaults.values.keys():
        if key not in draft.values:
            value = defaults.values[key]
            draft.values[key] = list(value) if isinstance(value, list) else value
            draft.lines[key] = defaults.lines[key]


def _socket(c: _Checker) -> Tuple[Optional[SocketType], Optional[str]]:
    socket_type, protocol = c.get("socket_type"), c.get("protocol")
    if socket_type is None and protocol is None:
        c.error("socket_type", "missing: write socket_type = stream (tcp) or dgram (udp)")
        return None, None
    socket_type = socket_type or _SOCKET_OF[protocol]
    if socket_type not in _PROTOCOL_OF:
        c.error("socket_type", f"socket_type {socket_type.value} is not supported"
                               " (superd serves stream and dgram)")
        return None, None
    protocol = protocol or _PROTOCOL_OF[socket_type]
    if _PROTOCOL_OF[socket_type] != protocol:
        c.error(
            "protocol",
            f"protocol {protocol} does not fit socket_type {socket_type.value} "
            "(stream uses tcp, dgram uses udp)",
        )
        protocol = _PROTOCOL_OF[socket_type]  # go on checking with the consistent one
    return socket_type, protocol


def _kind_checks(c: _Checker, socket_type: SocketType, wait: Optional[bool]) -> None:
    types, flags = c.get("type", frozenset()), c.get("flags", frozenset())
    sensor, redirect = "SENSOR" in flags, c.get("redirect") is not None
    internal, server = "INTERNAL" in types, c.get("server") is not None
    if sensor and not (internal or server):
        c.error("flags", "a SENSOR service needs type = INTERNAL (or a server line)")
    elif redirect:
        _redirect_checks(c, socket_type, wait)
    elif (
        internal
        and not sensor
        and not (types & {"TCPMUX", "TCPMUXPLUS"})
        and not is_user_protocol(c.draft.values, c.draft.invalid)
    ):
        if not c.env.is_builtin(c.name, socket_type):
            c.error(
                "type",
                f"superd has no builtin service {c.name!r} for socket_type "
                f"{socket_type.value} (builtins are chosen by service name)",
            )
    elif not internal and not sensor and not server:
        c.error("server", "missing: write server = /path/to/program (or type = INTERNAL)")
    if socket_type is SocketType.DGRAM and wait is False:
        c.error("wait", "dgram services need wait = yes")
    if (types & {"TCPMUX", "TCPMUXPLUS"}) and socket_type is not SocketType.STREAM:
        c.error("type", "TCPMUX services need socket_type = stream")


def _redirect_checks(c: _Checker, socket_type: SocketType, wait: Optional[bool]) -> None:
    if socket_type is not SocketType.STREAM:
        c.error("redirect", "redirect works only with socket_type = stream")
    if wait is True:
        c.error("redirect", "redirect needs wait = no")
    if "INTERNAL" in c.get("type", frozenset()):
        c.error("redirect", "a redirect service cannot also be type = INTERNAL")


def _flag_checks(c: _Checker, socket_type: SocketType, wait: Optional[bool]) -> None:
    flags, types = c.get("flags", frozenset()), c.get("type", frozenset())
    if "IDONLY" in flags and (wait or socket_type is not SocketType.STREAM):
        # As xinetd, which identifies only accepted connections; an access
        # rule silently not applied deserves a word.
        c.warn("flags", "IDONLY applies only to socket_type = stream, wait = no services;"
                        " clients of this one are not identified")
    if "NAMEINARGS" in flags:
        if not c.get("server_args"):
            c.error("flags", "NAMEINARGS needs server_args (argv[0] comes from it)")
        if "INTERNAL" in types or c.get("redirect") is not None:
            c.error("flags", "NAMEINARGS is not allowed on INTERNAL or redirect services")
    if "INTERCEPT" in flags:
        c.warn("flags", "INTERCEPT is not supported; superd ignores it")
    if "LABELED" in flags:
        c.warn("flags", "LABELED (SELinux) is not supported; superd ignores it")
    if "TRAFFIC" in c.get("log_on_success", ()) and c.get("redirect") is None:
        c.error("log_on_success", "TRAFFIC is only allowed on redirect services")


def _port(c: _Checker, protocol: str) -> Optional[int]:
    types = c.get("type", frozenset())
    written, unlisted = c.get("port"), "UNLISTED" in types
    if types & {"TCPMUX", "TCPMUXPLUS"}:
        return None  # reached through tcpmux; no socket of its own
    if unlisted and written is None:
        c.error("port", "missing: UNLISTED services need port = N")
        return None
    if unlisted:
        return int(written)
    try:
        listed: Optional[int] = c.env.getservbyname(c.name, protocol)
    except OSError:
        listed = None
    if listed is None:
        c.error(
            "port",
            f"{c.name}/{protocol} is not in /etc/services; "
            "write type = UNLISTED and port = N to run it anyway",
        )
    elif written is not None and written != listed:
        c.error(
            "port",
            f"service {c.name} expects port {listed}, not {written} (/etc/services); "
            "add UNLISTED to type to use another port",
        )
    return listed


def _families(flags: frozenset[str]) -> Tuple[int, ...]:
    if "IPv4" in flags and "IPv6" not in flags:
        return (4,)
    if "IPv6" in flags and "IPv4" not in flags:
        return (6,)
    return (4, 6)


def _bind(c: _Checker) -> Tuple[str, ...]:
    families = _families(c.get("flags", frozenset()))
    found: List[str] = []
    for word in c.get("bind", ()):
        for literal in _bind_word(c, word, families):
            if literal not in found:
                found.append(literal)
    return tuple(found)


def _bind_word(c: _Checker, word: str, families: Tuple[int, ...]) -> List[str]:
    try:
        address = ipaddress.ip_address(word)
    except ValueError:
        return _resolve_bind(c, word, families)
    if address.version not in families:
        wanted = f"IPv{families[0]}"
        c.error("bind", f"{word} is an IPv{address.version} address but flags has {wanted}")
    return [str(address)]


def _resolve_bind(c: _Checker, name: str, families: Tuple[int, ...]) -> List[str]:
    try:
        literals = [ipaddress.ip_address(a) for a in c.env.resolve_host(name)]
    except (OSError, ValueError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        c.error("bind", f"cannot resolve {name!r}: {reason}")
        return []
    chosen = [str(a) for a in literals if a.version in families]
    if not chosen:
        wanted = " or ".join(f"IPv{f}" for f in families)
        c.error("bind", f"{name!r} has no {wanted} address")
    return chosen


def _redirect(c: _Checker) -> Optional[Redirect]:
    written = c.get("redirect")
    if written is None:
        return None
    host, port_word = written
    port, address = _redirect_port(c, port_word), _redirect_host(c, host)
    if port is None or address is None:
        return None
    return Redirect(address, port)


def _redirect_port(c: _Checker, word: str) -> Optional[int]:
    if word.isdigit():
        return int(word)
    try:
        return c.env.getservbyname(word, "tcp")
    except OSError:
        c.error("redirect", f"{word!r} is not a tcp service in /etc/services")
        return None


def _redirect_host(c: _Checker, host: str) -> Optional[str]:
    """An IP literal as written, or the first address a host name resolves to."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        literals = c.env.resolve_host(host)
    except OSError as error:
        c.error("redirect", f"cannot resolve {host!r}: {error.strerror or error}")
        return None
    if not literals:
        c.error("redirect", f"cannot resolve {host!r}")
        return None
    return str(ipaddress.ip_address(literals[0]))


def _server(c: _Checker) -> None:
    server = c.get("server")
    if server is not None and not c.env.is_executable(server):
        c.error("server", f"{server} is not an executable file")


def _kind(c: _Checker) -> ServiceKind:
    types, flags = c.get("type", frozenset()), c.get("flags", frozenset())
    if "SENSOR" in flags:
        return ServiceKind.SENSOR
    if c.get("redirect") is not None:
        return ServiceKind.REDIRECT
    if types & {"TCPMUX", "TCPMUXPLUS"}:
        return ServiceKind.TCPMUX_CLIENT
    return ServiceKind.BUILTIN if "INTERNAL" in types else ServiceKind.EXTERNAL


def build_service(draft: Draft, defaults: Draft, env: LoadEnvironment,
                  report: Reporter) -> Optional[ServiceConfig]:  # fmt: skip
    """Validate one service draft; None (with errors reported) if it is unusable."""
    _fill_defaults(draft, defaults)
    c = _Checker(draft, env, report)
    socket_type, protocol = _socket(c)
    wait = c.get("wait")
    if wait is None:
        c.error("wait", "missing: write wait = no (one server per connection) or wait = yes")
    if socket_type is None or protocol is None:
        return None
    if c.draft.invalid & {"type", "flags", "redirect"}:
        return None  # what kind of service this is is unknown: later checks would mislead
    _kind_checks(c, socket_type, wait)
    _flag_checks(c, socket_type, wait)
    unix = check_unix(c, socket_type)
    port = _port(c, protocol) if unix is None else None
    bind = _bind(c) if unix is None else ()
    credentials = resolve_credentials(c, _kind(c))
    _server(c)
    redirect = _redirect(c)
    extensions = check_extensions(c.draft.values, c.draft.extra, c.env.read_file, c.error,
                                  c.warn, c.draft.invalid)
    sandbox = sandbox_settings(c.draft.values, _kind(c), c.error)
    if c.failed or wait is None:
        return None
    config = _service_config(c, socket_type, protocol, wait, port, bind, credentials, redirect)
    overrides = {} if unix is None else unix_overrides(unix)
    return attrs.evolve(config, extensions=extensions, sandbox=sandbox, **overrides)


def _service_config(c: _Checker, socket_type: SocketType, protocol: str, wait: bool,
                    port: Optional[int], bind: Tuple[str, ...], credentials: Any,
                    redirect: Optional[Redirect]) -> ServiceConfig:  # fmt: skip
    get = c.get
    only_from = get("only_from")
    passenv = get("passenv")
    return ServiceConfig(
        name=c.name, id=get("id", c.name), location=c.draft.location,
        socket_type=socket_type, protocol=protocol, wait=wait, port=port, bind=bind,
        v6only=get("v6only"), type=get("type", frozenset()), flags=get("flags", frozenset()),
        server=get("server"), server_args=tuple(get("server_args", ())),
        credentials=credentials, umask=get("umask"), nice=get("nice"),
        rlimits={k[len("rlimit_"):]: val for k, val in c.draft.values.items()
                 if k.startswith("rlimit_")},
        env=tuple(get("env", ())), passenv=None if passenv is None else tuple(passenv),
        instances=get("instances", UNLIMITED), per_source=get("per_source", UNLIMITED),
        v6_source_prefix=get("v6_source_prefix", 128),
        cps=get("cps", CPS()), max_load=get("max_load"),
        access_times=tuple(get("access_times", ())),
        only_from=None if only_from is None else tuple(only_from),
        no_access=tuple(get("no_access", ())), log_type=get("log_type"),
        log_on_success=frozenset(get("log_on_success", ())),
        log_on_failure=frozenset(get("log_on_failure", ())),
        banner=get("banner"), banner_success=get("banner_success"),
        banner_fail=get("banner_fail"), redirect=redirect, deny_time=get("deny_time", 0),
        libwrap=get("libwrap"), extra=dict(c.draft.extra), lines=dict(c.draft.lines),
    )  # fmt: skip


def _draft_id(draft: Draft) -> str:
    return str(draft.values.get("id", draft.name))


def _selected(drafts: Drafts, report: Reporter) -> Tuple[List[Draft], List[DisabledService]]:
    """Apply ``disabled = ...`` and ``enabled = ...`` from the defaults: the
    drafts that stay, and every service block switched off."""
    defaults = drafts.defaults
    ids = {_draft_id(d) for d in drafts.services}
    disabled = set(defaults.values.get("disabled", ()))
    enabled = defaults.values.get("enabled")
    for key, listed in (("disabled", disabled), ("enabled", set(enabled or ()))):
        for unknown in sorted(listed - ids):
            report.warn(defaults.lines[key], f"no service has id {unknown!r}",
                        section="defaults", attribute=key)  # fmt: skip
    kept: List[Draft] = []
    off = [DisabledService(str(b.name), _raw_id(b), b.location, DisabledReason.DISABLE)
           for b in drafts.switched_off]
    for draft in drafts.services:
        reason = None
        if _draft_id(draft) in disabled:
            reason = DisabledReason.DISABLED
        elif enabled is not None and _draft_id(draft) not in enabled:
            reason = DisabledReason.NOT_ENABLED
        if reason is None:
            kept.append(draft)
        else:
            off.append(DisabledService(str(draft.name), _draft_id(draft), draft.location, reason))
    return kept, sorted(off, key=lambda d: drafts.order[d.location])


def _raw_id(block: RawBlock) -> str:
    """The ``id`` a block switched off by ``disable = yes`` names, if it names one."""
    ids = [a.values for a in block.attributes if a.name == "id" and len(a.values) == 1]
    return ids[0][0] if len(ids) == 1 else str(block.name)


def _reading_order(sources: Sequence[str]) -> Callable[[str, int], Tuple[int, int]]:
    """A sort key: files in the order they were read, then lines."""
    rank: Dict[str, int] = {}
    for source in sources:
        rank.setdefault(source, len(rank))
    return lambda file, line: (rank.get(file, len(rank)), line)


def _promote_warnings(report: Reporter) -> None:
    """``--strict``: every warning is an error of the block it was found in."""
    for warning, blame in zip(report.warnings, report.warning_blames, strict=True):
        location = warning.location
        message = STRICT_TEXT.get(warning.message, warning.message)
        report.add(Problem(location.file, location.line, warning.service, warning.attribute,
                           message, warning.section), blame)  # fmt: skip
    report.warnings.clear()
    report.warning_blames.clear()


def _failed(draft: Draft, problems: Tuple[Problem, ...]) -> FailedService:
    if not problems:  # cannot happen: a block that does not build said why
        problems = (Problem(draft.location.file, draft.location.line, draft.name, None,
                            "not started"),)  # fmt: skip
    return FailedService(str(draft.name), _draft_id(draft), draft.location, problems)


def _run(built: List[Tuple[Draft, Optional[ServiceConfig]]], report: Reporter,
         isolate: bool) -> Tuple[List[ServiceConfig], List[FailedService]]:
    """The services nothing stops, and the failed ones with their problems."""
    stopping = report.blamed.stopping
    # Isolated, a block that will not run takes no address from one that
    # will; all or nothing, every clash between usable blocks is an error.
    check_conflicts([s for d, s in built
                     if s is not None and not (isolate and stopping(d.location))], report)
    services, failed = [], []
    for draft, service in built:
        problems = stopping(draft.location)
        if service is not None and not problems:
            services.append(service)
        else:
            failed.append(_failed(draft, problems))
    return services, failed


def build_configuration(
    blocks: Sequence[RawBlock],
    env: LoadEnvironment,
    *,
    strict: bool = False,
    problems: Sequence[Tuple[Problem, Blame]] = (),
    sources: Sequence[str] = (),
    notes: Sequence[ConfigNote] = (),
    recovered: Sequence[Tuple[Location, str]] = (),
    isolate: bool = True,
) -> Configuration:
    """
    Every enabled service of ``blocks`` (in reading order) that nothing is
    wrong with, validated; the others in ``failed``, every error in
    ``problems`` (at most ``MAX_FILE_ERRORS`` per file).

    ``problems`` are earlier ones (syntax outside blocks, unreadable files)
    with what each stops; ``recovered`` the services of files that could not
    be parsed, known only by header.  With ``strict``, warnings are errors.
    Without ``isolate`` (the result is refused if anything is wrong), a
    clash of listeners is reported even when one of the two blocks is
    stopped by another problem.
    """
    report = Reporter()
    for problem, blame in problems:
        report.add(problem, blame)
    drafts = draft_services(blocks, report)
    selected, disabled = _selected(drafts, report)
    built: List[Tuple[Draft, Optional[ServiceConfig]]] = []
    for draft in selected:
        with report.blaming(Blame(block=draft.location)):
            # An incomplete block's lines were checked one by one; checking
            # it as a whole would report what its unread lines may hold.
            service = build_service(draft, drafts.defaults, env, report) \
                if draft.complete else None
        built.append((draft, service))
    if strict:
        _promote_warnings(report)
    services, failed = _run(built, report, isolate)
    failed += [FailedService(name, name, at, report.blamed.stopping(at))
               for at, name in recovered]
    order = _reading_order(sources)
    return Configuration(
        tuple(services), tuple(report.warnings), tuple(sources),
        ban_store=drafts.defaults.values.get("ban_store"),
        ban_store_password_file=drafts.defaults.values.get("ban_store_password_file"),
        ban_ends_sessions=drafts.defaults.values.get("ban_ends_sessions", True),
        all_or_nothing=drafts.defaults.values.get("all_or_nothing", False),
        problems=capped(sorted(report.errors, key=lambda p: order(p.file, p.line))),
        failed=tuple(sorted(failed, key=lambda f: order(f.location.file, f.location.line))),
        failed_files=report.blamed.failed_paths(),
        disabled=tuple(disabled), notes=tuple(notes),
        defaults_failed=bool(report.blamed.everything),
    )
