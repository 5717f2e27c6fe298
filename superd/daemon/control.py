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
import os
import socket
from typing import Any, Callable, Dict, Optional

from twisted.internet.defer import maybeDeferred
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure

__all__ = ["CONTROL_NAME", "ControlError", "ControlFactory", "control_path",
           "parse_request", "request", "run_reload"]

_log = Logger(namespace="superd.control")

CONTROL_NAME = "superd.control"
MAX_REQUEST = 4096
#: Seconds a client has to send its request.
TIMEOUT = 10.0

#: A command: the request in, the reply (or a Deferred firing with it) out.
Handler = Callable[[Dict[str, Any]], Any]


def control_path(state_dir: str) -> str:
    """Where the control socket of ``state_dir`` lives."""
    return os.path.join(state_dir, CONTROL_NAME)


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
        _log.failure("control command {command} failed", failure, event="control_error",
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


class ControlError(Exception):
    """``superd status`` could not get an answer; the message says why."""


def _read_reply(sock: socket.socket) -> bytes:
    chunks: list[bytes] = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def request(state_dir: str, command: str, timeout: float = 10.0,
            **fields: Any) -> Dict[str, Any]:
    """Send one request to the daemon of ``state_dir``; its JSON reply."""
    path = control_path(state_dir)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.sendall(json.dumps({"command": command, **fields}).encode() + b"\n")
            data = _read_reply(sock)
    except FileNotFoundError:
        raise ControlError(f"no control socket at {path}: is superd running"
                           " with this --state-dir?") from None
    except ConnectionRefusedError:
        raise ControlError(f"nothing answers at {path}: superd is not running") from None
    except OSError as e:
        raise ControlError(f"cannot talk to superd at {path}: {e.strerror or e}") from None
    try:
        reply = json.loads(data)
    except ValueError:
        raise ControlError(f"superd sent an unreadable reply ({len(data)} bytes)") from None
    if not isinstance(reply, dict):
        raise ControlError("superd sent an unreadable reply")
    return reply


def listen_control(reactor: Any, state_dir: str, factory: ControlFactory) -> Optional[Any]:
    """Listen on the control socket (mode 0600); None (logged) if impossible."""
    path = control_path(state_dir)
    try:
        # wantPID: a lock file next to the socket, so a stale socket left by a
        # killed superd is replaced and a live one is not stolen.
        return reactor.listenUNIX(path, factory, mode=0o600, wantPID=True)
    except Exception as e:  # CannotListenError, OSError: status is lost, service is not
        _log.error("cannot listen on the control socket {path}: {error};"
                   " 'superd status' will not work", event="control_error",
                   path=path, error=str(e))
        return None


#: ``superd reload``: the daemon could not be reached (sysexits.h EX_UNAVAILABLE).
EX_UNAVAILABLE = 69
#: ``superd reload``: the reload failed; the old configuration is running.
EX_RELOAD_FAILED = 78


def run_reload(state_dir: str, out: Any, err: Any, timeout: float = 120.0) -> int:
    """``superd reload``: reload and wait; the errors of a failed reload on ``err``."""
    try:
        reply = request(state_dir, "reload", timeout=timeout)
    except ControlError as e:
        print(f"superd reload: {e}", file=err)
        return EX_UNAVAILABLE
    result = reply.get("reload")
    if not isinstance(result, dict):
        print(f"superd reload: {reply.get('error', 'the daemon refused')}", file=err)
        return EX_UNAVAILABLE
    if result.get("ok"):
        print(f"Reconfigured: new={result.get('new')} old={result.get('old')}"
              f" dropped={result.get('dropped')} ({result.get('duration', 0.0):.2f}s)",
              file=out)
        return 0
    print("superd reload: failed; the running configuration is kept:", file=err)
    for error in result.get("errors") or ():
        print(f"  {error}", file=err)
    return EX_RELOAD_FAILED
