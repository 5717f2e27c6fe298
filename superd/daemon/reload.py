"""
SIGHUP: reload the configuration, service by service.

The new configuration is parsed completely first (off the reactor: it reads
files, accounts and ``/etc/services``).  A service whose new block has
errors (or whose handler cannot be built) keeps running with its previous
definition, and so does every running service of a file that could not be
read or parsed as a whole (``superd.daemon.isolation.keep_previous``); the
rest of the reload applies.  Every error is logged with its file and line,
and the result (what failed, what was kept and why) is kept for ``superd
status``.  With ``--strict`` or ``all_or_nothing = yes`` any error keeps the
whole running configuration instead, as does a file set that cannot be read
at all, a port that cannot be bound, or an internal error.

What runs then is compared with the running configuration service by service, by
identity (``service_key``: id, name, socket type, protocol, wait, port, kind,
bind and the options of the listening socket) -- xinetd's rule, plus bind:

* unchanged services are not touched: same sockets, same factories;
* changed services (same identity, other settings) keep their listening
  sockets: each moves to the listener built from the new settings
  (``IListener.adopt``), so there is no instant in which a connection is
  refused.  Counters, cps state and live sessions are kept by the access
  state, keyed by block, so they survive;
* added services are bound before anything is torn down, and a bind that
  fails (a port now taken) undoes every bind of this reload and keeps the
  old configuration;
* dropped services stop listening, and if no service of that id remains,
  their children's process groups get SIGTERM, then SIGKILL after the grace
  period.  A changed ``bind`` is a drop plus an add; when the new socket needs
  a port the dropped one holds, that one is closed first and reopened if the
  reload then fails;
* then the live sessions of the services that remain are re-checked against
  their new rules (``superd.access.recheck``): a session whose source the new
  address lists, hosts files or ``access_times`` refuse is ended, and so are
  the newest above a lowered ``instances`` -- what xinetd(8) promises for
  its hard reconfiguration and its code never does.

Bans live in the runtime (and SQLite) and are never touched.  Neither is the
shared ban store: a changed ``ban_store`` is logged as needing a restart.
"""

from __future__ import annotations

from typing import Callable, Dict, FrozenSet, Optional, Tuple

import attrs
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from superd.access.recheck import recheck_sessions
from superd.config.errors import ConfigError
from superd.config.model import Configuration
from superd.daemon.findings import log_failed, log_problems, log_warnings
from superd.daemon.isolation import (
    Isolated,
    all_or_nothing,
    failed_json,
    keep_previous,
    kept_json,
    without,
)
from superd.daemon.plan import ReloadPlan, plan_reload
from superd.daemon.service import SuperdService
from superd.daemon.transition import Transition
from superd.observe import events

__all__ = [
    "ReloadResult",
    "Reloader",
    "problems_of",
    "warn_ban_store_change",
]

_log = Logger(namespace="superd.reload")

@attrs.frozen
class ReloadResult:
    """How the last reload ended, for the log and ``superd status``."""

    #: Wall-clock time (seconds since the epoch) when it ended.
    time: float
    #: True when the new configuration runs as written, without an error.
    ok: bool
    errors: Tuple[str, ...] = ()
    new: int = 0
    old: int = 0
    dropped: int = 0
    changed: int = 0
    #: Seconds from the signal to the new configuration running.
    duration: float = 0.0
    #: True when the new configuration runs except its failed services
    #: (``ok`` is False: there were errors).
    partial: bool = False
    #: What runs after a partial reload: the failed services are
    #: ``configuration.failed``; ``kept`` the previous definitions still running.
    isolated: Optional[Isolated] = None

    @property
    def applied(self) -> bool:
        """True when the new configuration (or its good part) runs."""
        return self.ok or self.partial

    def as_dict(self) -> Dict[str, object]:
        """The result as JSON-ready values."""
        isolated = self.isolated
        values = attrs.asdict(self, recurse=False, filter=lambda a, _: a.name != "isolated")
        return values | {
            "errors": list(self.errors),
            "failed": [] if isolated is None
            else failed_json(isolated.configuration, isolated.kept),
            "failed_count": 0 if isolated is None else len(isolated.configuration.failed),
            "kept": [] if isolated is None else [kept_json(k) for k in isolated.kept],
        }


def _store_text(url: Optional[str]) -> str:
    # Never log the password a URL may carry.
    from superd.config.storeurl import parse_redis_url

    return parse_redis_url(url).describe() if url else "none"


def warn_ban_store_change(old: Configuration, new: Configuration) -> bool:
    """
    Log that a changed ``ban_store`` needs a restart; True if it changed.

    The shared ban store is not switched live: its subscription, reconnection
    and reconciliation belong to the store the daemon started with, and
    ``--ban-store`` (which wins over the file) cannot change at all.
    """
    if old.ban_store == new.ban_store:
        return False
    _log.warn("ban_store changed from {old} to {new}; the running ban store is kept "
              "until superd restarts", event=events.EV_CONFIG_WARNING,
              attribute="ban_store", old=_store_text(old.ban_store),
              new=_store_text(new.ban_store))
    return True


def _errors_noun(count: int) -> str:
    return "error" if count == 1 else "errors"


def problems_of(error: Exception) -> Tuple[str, ...]:
    """One line per problem of a failed load, build or bind."""
    if isinstance(error, ConfigError):
        return tuple(str(p) for p in error.problems)
    if isinstance(error, OSError):
        return (f"{getattr(error, 'filename', None) or 'configuration'}: "
                f"{error.strerror or error}",)
    return (str(error),)


# -- one reload, start to end ----------------------------------------------------

Loader = Callable[[], "Deferred[Configuration]"]


def _stop_failed(failure: Failure, service_id: str) -> None:
    _log.failure("stopping the children of {service_id} failed", failure,
                 event=events.EV_RELOAD, service_id=service_id)


class Reloader:
    """
    Runs reloads of one ``SuperdService``, one at a time: a SIGHUP that
    arrives during a reload runs one more reload after it (several collapse
    into one), so the last signal always sees the files as they are.
    """

    def __init__(self, top: SuperdService, load: Loader, *,
                 notify: Callable[[str], None] = lambda state: None,
                 strict: bool = False) -> None:
        self.top = top
        self._load = load
        self._notify = notify
        #: ``--strict``: any error keeps the whole running configuration.
        self.strict = strict
        #: The outcome of the last reload (None: none yet).
        self.last: Optional[ReloadResult] = None
        self._running: Optional[Deferred[ReloadResult]] = None
        self._again = False

    @property
    def busy(self) -> bool:
        """True while a reload is in progress."""
        return self._running is not None

    def reload(self) -> "Deferred[ReloadResult]":
        """
        Reload now, or once more after the reload in progress.  Fires with
        the result of a reload that read the files after this call (each
        caller gets its own Deferred).
        """
        if self._running is not None:
            self._again = True
        else:
            self._running = Deferred.fromCoroutine(self._cycle())
        mine: Deferred[ReloadResult] = Deferred()

        def deliver(result: ReloadResult) -> ReloadResult:
            mine.callback(result)
            return result
        self._running.addCallback(deliver)
        return mine

    async def _cycle(self) -> ReloadResult:
        try:
            while True:
                self._again = False
                result = await self._once()
                if not self._again:
                    return result
        finally:
            self._running = None

    def _now(self) -> float:
        return float(self.top.runtime.reactor.seconds())

    async def _once(self) -> ReloadResult:
        started = self._now()
        self._notify("reloading")
        _log.info("reloading the configuration", event=events.EV_RELOAD, phase="start")
        try:
            result = await self._attempt(started)
        except Exception as e:  # a bug must not kill the daemon or leave it half-done
            _log.failure("reload failed unexpectedly", event=events.EV_RELOAD, phase="crash")
            result = self._failed(started, (f"internal error: {e!r}",))
        self._reopen_logs()
        self.last = result
        if result.applied:
            # The replaced services' cycles are garbage now; the new ones
            # live until the next reload (superd.daemon.heap).
            self.top.settle_heap()
        self._notify("ready")
        return result

    async def _attempt(self, started: float) -> ReloadResult:
        try:
            config = await self._load()
        except (ConfigError, OSError) as e:
            return self._failed(started, problems_of(e), e)
        if not self.top.running:  # superd began stopping while the files were read
            return self._failed(started, ("superd is stopping; reload abandoned",))
        log_warnings(config.warnings)
        if not config.ok and all_or_nothing(self.strict, config, self.top.configuration):
            error = ConfigError(config.problems)
            return self._failed(started, problems_of(error), error)
        return await self._apply(started, config)

    async def _apply(self, started: float, config: Configuration) -> ReloadResult:
        running = self.top.configuration
        new, refused = config, set[int]()
        while True:
            isolated = keep_previous(running, new, frozenset(refused))
            plan = plan_reload(running, isolated.configuration)
            transition = Transition(self.top, plan, isolated.configuration)
            failures = transition.build()
            if not failures:
                break
            if all_or_nothing(self.strict, config, running):
                error = ConfigError([problem for _, problem in failures])
                return self._failed(started, problems_of(error), error)
            # Those services fail like broken blocks (a previous definition
            # that cannot be built again is not kept); each pass removes one
            # or more, so this ends.
            refused.update(id(service) for service, _ in failures)
            new = without(new, failures)
        bind_error = await transition.bind()
        if bind_error is not None:
            return self._failed(started, (str(bind_error),), bind_error)
        transition.commit()
        self.top.kept = isolated.kept
        applied = isolated.configuration
        warn_ban_store_change(running, applied)
        self._stop_children(plan.stopped_ids)
        self._update_logs(applied)
        self._recheck_sessions(applied)
        return self._succeeded(started, plan, isolated)

    def _recheck_sessions(self, config: Configuration) -> None:
        access = self.top.parts.access
        access.ban_ends_sessions = config.ban_ends_sessions
        checking = recheck_sessions(access, config.services)
        checking.addErrback(lambda f: _log.failure(
            "re-checking the live sessions failed", f, event=events.EV_RELOAD,
            phase="recheck"))

    def _stop_children(self, service_ids: FrozenSet[str]) -> None:
        processes = self.top.parts.processes
        grace = self.top.runtime.options.grace
        for service_id in sorted(service_ids):
            stopping = processes.stop_service(service_id, grace)
            stopping.addErrback(_stop_failed, service_id)

    def _update_logs(self, config: Configuration) -> None:
        self.top.service_log.router.update(config)

    def _reopen_logs(self) -> None:
        # Also after a failed reload: logrotate's HUP must rotate regardless.
        self.top.service_log.router.reopen()

    def _succeeded(self, started: float, plan: ReloadPlan, isolated: Isolated) -> ReloadResult:
        applied = isolated.configuration
        ok = applied.ok
        result = ReloadResult(
            time=self._now(), ok=ok, new=len(plan.added),
            old=len(plan.unchanged) + len(plan.changed), dropped=len(plan.dropped),
            changed=len(plan.changed), duration=self._now() - started,
            errors=tuple(str(p) for p in applied.problems), partial=not ok,
            isolated=None if ok else isolated)
        if ok:
            _log.info("Reconfigured: new={new} old={old} dropped={dropped}",
                      event=events.EV_RELOAD, phase="done", ok=True, partial=False,
                      new=result.new, old=result.old, dropped=result.dropped,
                      changed=result.changed, duration=result.duration)
            return result
        log_problems(applied.problems)
        log_failed(applied.failed, isolated.kept, phase="reload")
        _log.warn("Reconfigured: new={new} old={old} dropped={dropped}; partly:"
                  " {failed} services failed ({count} {noun}), {kept} kept their previous"
                  " definition", event=events.EV_RELOAD, phase="done", ok=False, partial=True,
                  new=result.new, old=result.old, dropped=result.dropped,
                  changed=result.changed, duration=result.duration,
                  failed=len(applied.failed), kept=len(isolated.kept),
                  count=applied.error_count, noun=_errors_noun(applied.error_count),
                  errors=list(result.errors))
        return result

    def _failed(self, started: float, errors: Tuple[str, ...],
                cause: Optional[Exception] = None) -> ReloadResult:
        problems = cause.problems if isinstance(cause, ConfigError) else ()
        log_problems(problems)
        if not problems:
            for error in errors:
                _log.error("{problem}", event=events.EV_CONFIG_ERROR, problem=error)
        _log.error("reconfiguration failed ({count} {noun}); the running configuration"
                   " is kept", event=events.EV_RELOAD, phase="done", ok=False, partial=False,
                   count=len(errors), noun=_errors_noun(len(errors)), errors=list(errors))
        return ReloadResult(time=self._now(), ok=False, errors=errors,
                            duration=self._now() - started)
