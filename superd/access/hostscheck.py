"""
``superd check``'s look at hosts.allow and hosts.deny.

The daemon reads these files on every connection (``hostsaccess``) and a
broken line denies the daemons it names, so an operator wants to hear about
it before reloading, as ``FILE:LINE: problem`` beside the configuration's
problems.  A file that does not exist is fine (libwrap treats it as empty).
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from superd.access.hostsparse import parse_hosts
from superd.config.errors import Problem
from superd.config.model import ConfigWarning, Location

__all__ = ["HostsCheck", "check_hosts_files"]

Reader = Callable[[str], str]


@attrs.frozen
class HostsCheck:
    """What is wrong (``problems``) and worth fixing (``warnings``) in the files."""

    problems: tuple[Problem, ...] = ()
    warnings: tuple[ConfigWarning, ...] = ()


def _read(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def _check_one(path: str, default_allow: bool, read: Reader) -> HostsCheck:
    try:
        text = read(path)
    except FileNotFoundError:
        return HostsCheck()
    except OSError as e:
        return HostsCheck(problems=(
            Problem(path, 0, None, None, f"cannot read the file: {e.strerror or e}"),))
    parsed = parse_hosts(path, text, default_allow=default_allow)
    return HostsCheck(
        problems=tuple(Problem(path, b.line, None, None, b.message) for b in parsed.broken),
        warnings=tuple(ConfigWarning(Location(path, line), None, None, message)
                       for line, message in parsed.warnings))


def check_hosts_files(allow_path: str, deny_path: str, *,
                      read: Reader = _read) -> HostsCheck:
    """Parse both files as the daemon would; every broken line is a problem."""
    allow = _check_one(allow_path, True, read)
    deny = _check_one(deny_path, False, read)
    return HostsCheck(allow.problems + deny.problems, allow.warnings + deny.warnings)
