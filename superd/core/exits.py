"""
The exit statuses of superd's commands and daemon, from sysexits.h.

A supervisor tells a permanent failure (bad command line, refused
configuration: restarting cannot help) from a temporary one (a port in use,
a daemon not running yet) by these numbers, so each has one definition.
"""

from __future__ import annotations

import os

__all__ = [
    "EX_CANTCREAT",
    "EX_CONFIG",
    "EX_IOERR",
    "EX_NOINPUT",
    "EX_OK",
    "EX_OSERR",
    "EX_SOFTWARE",
    "EX_UNAVAILABLE",
    "EX_USAGE",
]

EX_OK: int = os.EX_OK
#: A bad command line.
EX_USAGE: int = os.EX_USAGE
#: The configuration cannot be read at all.
EX_NOINPUT: int = os.EX_NOINPUT
#: The daemon is not running or does not answer.
EX_UNAVAILABLE: int = os.EX_UNAVAILABLE
#: A bug: superd failed in a way it did not expect.
EX_SOFTWARE: int = os.EX_SOFTWARE
#: A listening socket could not be bound (port taken, address missing):
#: retrying later may succeed, unlike EX_CONFIG.
EX_OSERR: int = os.EX_OSERR
#: The state directory cannot be created.
EX_CANTCREAT: int = os.EX_CANTCREAT
#: Reading or writing the ban database failed.
EX_IOERR: int = os.EX_IOERR
#: The configuration was refused (every problem printed).
EX_CONFIG: int = os.EX_CONFIG
