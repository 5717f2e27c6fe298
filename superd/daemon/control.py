"""
The control socket: ``superd.daemon.control`` in the state directory, mode 0600.

A line protocol: the client sends one request line -- a bare word
(``status``, ``reload``) or a JSON object (``{"command": "status"}``) -- and
the daemon answers with one JSON object on one line, then closes.  Requests are
bounded (``MAX_REQUEST`` bytes) and answered within ``TIMEOUT`` seconds of
the connection; junk gets ``{"ok": false, "error": ...}``, never a crash.
The socket file's mode and the state directory (0700) are the access
control: only superd's own user (and root) may ask.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Dict, Optional

from twisted.internet.defer import maybeDeferred
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure

from superd.core.paths import control_path
from superd.observe import events

__all__ = ["ControlFactory", "listen_control", "parse_request"]

_log = Logger(namespace="superd.control")

MAX_REQUEST = 4096
#: Seconds a client has to send its request.
TIMEOUT = 10.0

#: A command: the request in, the reply (or a Deferred firing with it) out.
Handler = Callable[[Dict[str, Any]], Any]


def parse_request(line: bytes) -> Dict[str, Any]:
    """A request line as ``{"command": ...}``; raises ``ValueError`` for junk."""
    text = line.decode("utf-8").strip()
    if text.startswith("{"):
        request = json.loads(text)
        if not isinstance(request, dict) or not isinstance(request.get("command"), str):
            raise ValueError("a JSON request needs a string 'command'")
        return request
    if not text or not text.replace("-", "").isalnum():
        raise ValueError("a request is a command word or a JSON object")
    return {"command": text}


class _ControlProtocol(LineOnlyReceiver):
    delimiter = b"\n"
    MAX_LENGTH = MAX_REQUEST

    def __init__(self, handlers: Dict[str, Handler], clock: Any) -> None:
        self._handlers = handlers
        self._clock = clock
        self._timeout: Any = None
        self._asked = False
        self._answered = False

    def connectionMade(self) -> None:
        self._timeout = self._clock.callLater(TIMEOUT, self._expired)

    def _expired(self) -> None:
        self._timeout = None
        self._answer({"ok": False, "error": "no request within the time limit"})

    def lineReceived(self, line: bytes) -> None:
        if self._answered or self._asked:
            return
        self._asked = True
        try:
            request = parse_request(line)
        except ValueError as e:  # UnicodeDecodeError and JSONDecodeError too
            self._answer({"ok": False, "error": f"bad request: {e}"})
            return
        handler = self._handlers.get(request["command"])
        if handler is None:
            known = ", ".join(sorted(self._handlers))
            self._answer({"ok": False, "error": f"unknown command (known: {known})"})
            return
        self._cancel()  # the request is in; a reload may take longer than TIMEOUT
        answer = maybeDeferred(handler, request)
        answer.addErrback(self._crashed, request["command"])
        answer.addCallback(self._answer)

    def _crashed(self, failure: Failure, command: str) -> Dict[str, Any]:
        _log.failure("control command {command} failed", failure, event=events.EV_CONTROL_ERROR,
                     command=command)
        return {"ok": False, "error": "internal error (see superd's log)"}

    def lineLengthExceeded(self, line: bytes) -> None:
        self._answer({"ok": False, "error": f"request longer than {MAX_REQUEST} bytes"})

    def _answer(self, reply: Dict[str, Any]) -> None:
        if self._answered:
            return
        self._answered = True
        self._cancel()
        self.transport.write(json.dumps(reply).encode() + b"\n")  # type: ignore[union-attr]
        self.transport.loseConnection()  # type: ignore[union-attr]

    def _cancel(self) -> None:
        if self._timeout is not None and self._timeout.active():
            self._timeout.cancel()
        self._timeout = None

    def connectionLost(self, reason: Any = None) -> None:
        self._cancel()


class ControlFactory(Factory):
    """Serves control requests with ``handlers`` (command -> reply)."""

    noisy = False

    def __init__(self, handlers: Dict[str, Handler], clock: Any) -> None:
        self.handlers = handlers
        self.clock = clock

    def buildProtocol(self, addr: Any) -> _ControlProtocol:
        return _ControlProtocol(self.handlers, self.clock)


def listen_control(reactor: Any, state_dir: str, factory: ControlFactory) -> Optional[Any]:
    """Listen on the control socket (mode 0600); None (logged) if impossible."""
    path = control_path(state_dir)
    try:
        # wantPID: a lock file next to the socket, so a stale socket left by a
        # killed superd is replaced and a live one is not stolen.
        port = reactor.listenUNIX(path, factory, mode=0o600, wantPID=True)
    except Exception as e:  # CannotListenError, OSError: status is lost, service is not
        _log.error("cannot listen on the control socket {path}: {error};"
                   " 'superd status' will not work", event=events.EV_CONTROL_ERROR,
                   path=path, error=str(e))
        return None
    _log.info("control socket at {path}", event=events.EV_CONTROL_LISTENING, path=path)
    return port
