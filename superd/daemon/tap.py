"""
The twistd entry point: ``twistd -n --pidfile= superd -c PATH``.

``Options`` (``superd.daemon.options``) parses the command line and loads
the configuration.  ``makeService`` only assembles: the ``Runtime`` (this is
the one module in superd that imports the global reactor), the optional
collaborators, and the service tree from ``superd.daemon.service``.  A
service with configuration errors, or whose handler cannot be built, does
not run; the others do (its errors on stderr and in the log).  Exit status
78 (EX_CONFIG), every problem on stderr, when no service can run, or on
any error under ``--strict`` or ``all_or_nothing = yes``.
"""

from __future__ import annotations

import os
import sys
from typing import IO, Any, Callable, NoReturn, cast

from twisted.application.service import IService

from superd.config.errors import ConfigError
from superd.config.model import Configuration
from superd.config.report import error_summary, report_config_error
from superd.core.exits import EX_CANTCREAT, EX_CONFIG, EX_OSERR
from superd.core.runtime import IReactor, Runtime
from superd.daemon import heap
from superd.daemon.isolation import all_or_nothing, refuses
from superd.daemon.operations import Operations, thread_loader
from superd.daemon.options import Options
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


def report_failures(configuration: Configuration, stderr: IO[str]) -> None:
    """Print the errors of a configuration that starts without some services."""
    if configuration.ok:
        return
    for problem in configuration.problems:
        print(problem, file=stderr)
    failed, started = len(configuration.failed), len(configuration.services)
    print(f"superd: {error_summary(configuration.problems)};"
          f" {failed} service{'' if failed == 1 else 's'} not started,"
          f" {started} started", file=stderr)


def assemble(configuration: Configuration, runtime: Runtime, stderr: IO[str], *,
             on_bind_error: Callable[[BindError], NoReturn] = _exit_on_bind_error,
             open_parts: Callable[[Runtime], Parts] = open_parts,
             strict: bool = False) -> SuperdService:
    """
    The service tree for ``configuration``, with the daemon's parts built
    from ``runtime`` (after the state directory they keep files in exists).
    A service whose handler cannot be built fails alone, unless ``strict``
    or the configuration asks for all or nothing; exits 78 when nothing can
    run.
    """
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
        top = build_service(configuration, parts,
                            on_bind_error=on_bind_error, settle_heap=heap.settle,
                            isolate=not all_or_nothing(strict, configuration))
    except ConfigError as e:
        report_config_error(e, stderr)
        raise SystemExit(EX_CONFIG) from None
    if refuses(top.configuration, strict):
        report_config_error(ConfigError(top.configuration.problems), stderr)
        raise SystemExit(EX_CONFIG)
    report_failures(top.configuration, stderr)
    return top


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
    strict = bool(options["strict"])
    top = assemble(options.configuration, runtime, options.stderr, on_bind_error=on_bind_error,
                   strict=strict)
    # SIGHUP reload, SIGUSR1 status and the control socket.
    operations = Operations(top, thread_loader(runtime.reactor, options["config"], strict),
                            strict=strict, config_path=os.path.abspath(options["config"]))
    top.operations = operations
    operations.setServiceParent(top)
    if options["metrics"]:
        from superd.daemon.metrics import MetricsService
        MetricsService(top.parts.access, options["metrics"],
                       running=lambda: top.isolated).setServiceParent(top)
    store = options.ban_store_settings
    if store is not None:
        from superd.fleet.sync import SharedBans
        SharedBans(top.parts.access.bans, store.target, runtime.reactor,
                   ca_pem=store.ca_pem).setServiceParent(top)
    route_connection_events(options)
    reactor.callWhenRunning(warn_unclaimed)  # every service listens by then
    return top
