"""
The systemd notification protocol (sd_notify(3)): one datagram of
``NAME=value`` lines to the socket in ``$NOTIFY_SOCKET``, if it is set.

superd sends ``READY=1`` once every service listens, ``RELOADING=1`` (with
``MONOTONIC_USEC``, which systemd 253+ wants) then ``READY=1`` around a
reload, ``STOPPING=1`` when it begins to stop, and a ``STATUS=`` line a
person sees in ``systemctl status``.  Written here rather than taken from a
library: the protocol is one ``sendto`` and superd needs no new dependency.
"""

from __future__ import annotations

import socket
import time
from typing import Callable, Mapping

from twisted.logger import Logger

from superd.observe import events

__all__ = ["notify", "ready", "reloading", "stopping"]

_log = Logger(namespace="superd.notify")


def _address(path: str) -> str:
    # "@name" is Linux's abstract namespace, spelled with a leading NUL.
    return "\0" + path[1:] if path.startswith("@") else path


def notify(environ: Mapping[str, str], *states: str) -> bool:
    """Send ``states`` (``NAME=value`` each) to ``$NOTIFY_SOCKET``; True if sent."""
    path = environ.get("NOTIFY_SOCKET")
    if not path or not states:
        return False
    message = "\n".join(states).encode("utf-8", "replace")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(message, _address(path))
    except OSError as e:
        _log.warn("could not notify {path}: {error}", event=events.EV_NOTIFY_FAILED,
                  path=path, error=str(e))
        return False
    return True


def _status(text: str) -> str:
    # One line: systemd shows STATUS= verbatim and a newline would end it.
    return "STATUS=" + text.replace("\n", " ")


def ready(environ: Mapping[str, str], status: str = "") -> bool:
    """``READY=1`` (every service listens), with an optional status line."""
    return notify(environ, "READY=1", *([_status(status)] if status else []))


def reloading(environ: Mapping[str, str],
              monotonic: Callable[[], float] = time.monotonic) -> bool:
    """``RELOADING=1``: a reload began (``READY=1`` ends it)."""
    usec = int(monotonic() * 1_000_000)
    return notify(environ, "RELOADING=1", f"MONOTONIC_USEC={usec}",
                  _status("reloading the configuration"))


def stopping(environ: Mapping[str, str]) -> bool:
    """``STOPPING=1``: superd is stopping its services and children."""
    return notify(environ, "STOPPING=1", _status("stopping"))
