"""
Checking the sandbox attributes of one service at load (issue 17), pure:
they confine the children of an external server, so anywhere else they are
an error, each path of ``read_only_paths`` is named once, and nothing the
server needs may lie under the ``/tmp`` that ``private_tmp`` empties.  What depends
on the host (superd running as root, a cgroup controller, ``unshare``) is
checked when the service is built (``superd.handlers.spawn.spec``).
"""

from __future__ import annotations

import posixpath
from typing import Any, Callable, Mapping

from superd.config.attributes import SANDBOX_ATTRIBUTES
from superd.config.model import Sandbox, ServiceKind

__all__ = ["sandbox_settings"]


def _under_tmp(path: str) -> bool:
    return posixpath.normpath(path) == "/tmp" or posixpath.normpath(path).startswith("/tmp/")


def sandbox_settings(values: Mapping[str, Any], kind: ServiceKind,
                     error: Callable[[str, str], None]) -> Sandbox:
    """The service's ``Sandbox``; problems go to ``error(attribute, message)``."""
    written = [name for name in SANDBOX_ATTRIBUTES if name in values]
    runs_server = "server" in values and kind in (ServiceKind.EXTERNAL,
                                                  ServiceKind.TCPMUX_CLIENT)
    if written and not runs_server:
        for name in written:
            error(name, "only a service that runs a server (server = PATH) can be"
                        " confined")
        return Sandbox()
    paths = tuple(values.get("read_only_paths", ()))
    seen = set()
    for path in paths:
        if path in seen:
            error("read_only_paths", f"{path} is listed twice")
        seen.add(path)
    if values.get("private_tmp"):
        # The empty /tmp hides whatever was under it from the server.
        for path in paths:
            if _under_tmp(path):
                error("read_only_paths", f"{path} is hidden by private_tmp's empty /tmp")
        if _under_tmp(values.get("server") or ""):
            error("private_tmp", f"the server {values['server']} would be hidden by"
                                 " private_tmp's empty /tmp")
    return Sandbox(
        no_new_privileges=bool(values.get("no_new_privileges", False)),
        private_tmp=bool(values.get("private_tmp", False)),
        read_only_paths=paths,
        memory_max=values.get("memory_max"),
        tasks_max=values.get("tasks_max"),
    )
