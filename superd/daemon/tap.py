"""
The twistd entry point: ``twistd -n --pidfile= superd -c PATH``.

``Options`` parses the command line and loads the configuration, refusing a
bad one with every problem on stderr and exit status 78 (EX_CONFIG) --
explicitly, because some twistd versions exit 0 after a usage error.
``makeService`` only assembles: the ``Runtime`` (this is the one module in
superd that imports the global reactor), the optional collaborators, and the
service tree from ``superd.daemon.service``.
"""

from __future__ import annotations

import os
import sys
from typing import IO, Any, Callable, NoReturn, Optional, cast

from twisted.application.service import IService
from twisted.python import usage

import superd
from superd.config.errors import ConfigError
from superd.config.model import Configuration
from superd.config.report import report_config_error, report_warnings
from superd.core.exits import EX_CANTCREAT, EX_CONFIG, EX_NOINPUT, EX_OSERR, EX_USAGE
from superd.core.paths import default_state_dir
from superd.core.runtime import IReactor, Runtime, RuntimeOptions
from superd.daemon import heap
from superd.daemon.operations import Operations, thread_loader
from superd.daemon.parts import Parts, open_parts
from superd.daemon.service import SuperdService, build_service
from superd.net.sockets import BindError
from superd.proc.cgroups import CgroupError

__all__ = [
    "CannotListen",
    "Options",
    "assemble",
    "makeService",
    "running_as_daemon",
]

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


def _cgroup(text: str) -> str:
    if text not in ("auto", "none") and not text.startswith("/"):
        raise ValueError(f"expected auto, none or an absolute path, not {text!r}")
    return text


def _redis_url(text: str) -> str:
    from superd.config.storeurl import parse_redis_url

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
        ["ident-port", None, 113, "Port queried for RFC 1413 USERID.", _port],
        ["backlog", None, 1024, "Listen backlog of stream services.", _positive_int],
        ["cgroup", None, "auto",
         "Where each service's cgroup v2 goes (it holds every process its servers "
         "start): a directory of the cgroup2 file system, 'auto' (superd's own "
         "cgroup if delegated to it, e.g. systemd's Delegate=yes) or 'none' "
         "(process groups only).", _cgroup],
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
            ident_port=self["ident-port"], backlog=self["backlog"], cgroup=self["cgroup"],
        )


def _exit_on_bind_error(error: BindError) -> NoReturn:
    # twistd has redirected sys.stderr into the log by now; the person (or
    # supervisor) starting superd must see this on the real stderr too.
    stream = sys.__stderr__ or sys.stderr
    print(f"superd: {error}", file=stream, flush=True)
    raise SystemExit(EX_OSERR)


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
             open_parts: Callable[[Runtime], Parts] = open_parts,
             ) -> SuperdService:
    """The service tree for ``configuration``, with the daemon's parts built
    from ``runtime`` (after the state directory they keep files in exists)."""
    try:
        os.makedirs(runtime.options.state_dir, mode=0o700, exist_ok=True)
    except OSError as e:
        print(f"superd: cannot create state directory {runtime.options.state_dir}: "
              f"{e.strerror or e}", file=stderr)
        raise SystemExit(EX_CANTCREAT) from None
    try:
        parts = open_parts(runtime)
    except CgroupError as e:
        print(f"superd: {e}", file=stderr)
        raise SystemExit(EX_CONFIG) from None
    try:
        return build_service(configuration, parts,
                             on_bind_error=on_bind_error, settle_heap=heap.settle)
    except ConfigError as e:
        report_config_error(e, stderr)
        raise SystemExit(EX_CONFIG) from None


def route_connection_events(options: Options) -> None:
    """``--log-connections``: per-connection START/EXIT to the main log too."""
    if options["log-connections"]:
        from superd.observe.events import connection_events
        connection_events.send_to_main_log()


def makeService(options: Options) -> IService:
    """Assemble the daemon for twistd (the global reactor is imported only here)."""
    # Sockets passed by systemd, read before anything imports
    # twisted.internet.endpoints (which would consume LISTEN_FDS).
    from superd.net.activation import capture, warn_unclaimed
    capture()
    from twisted.internet import reactor

    assert options.configuration is not None, "postOptions loads the configuration"
    # The global reactor provides every interface superd uses (IReactor).
    runtime = Runtime(reactor=cast(IReactor, reactor), options=options.runtime_options())
    on_bind_error = _report_to_twistd if running_as_daemon(options) else _exit_on_bind_error
    top = assemble(options.configuration, runtime, options.stderr, on_bind_error=on_bind_error)
    # SIGHUP reload, SIGUSR1 status and the control socket.
    operations = Operations(top, thread_loader(runtime.reactor, options["config"],
                                               options["strict"]))
    top.operations = operations
    operations.setServiceParent(top)
    if options["metrics"]:
        from superd.daemon.metrics import MetricsService
        MetricsService(top.parts.access, options["metrics"]).setServiceParent(top)
    ban_store = options.ban_store()
    if ban_store:
        from superd.config.storeurl import parse_redis_url
        from superd.fleet.sync import SharedBans
        SharedBans(top.parts.access.bans, parse_redis_url(ban_store),
                   runtime.reactor).setServiceParent(top)
    route_connection_events(options)
    reactor.callWhenRunning(warn_unclaimed)  # every service listens by then
    return top
