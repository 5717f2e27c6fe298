"""
The twistd entry point: ``twistd -n --pidfile= superd -c PATH``.

``Options`` parses the command line and loads the configuration, refusing a
bad one with every problem on stderr and exit status 78 (EX_CONFIG) --
explicitly, because some twistd versions exit 0 after a usage error.
``makeService`` only assembles: the ``Runtime`` (this is the one module in
superd that imports the global reactor), the optional collaborators, and the
service tree from ``superd.service``.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import IO, Any, Callable, Mapping, NoReturn, Optional

from twisted.application.service import IService
from twisted.python import usage

import superd
from superd import heap
from superd.cli import report_config_error, report_warnings
from superd.config.errors import EX_CONFIG, ConfigError
from superd.config.model import Configuration
from superd.listen import BindError
from superd.operations import attach as attach_operations
from superd.runtime import Runtime, RuntimeOptions
from superd.service import SuperdService, build_service

__all__ = [
    "EX_BIND",
    "EX_USAGE",
    "CannotListen",
    "Options",
    "assemble",
    "default_state_dir",
    "makeService",
    "running_as_daemon",
]

#: sysexits.h: bad command line.
EX_USAGE = 64
#: sysexits.h: cannot read the configuration at all.
EX_NOINPUT = 66
#: sysexits.h EX_OSERR: a listening socket could not be bound (port taken,
#: address missing, permission): retrying later may succeed, unlike 78.
EX_BIND = 71
#: sysexits.h: the state directory cannot be created.
EX_CANTCREAT = 73


def default_state_dir(euid: int, environ: Mapping[str, str]) -> str:
    """``/var/lib/superd`` for root, else the XDG state directory's ``superd``."""
    if euid == 0:
        return "/var/lib/superd"
    base = environ.get("XDG_STATE_HOME") or os.path.join(
        environ.get("HOME") or os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "superd")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"must be at least 1, not {value}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 3600:
        raise ValueError(f"must be between 0 and 3600 seconds, not {text}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise ValueError(f"must be a port number 1-65535, not {value}")
    return value


def _syslog_ident(text: str) -> str:
    # Log scanners parse "IDENT[PID]: ", so the ident must not contain
    # what would end it early.
    if not text or len(text) > 64 or not text.isprintable() or any(
            c.isspace() or c in ":[]" for c in text):
        raise ValueError(f"must be up to 64 printable characters without spaces, "
                         f"':' or brackets, not {text!r}")
    return text


def _redis_url(text: str) -> str:
    from superd.fleet.url import parse_redis_url

    parse_redis_url(text)  # ValueError says what is wrong
    return text


class Options(usage.Options):
    """``twistd superd`` options."""

    synopsis = "-c PATH [options]"
    longdesc = (
        "Run the services described by xinetd-syntax configuration. PATH is a "
        "directory (every file read as by includedir) or a file such as "
        "/etc/xinetd.conf."
    )
    optFlags = [
        ["strict", None, "Refuse unknown attributes instead of warning about them."],
        ["log-connections", None,
         "Also write each connection's START and EXIT to the main log (the "
         "JSON logger always does; service logs never need this)."],
    ]
    optParameters = [
        ["config", "c", None, "Configuration directory or file (required)."],
        ["state-dir", None, None,
         "Persistent state (bans). Default: /var/lib/superd as root, "
         "else $XDG_STATE_HOME/superd or ~/.local/state/superd."],
        ["limit", None, None, "Cap on running server processes of all services.",
         _positive_int],
        ["grace", None, 5.0, "Seconds between SIGTERM and SIGKILL for children at stop.",
         _seconds],
        ["hosts-allow", None, "/etc/hosts.allow", "hosts_access(5) allow table."],
        ["hosts-deny", None, "/etc/hosts.deny", "hosts_access(5) deny table."],
        ["syslog-ident", None, "superd",
         "Syslog identity of the log_type = SYSLOG lines; xinetd keeps log "
         "scanners keyed on xinetd[PID] (fail2ban, logwatch, logcheck) working.",
         _syslog_ident],
        ["ident-port", None, 113, "Port queried for RFC 1413 USERID.", _port],
        ["backlog", None, 1024, "Listen backlog of stream services.", _positive_int],
        ["metrics", None, None,
         "Serve Prometheus /metrics on this Twisted endpoint, e.g. "
         "tcp:9101:interface=127.0.0.1 (default: no metrics)."],
        ["ban-store", None, None,
         "Share SENSOR bans with other superd hosts through Redis: "
         "redis://[:password@]host[:port][/db]; overrides ban_store in the "
         "configuration's defaults (default: this host only).", _redis_url],
    ]

    def __init__(self) -> None:
        super().__init__()
        self.configuration: Optional[Configuration] = None
        #: Where problems are reported (a StringIO in tests).
        self.stderr: IO[str] = sys.stderr

    def opt_version(self) -> NoReturn:
        """Print superd's version and exit."""
        print(f"superd {superd.__version__}")
        raise SystemExit(0)

    def _fail(self, message: str, status: int) -> NoReturn:
        print(f"superd: {message}", file=self.stderr)
        raise SystemExit(status)

    def postOptions(self) -> None:
        if not self["config"]:
            self._fail("-c/--config PATH is required (a directory or a file)", EX_USAGE)
        if self["state-dir"] is None:
            self["state-dir"] = default_state_dir(os.geteuid(), os.environ)
        self.configuration = self._load(self["config"])

    def _load(self, path: str) -> Configuration:
        # Imported here so that `twistd --help` stays cheap.
        from superd.config.load import load_configuration

        try:
            configuration = load_configuration(path, strict=self["strict"])
        except ConfigError as e:
            report_config_error(e, self.stderr)
            raise SystemExit(EX_CONFIG) from None
        except OSError as e:
            self._fail(f"cannot read {path}: {e.strerror or e}", EX_NOINPUT)
        report_warnings(configuration.warnings, self.stderr)
        return configuration

    def ban_store(self) -> Optional[str]:
        """The shared ban store's URL: ``--ban-store``, else the file's ``ban_store``."""
        if self["ban-store"]:
            return str(self["ban-store"])
        return self.configuration.ban_store if self.configuration else None

    def runtime_options(self) -> RuntimeOptions:
        """The daemon-wide settings given on the command line."""
        return RuntimeOptions(
            state_dir=self["state-dir"], limit=self["limit"], grace=self["grace"],
            hosts_allow=self["hosts-allow"], hosts_deny=self["hosts-deny"],
            ident_port=self["ident-port"], backlog=self["backlog"],
            syslog_ident=self["syslog-ident"],
        )


def _attach_optional(module: str, runtime: Runtime) -> bool:
    """Call ``module.attach(runtime)`` if this build has the module."""
    try:
        collaborator: Any = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name is None or not module.startswith(e.name):
            raise
        return False
    collaborator.attach(runtime)
    return True


def _exit_on_bind_error(error: BindError) -> NoReturn:
    # twistd has redirected sys.stderr into the log by now; the person (or
    # supervisor) starting superd must see this on the real stderr too.
    stream = sys.__stderr__ or sys.stderr
    print(f"superd: {error}", file=stream, flush=True)
    raise SystemExit(EX_BIND)


class CannotListen(Exception):
    """Startup failed on a socket (daemon mode: twistd's parent prints this)."""


def _report_to_twistd(error: BindError) -> NoReturn:
    # Daemonized, the real stderr is gone and twistd's parent process waits
    # on a status pipe that only an exception writes to (a SystemExit here
    # would leave it waiting forever): raise, and twistd prints the reason.
    # It shows only ~100 bytes, so the most useful part comes first; the
    # full message, with file and line, is in the log.
    address = error.address
    raise CannotListen(f"{address.service_id} {address.describe()}: {error.reason}") from error


def running_as_daemon(options: Options) -> bool:
    """True when twistd will daemonize (no ``-n``): its options are our parent."""
    parent: Any = getattr(options, "parent", None)
    return parent is not None and not parent.get("nodaemon", True)


def assemble(configuration: Configuration, runtime: Runtime, stderr: IO[str], *,
             on_bind_error: Callable[[BindError], NoReturn] = _exit_on_bind_error,
             ) -> SuperdService:
    """The service tree for ``configuration`` with ``runtime``'s collaborators."""
    try:
        os.makedirs(runtime.options.state_dir, mode=0o700, exist_ok=True)
    except OSError as e:
        print(f"superd: cannot create state directory {runtime.options.state_dir}: "
              f"{e.strerror or e}", file=stderr)
        raise SystemExit(EX_CANTCREAT) from None
    _attach_optional("superd.access.setup", runtime)
    _attach_optional("superd.spawn.table", runtime)
    try:
        return build_service(configuration, runtime, on_bind_error=on_bind_error,
                             settle_heap=heap.settle)
    except ConfigError as e:
        report_config_error(e, stderr)
        raise SystemExit(EX_CONFIG) from None


def route_connection_events(options: Options) -> None:
    """``--log-connections``: per-connection START/EXIT to the main log too."""
    if options["log-connections"]:
        from superd.events import connection_events
        connection_events.send_to_main_log()


def makeService(options: Options) -> IService:
    """Assemble the daemon for twistd (the global reactor is imported only here)."""
    # Sockets passed by systemd, read before anything imports
    # twisted.internet.endpoints (which would consume LISTEN_FDS).
    from superd.activation import capture, warn_unclaimed
    capture()
    from twisted.internet import reactor

    assert options.configuration is not None, "postOptions loads the configuration"
    runtime = Runtime(reactor=reactor, options=options.runtime_options())
    on_bind_error = _report_to_twistd if running_as_daemon(options) else _exit_on_bind_error
    top = assemble(options.configuration, runtime, options.stderr, on_bind_error=on_bind_error)
    # SIGHUP reload, SIGUSR1 status and the control socket (superd.operations).
    attach_operations(top, options["config"], strict=options["strict"])
    if options["metrics"]:
        from superd.metrics import MetricsService
        MetricsService(runtime, options["metrics"]).setServiceParent(top)
    ban_store = options.ban_store()
    if ban_store:
        from superd.fleet import attach as attach_fleet
        attach_fleet(top, runtime, ban_store)
    route_connection_events(options)
    reactor.callWhenRunning(warn_unclaimed)  # every service listens by then
    return top
