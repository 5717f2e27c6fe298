"""
``superd status``: ask the running daemon what it is doing and print it.
"""

from __future__ import annotations

import json
from typing import IO, Optional

from superd.cli.control import ControlError, request
from superd.core.exits import EX_UNAVAILABLE
from superd.core.paths import state_dir_or_default
from superd.daemon.status import render_text

__all__ = ["run_status"]


def run_status(state_dir: Optional[str], as_json: bool, out: IO[str], err: IO[str]) -> int:
    """``superd status [--json] [--state-dir DIR]``: ask the daemon and print."""
    try:
        reply = request(state_dir_or_default(state_dir), "status")
    except ControlError as e:
        print(f"superd status: {e}", file=err)
        return EX_UNAVAILABLE
    if not reply.get("ok"):
        print(f"superd status: {reply.get('error', 'the daemon refused')}", file=err)
        return EX_UNAVAILABLE
    status = reply.get("status") or {}
    out.write(json.dumps(status, indent=2) + "\n" if as_json else render_text(status))
    return 0
