"""
The client side of the control socket: one request to the running daemon
and its JSON reply, for ``superd status``, ``superd reload`` and ``superd
bans``.  The daemon's side is ``superd.daemon.control``.
"""

from __future__ import annotations

import json
import socket
from typing import Any, Dict

from superd.core.exits import EX_CONFIG, EX_UNAVAILABLE
from superd.core.paths import control_path

__all__ = ["ControlError", "request", "run_reload"]


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


def run_reload(state_dir: str, out: Any, err: Any, timeout: float = 120.0) -> int:
    """
    ``superd reload``: reload and wait.  Exit status 0 when the new
    configuration runs as written; 78 (EX_CONFIG) when it has errors,
    printed on ``err`` -- whether the reload was partly applied (every
    service but the failed ones; each failed one that was running keeps its
    previous definition) or refused as a whole (the running configuration
    is kept).  The message says which.
    """
    try:
        reply = request(state_dir, "reload", timeout=timeout)
    except ControlError as e:
        print(f"superd reload: {e}", file=err)
        return EX_UNAVAILABLE
    result = reply.get("reload")
    if not isinstance(result, dict):
        print(f"superd reload: {reply.get('error', 'the daemon refused')}", file=err)
        return EX_UNAVAILABLE
    if result.get("ok") or result.get("partial"):
        print(f"Reconfigured: new={result.get('new')} old={result.get('old')}"
              f" dropped={result.get('dropped')} ({result.get('duration', 0.0):.2f}s)",
              file=out)
    if result.get("ok"):
        return 0
    if result.get("partial"):
        _print_partial(result, err)
        return EX_CONFIG
    print("superd reload: failed; the running configuration is kept:", file=err)
    for error in result.get("errors") or ():
        print(f"  {error}", file=err)
    return EX_CONFIG  # the old configuration is running


def _print_partial(result: Dict[str, Any], err: Any) -> None:
    failed = result.get("failed_count", len(result.get("failed") or []))
    print(f"superd reload: partially applied: {failed} service"
          f"{'' if failed == 1 else 's'} failed; everything else was applied:", file=err)
    for error in result.get("errors") or ():
        print(f"  {error}", file=err)
    for kept in result.get("kept") or ():
        print(f"  kept: service {kept.get('id')} ({kept.get('location')}) runs its previous"
              f" definition: {kept.get('reason')}", file=err)
