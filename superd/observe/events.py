"""
Log event names and reason words, kept in one place.

Every decision superd makes is a ``twisted.logger`` event whose ``event``
field is one of the ``EV_*`` names below and whose other fields are named
values (``service``, ``peer``, ``reason``, ``pid`` ...).  Format strings only
ever reference those fields, so peer-supplied bytes never become part of a
format string.  The xinetd-format service log lines (START/EXIT/FAIL ...) are
one rendering of these events.  The per-connection START/EXIT events (of
builtins, ``wait = no`` servers, redirects ...) travel on ``connection_events``,
built only when consumed.
"""

from __future__ import annotations

import functools
from typing import AbstractSet, Callable, Dict, Final, FrozenSet, List, Optional, Tuple

from twisted.logger import ILogObserver, LogEvent, Logger, globalLogPublisher
from zope.interface import implementer

from superd.config.model import ServiceConfig
from superd.core.session import Peer, UnixPeer

__all__ = [
    "ConnectionEvents",
    "block_of",
    "connection_events",
    "emit_exit",
    "emit_served_exit",
    "emit_served_start",
    "emit_session_exit",
    "emit_session_start",
    "emit_fail",
    "emit_start",
    "exit_line",
    "fail_line",
    "noid_line",
    "start_line",
    "traffic_line",
    "userid_line",
    "REASON_ADDRESS",
    "REASON_CPS",
    "REASON_CREDENTIALS",
    "REASON_EXEC",
    "REASON_FORK",
    "REASON_LIBWRAP",
    "REASON_LOAD",
    "REASON_NOID",
    "REASON_PER_SOURCE",
    "REASON_PROCESS_LIMIT",
    "REASON_PROXY",
    "REASON_SERVICE_LIMIT",
    "REASON_TIME",
    "REASON_TLS",
    "END_BANNED",
    "END_RECONFIGURED",
    "NOID_BAD_RESPONSE",
    "NOID_NO_SERVER",
    "NOID_RECEIVE_ERROR",
    "NOID_SYSTEM_ERROR",
    "NOID_TIMEOUT",
]

# xinetd's FAIL reason words, exactly: log parsers (fail2ban) match them.
REASON_ADDRESS: Final = "address"
REASON_TIME: Final = "time"
REASON_FORK: Final = "fork"
REASON_SERVICE_LIMIT: Final = "service_limit"
REASON_PER_SOURCE: Final = "per_source_limit"
REASON_PROCESS_LIMIT: Final = "process_limit"
REASON_LIBWRAP: Final = "libwrap"
REASON_LOAD: Final = "load"
REASON_CPS: Final = "connections per second"
# superd's additions.
REASON_EXEC: Final = "exec"
REASON_TLS: Final = "tls"
#: ``proxy_protocol``: a source not in ``proxy_from``, or no acceptable
#: PROXY header in time (missing, malformed, too long, too late).
REASON_PROXY: Final = "proxy"
#: A UNIX peer whose uid and groups ``only_uid``/``only_gid`` do not list.
REASON_CREDENTIALS: Final = "credentials"
#: An IDONLY client without an ident answer (logged as NOID, not FAIL).
REASON_NOID: Final = "noid"

# Why superd ended a live session itself (the ``reason`` of its EXIT event).
#: A ban (sensor, operator or fleet) of the session's source.
END_BANNED: Final = "banned"
#: A reload whose rules (address lists, hosts files, access_times,
#: instances) no longer allow the session.
END_RECONFIGURED: Final = "reconfigured"

# xinetd's NOID reasons (ident.c idresult_explain), exactly.
NOID_NO_SERVER: Final = "no server"
NOID_TIMEOUT: Final = "timeout"
NOID_SYSTEM_ERROR: Final = "system error"
NOID_RECEIVE_ERROR: Final = "error while receiving response"
NOID_BAD_RESPONSE: Final = "bad response"

# Event names (the ``event`` field of structured log events).
EV_LISTENING: Final = "listening"
EV_REFUSE: Final = "refuse"
EV_START: Final = "start"
EV_EXIT: Final = "exit"
EV_SPAWN_FAILED: Final = "spawn_failed"
EV_BAN: Final = "ban"
#: The ban list's SQLite file: ``state`` degraded (one error), ok (recovered).
EV_BAN_DATABASE: Final = "ban_database"
#: The shared ban store (Redis, ``superd.fleet``): ``state`` up, down, ...
EV_BAN_STORE: Final = "ban_store"
EV_RELOAD: Final = "reload"
EV_LIMIT: Final = "limit"
EV_CONFIG_ERROR: Final = "config_error"
EV_CONFIG_WARNING: Final = "config_warning"
#: A file ``includedir`` skipped (its name, a broken link ...).
EV_CONFIG_NOTE: Final = "config_note"
#: A service block that does not run because of configuration errors (or
#: whose new definition a reload refused: its previous one keeps running).
EV_SERVICE_FAILED: Final = "service_failed"
#: A service block switched off on purpose (disable = yes, disabled, enabled).
EV_SERVICE_DISABLED: Final = "service_disabled"
EV_PEER_ERROR: Final = "peer_error"
EV_SUPPRESSED: Final = "refusals_suppressed"
EV_USERID: Final = "userid"
EV_NOID: Final = "noid"
EV_IDENT_FAILED: Final = "ident_failed"
EV_TRAFFIC: Final = "traffic"
EV_REDIRECT_FAILED: Final = "redirect_failed"
EV_REFLECTION_DROP: Final = "reflection_drop"
EV_RESPAWN_BACKOFF: Final = "respawn_backoff"
EV_SERVICE_LOG_ERROR: Final = "service_log_error"
#: A child behind the TLS pipe outlived its client by --grace: superd stops it.
EV_CHILD_ABANDONED: Final = "child_abandoned"
#: How superd tracks children's descendants (a cgroup v2 subtree or process groups).
EV_PROCESS_TRACKING: Final = "process_tracking"
#: A socket file left by a dead process was removed before binding its path.
EV_STALE_SOCKET: Final = "stale_socket"
#: A socket file superd made could not be removed or given its permissions.
EV_SOCKET_FILE_ERROR: Final = "socket_file_error"
#: A TLS service's certificate files changed and were loaded (or could not be).
EV_TLS_RELOADED: Final = "tls_reloaded"
EV_TLS_RELOAD_FAILED: Final = "tls_reload_failed"
#: A port TLS services share by server name refused a client before any
#: service was chosen (no such name, no ClientHello).
EV_SNI_REFUSED: Final = "sni_refused"
# The daemon's life (superd.daemon.service).
EV_READY: Final = "ready"
EV_BIND_FAILED: Final = "bind_failed"
EV_STOPPING: Final = "stopping"
#: Stop waits for in-process sessions (up to --grace) after closing the sockets.
EV_DRAINING: Final = "draining"
EV_DRAIN_TIMEOUT: Final = "drain_timeout"
#: superd ended live sessions itself (a ban, a reload): how many, and why.
EV_SESSIONS_ENDED: Final = "sessions_ended"
#: A listening socket closed (stop, reload, failed start): the pair of ``listening``.
EV_NOT_LISTENING: Final = "not_listening"
#: A service without IPv6 on this host listens on IPv4 only.
EV_IPV4_FALLBACK: Final = "ipv4_fallback"
#: A socket passed by systemd: found, given to a service, unusable or unclaimed.
EV_SOCKET_ADOPTED: Final = "socket_adopted"
#: accept() failed on a listening socket (descriptors exhausted, ...).
EV_ACCEPT_FAILED: Final = "accept_failed"
#: The control socket (``superd status``, ``reload``, ``bans``) and its requests.
EV_CONTROL_LISTENING: Final = "control_listening"
EV_CONTROL_ERROR: Final = "control_error"
EV_NOTIFY_FAILED: Final = "notify_failed"
EV_STATUS: Final = "status"
EV_METRICS: Final = "metrics"
# Server processes (superd.proc, superd.handlers.spawn).
EV_SPAWN_MECHANISM: Final = "spawn_mechanism"
EV_CLOEXEC: Final = "cloexec"
EV_RLIMIT: Final = "rlimit"
EV_STOP_CHILDREN: Final = "stop_children"
EV_KILL_CHILDREN: Final = "kill_children"
EV_KILL_CHILDREN_FAILED: Final = "kill_children_failed"
EV_REAP_ERROR: Final = "reap_error"
#: A spawn helper process (``superd.proc.spawnhelper``): ``state`` is one of
#: the ``HELPER_*`` words below.
EV_SPAWN_HELPER: Final = "spawn_helper"
#: The helper answered and takes requests.
HELPER_READY: Final = "ready"
#: The helper's socket closed under superd: it died (its requests failed,
#: its children followed by pidfd).
HELPER_LOST: Final = "lost"
#: The helper could not be started (``posix_spawn`` failed).
HELPER_UNSTARTABLE: Final = "unstartable"
#: The helper's process was reaped (``status``): after ``lost``, or at stop.
HELPER_EXITED: Final = "exited"
# Serving and deciding (superd.access, superd.handlers).
EV_HANDLER_ERROR: Final = "handler_error"
#: Starting a child off the reactor thread, or reporting it started, failed
#: unexpectedly (a bug; with a traceback).
EV_SPAWN_ERROR: Final = "spawn_error"
EV_POLICY_ERROR: Final = "policy_error"
EV_NAME_LOOKUP_FAILED: Final = "name_lookup_failed"
EV_HOSTS_WATCH: Final = "hosts_watch"
EV_TCPMUX_UNKNOWN: Final = "tcpmux_unknown"


# -- xinetd-format service log lines ------------------------------------------
#
# These render the text of START/EXIT/FAIL lines from the service's
# log_on_success/log_on_failure flags.  The structured event carries the line
# in its ``xinetd_line`` field (None when the flags ask for no line), so the
# service-log writers (FILE/SYSLOG) and log scanners see xinetd's exact shape.

_log = Logger(namespace="superd")


def _from(peer: Optional[Peer]) -> str:
    # A UNIX peer's host is ``uid:N``: what the lines show after ``from=``.
    return "<no address>" if peer is None else peer.host


def _credentials(peer: Optional[Peer]) -> Dict[str, int]:
    """A UNIX peer's credentials as event fields (none for an IP peer)."""
    if not isinstance(peer, UnixPeer):
        return {}
    return {"peer_uid": peer.uid, "peer_gid": peer.gid, "peer_pid": peer.pid}


def start_line(service_id: str, flags: AbstractSet[str], pid: int,
               peer: Optional[Peer]) -> Optional[str]:
    """``START: <id>[ pid=<pid>][ from=<addr>]``, or None if nothing is logged."""
    if not flags:
        return None
    if pid == 0 and type(flags) is frozenset:
        # A builtin's session (pid 0): the same few lines recur for every
        # connection from a host, and building one costs several times
        # finding it.
        return _builtin_start(service_id, flags, _from(peer))
    return _start_text(service_id, flags, pid, _from(peer))


def _start_text(service_id: str, flags: AbstractSet[str], pid: int, host: str) -> str:
    line = f"START: {service_id}"
    if "PID" in flags:
        line += f" pid={pid}"
    if "HOST" in flags:
        line += f" from={host}"
    return line


def exit_line(service_id: str, flags: AbstractSet[str], pid: int,
              status: Optional[int], signal: Optional[int],
              duration: float) -> Optional[str]:
    """``EXIT: <id>[ status=<n>| signal=<n>][ pid=<pid>][ duration=<s>(sec)]``."""
    if "EXIT" not in flags and "DURATION" not in flags:
        return None
    if pid == 0 and type(flags) is frozenset:
        return _builtin_exit(service_id, flags, status, signal, int(duration))
    return _exit_text(service_id, flags, pid, status, signal, int(duration))


def _exit_text(service_id: str, flags: AbstractSet[str], pid: int,
               status: Optional[int], signal: Optional[int], seconds: int) -> str:
    line = f"EXIT: {service_id}"
    if "EXIT" in flags:
        line += f" signal={signal}" if signal is not None else f" status={status}"
    if "PID" in flags:
        line += f" pid={pid}"
    if "DURATION" in flags:
        line += f" duration={seconds}(sec)"
    return line


#: Distinct builtin START and EXIT lines kept (per service: its hosts, its
#: durations in whole seconds).
_LINE_CACHE = 4096


@functools.lru_cache(maxsize=_LINE_CACHE)
def _builtin_start(service_id: str, flags: FrozenSet[str], host: str) -> str:
    return _start_text(service_id, flags, 0, host)


@functools.lru_cache(maxsize=_LINE_CACHE)
def _builtin_exit(service_id: str, flags: FrozenSet[str], status: Optional[int],
                  signal: Optional[int], seconds: int) -> str:
    return _exit_text(service_id, flags, 0, status, signal, seconds)


def fail_line(service_id: str, flags: AbstractSet[str], reason: str,
              peer: Optional[Peer]) -> Optional[str]:
    """``FAIL: <id> <reason>[ from=<addr>]``, or None if nothing is logged."""
    if not flags:
        return None
    line = f"FAIL: {service_id} {reason}"
    if "HOST" in flags:
        line += f" from={_from(peer)}"
    return line


def userid_line(service_id: str, user_text: str) -> str:
    """``USERID: <id> <text>`` (``text`` already escaped)."""
    return f"USERID: {service_id} {user_text}"


def noid_line(service_id: str, address: str, reason: str) -> str:
    """``NOID: <id> <addr> <reason>`` (an IDONLY client without an ident answer)."""
    return f"NOID: {service_id} {address} {reason}"


def traffic_line(service_id: str, flags: AbstractSet[str], inbound: int,
                 outbound: int) -> Optional[str]:
    """``TRAFFIC: <id> in=N(bytes) out=M(bytes)``, or None without TRAFFIC."""
    if "TRAFFIC" not in flags:
        return None
    return f"TRAFFIC: {service_id} in={inbound}(bytes) out={outbound}(bytes)"


#: A log observer: twisted.logger's ILogObserver is any such callable.
Observer = Callable[[LogEvent], None]
#: Takes one xinetd line: ``(service_id, service_block, xinetd_line)``.
LineWriter = Callable[[str, str, str], None]


@implementer(ILogObserver)
class ConnectionEvents:
    """
    Where the per-connection events go: START and EXIT of each builtin
    connection or datagram, of each ``wait = no`` server process, and of
    each redirected, TLS-piped or user-protocol session.

    Rendering an event costs the main log's observer (twistd's text
    observer, or JSON) more CPU than serving a daytime connection, and two
    renderings cost a third of what superd itself spends on handing a
    connection to a spawned server, so these events are only built when
    something consumes them:

    * the structured main log: ``superd.logs.json_stdout`` calls
      ``send_to_main_log()``, and every such event then reaches the global
      publisher like any other decision -- the JSON log still has them all;
    * the xinetd-format service logs: the router subscribes with
      ``add_direct`` and gets them without the main log rendering them
      (while they go to the main log, it gets them there instead, once).
      It passes its ``write_line`` as ``lines``: while every direct
      observer takes lines, no event is built at all, only the xinetd line
      (a ``twisted.logger`` event and its dispatch cost several times what
      writing the line does).

    * ``--log-connections`` sends them to the readable main log as well.

    With none of these, serving a connection builds no log event at all.
    Every other event (listening, refusals, exec failures, children killed
    by a signal, ``wait = yes`` servers starting and ending, bans, reloads,
    limits) always goes to the main log.
    """

    def __init__(self, main_log: Observer = globalLogPublisher) -> None:
        self._main_log = main_log
        self._to_main_log = False
        self._direct: List[Tuple[Observer, Callable[[str], bool],
                                 Optional[LineWriter]]] = []
        #: The direct observers' line writers, while every direct observer
        #: has one and nothing goes to the main log: then START/EXIT build
        #: only the xinetd line (``deliver_line``).  None otherwise.
        self.line_writers: Optional[Tuple[LineWriter, ...]] = None

    def send_to_main_log(self, enabled: bool = True) -> None:
        """Publish per-connection events to the main log (the global publisher)."""
        self._to_main_log = enabled
        self._plan_lines()

    @property
    def sent_to_main_log(self) -> bool:
        """Whether ``send_to_main_log`` is on."""
        return self._to_main_log

    def add_direct(self, observer: Observer,
                   wants: Callable[[str], bool] = lambda service_id: True,
                   lines: Optional[LineWriter] = None) -> None:
        """
        Give per-connection events to ``observer`` (unless they go to the
        main log); ``wants(service_id)`` says which services it writes, so
        the events of the others are not even built.  ``lines``, if given,
        takes the event's xinetd line instead of the event, as
        ``lines(service_id, service_block, xinetd_line)``: all that
        ``observer`` would have used of it.
        """
        self._direct = [entry for entry in self._direct if entry[0] != observer]
        self._direct.append((observer, wants, lines))
        self._plan_lines()

    def remove_direct(self, observer: Observer) -> None:
        """Stop ``add_direct``'s deliveries to ``observer``."""
        self._direct = [entry for entry in self._direct if entry[0] != observer]
        self._plan_lines()

    def _plan_lines(self) -> None:
        writers = tuple(entry[2] for entry in self._direct if entry[2] is not None)
        lines_only = not self._to_main_log and len(writers) == len(self._direct)
        self.line_writers = writers if lines_only else None

    def deliver_line(self, service_id: str, service_block: str, line: str) -> None:
        """Give one xinetd line to every line writer (``line_writers`` is set)."""
        for write in self.line_writers or ():
            write(service_id, service_block, line)

    def wanted(self, service_id: str) -> bool:
        """Whether anything consumes the events of ``service_id`` (cheap: per connection)."""
        if self._to_main_log:
            return True
        # A loop, not any(): no generator per connection (usually none or
        # one observer, the service logs).
        for entry in self._direct:  # noqa: SIM110
            if entry[1](service_id):
                return True
        return False

    def __call__(self, event: LogEvent) -> None:
        if self._to_main_log:
            self._main_log(event)
            return
        for entry in tuple(self._direct):
            entry[0](event)


#: The daemon's channel for per-connection events (one per process, like
#: twisted.logger's global publisher that it feeds).
connection_events = ConnectionEvents()
_connection_log = Logger(namespace="superd", observer=connection_events)


def block_of(service: ServiceConfig) -> str:
    """
    Which configuration block an event comes from (``ServiceConfig.block_key``:
    id, protocol, port, bind), carried as ``service_block`` beside
    ``service_id``: two blocks may share an id (the seed's two ``service ssh``
    on different binds), and each one's xinetd lines belong in its own
    ``log_type`` only.  The key the limits count under, so it also names the
    block after a reload that moved its lines.
    """
    return service.block_key


def _start(log: Logger, service: ServiceConfig, pid: int,
           peer: Optional[Peer]) -> None:
    log.info(
        "START {service_id} pid={pid} from={peer_host}",
        event=EV_START, service_id=service.id, service_block=block_of(service), pid=pid,
        peer_host=_from(peer), peer_port=None if peer is None else peer.port,
        xinetd_line=start_line(service.id, service.log_on_success, pid, peer),
        **_credentials(peer),
    )


# Only the one of status and signal that applies (the other is null).
_EXIT_STATUS = "EXIT {service_id} pid={pid} status={status} duration={duration:.3f}s"
_EXIT_SIGNAL = "EXIT {service_id} pid={pid} signal={signal} duration={duration:.3f}s"


def _exit(log: Logger, service: ServiceConfig, pid: int,
          status: Optional[int], signal: Optional[int], duration: float,
          reason: Optional[str] = None) -> None:
    # A session superd ended itself says why in its own field (and the main
    # log's text); the xinetd line keeps xinetd's exact shape, which has no
    # place for a reason.
    extra = {} if reason is None else {"reason": reason}
    text = _EXIT_STATUS if signal is None else _EXIT_SIGNAL
    log.info(
        text if reason is None else text + " reason={reason}",
        event=EV_EXIT, service_id=service.id, service_block=block_of(service),
        pid=pid, status=status, signal=signal, duration=duration,
        xinetd_line=exit_line(service.id, service.log_on_success, pid,
                              status, signal, duration),
        **extra,
    )


def emit_start(service: ServiceConfig, pid: int, peer: Optional[Peer]) -> None:
    """Log on the main log that a server process started (``wait = yes``)."""
    _start(_log, service, pid, peer)


def emit_exit(service: ServiceConfig, pid: int, status: Optional[int],
              signal: Optional[int], duration: float) -> None:
    """Log on the main log that a server process of ``service`` ended."""
    _exit(_log, service, pid, status, signal, duration)


def emit_session_start(service: ServiceConfig, pid: int,
                       peer: Optional[Peer]) -> None:
    """START of one connection's session (``pid`` its server process, or 0),
    on the ``connection_events`` channel."""
    channel = connection_events
    if not channel.wanted(service.id):
        return
    writers = channel.line_writers
    if writers is not None:
        # deliver_line and block_of inlined: this runs for every connection
        # of a logged service.
        line = start_line(service.id, service.log_on_success, pid, peer)
        if line is not None:
            for write in writers:
                write(service.id, service.block_key, line)
        return
    _start(_connection_log, service, pid, peer)


def emit_session_exit(service: ServiceConfig, pid: int, status: Optional[int],
                      signal: Optional[int], duration: float,
                      reason: Optional[str] = None) -> None:
    """
    EXIT of one connection's session, on the ``connection_events`` channel;
    a server process killed by a signal (a crash, or the OOM killer) and a
    session superd ended itself (``reason``: ``END_BANNED``,
    ``END_RECONFIGURED``) are worth the main log's attention, so their EXIT
    always goes there.
    """
    channel = connection_events
    if signal is not None or reason is not None:
        _exit(_log, service, pid, status, signal, duration, reason)
    elif not channel.wanted(service.id):
        return
    elif channel.line_writers is not None:
        line = exit_line(service.id, service.log_on_success, pid, status,
                         signal, duration)
        if line is not None:
            for write in channel.line_writers:
                write(service.id, service.block_key, line)
    else:
        _exit(_connection_log, service, pid, status, signal, duration)


def emit_served_start(service: ServiceConfig, peer: Optional[Peer]) -> None:
    """START (pid 0) of a builtin's session, on the ``connection_events`` channel."""
    emit_session_start(service, 0, peer)


def emit_served_exit(service: ServiceConfig, duration: float,
                     reason: Optional[str] = None) -> None:
    """EXIT (pid 0, status 0) of a builtin's session, on ``connection_events``
    (on the main log when superd ended it for ``reason``)."""
    emit_session_exit(service, 0, 0, None, duration, reason)


def emit_fail(service: ServiceConfig, reason: str, peer: Optional[Peer],
              detail: str = "") -> None:
    """Log that ``peer`` was refused (or could not be served) for ``reason``."""
    _log.info(
        "FAIL {service_id} {reason} from={peer_host} {detail}",
        event=EV_REFUSE, service_id=service.id, service_block=block_of(service),
        reason=reason, peer_host=_from(peer), peer_port=None if peer is None else peer.port,
        detail=detail,
        xinetd_line=fail_line(service.id, service.log_on_failure, reason, peer),
        **_credentials(peer),
    )
