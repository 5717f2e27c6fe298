"""
The argument vector of an external server, built from its configuration.

Pure functions: nothing here touches the process or the file system, so the
exact vector xinetd would build is unit-tested without spawning anything.
"""

from __future__ import annotations

import os.path
from typing import Mapping, Optional, Tuple

from superd.config.model import UNLIMITED, ServiceConfig

__all__ = ["PRLIMIT_OPTIONS", "limits_prefix", "server_argv"]

#: ``rlimit_<name>`` -> the util-linux ``prlimit`` option that sets it.
PRLIMIT_OPTIONS: Mapping[str, str] = {
    "as": "--as",
    "cpu": "--cpu",
    "data": "--data",
    "rss": "--rss",
    "stack": "--stack",
    "files": "--nofile",
}


def server_argv(service: ServiceConfig) -> Tuple[str, ...]:
    """
    xinetd's argv: the basename of ``server`` then ``server_args``; with
    ``NAMEINARGS``, exactly ``server_args`` (tcpd style, argv[0] included).
    """
    if service.server is None:
        raise ValueError(f"service {service.id} has no server")
    if "NAMEINARGS" in service.flags:
        return tuple(service.server_args)
    return (os.path.basename(service.server), *service.server_args)


def _limit_text(value: int) -> str:
    return "unlimited" if value == UNLIMITED else str(value)


def limits_prefix(rlimits: Mapping[str, int],
                  prlimit: Optional[str]) -> Tuple[str, ...]:
    """
    The ``prlimit --as=N:N ... --`` prefix that sets ``rlimits`` (soft = hard,
    as xinetd) in the child before the server runs, or ``()`` if none is set.

    Resource limits are per process, so unlike credentials and nice they
    cannot be given to a ``posix_spawn`` child by the spawning thread alone;
    see ``superd.proc.spawner`` for why a wrapper is the race-free choice.
    """
    if not rlimits:
        return ()
    if prlimit is None:
        raise ValueError("rlimit_* needs the util-linux prlimit program")
    options = tuple(
        f"{PRLIMIT_OPTIONS[name]}={_limit_text(value)}:{_limit_text(value)}"
        for name, value in sorted(rlimits.items())
    )
    return (prlimit, *options, "--")
