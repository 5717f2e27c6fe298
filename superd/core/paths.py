"""
Where superd keeps things unless told otherwise: the configuration it reads,
its state directory, and the control socket inside it.

Every command and the daemon take their defaults from here, so ``superd
status`` finds the daemon that ``superd run`` started without options.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Optional

__all__ = [
    "CONTROL_NAME",
    "DEFAULT_CONFIG",
    "ROOT_STATE_DIR",
    "control_path",
    "default_state_dir",
    "state_dir_or_default",
]

#: ``-c`` when none is given: a directory read as by ``includedir``.
DEFAULT_CONFIG = "/etc/superd"
#: The state directory of a daemon running as root.
ROOT_STATE_DIR = "/var/lib/superd"
#: The control socket's file name in the state directory.
CONTROL_NAME = "superd.control"


def default_state_dir(euid: int, environ: Mapping[str, str]) -> str:
    """``/var/lib/superd`` for root, else the XDG state directory's ``superd``."""
    if euid == 0:
        return ROOT_STATE_DIR
    base = environ.get("XDG_STATE_HOME") or os.path.join(
        environ.get("HOME") or os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "superd")


def state_dir_or_default(state_dir: Optional[str]) -> str:
    """``--state-dir``, or the daemon's default for this user."""
    if state_dir is not None:
        return state_dir
    return default_state_dir(os.geteuid(), os.environ)


def control_path(state_dir: str) -> str:
    """The control socket of the daemon whose state directory is ``state_dir``."""
    return os.path.join(state_dir, CONTROL_NAME)
