"""
``log_type = SYSLOG facility [level]``: service log lines sent to syslog.

The stdlib ``syslog`` module talks to the local syslog socket itself (and
formats with ``"%s"``, so a line is never a format string).  ``openlog`` is
process-wide, so superd calls it once with its ident (``superd``, or
``--syslog-ident``'s, e.g. ``xinetd``) and passes each
service's facility in the priority of every message: services with different
facilities then coexist.  The message is the bare xinetd line, as xinetd
(``superd[PID]: START: ...``).
"""

from __future__ import annotations

import syslog as _stdlib_syslog
from collections.abc import Mapping
from typing import Any

from superd.config.model import SyslogLog
from superd.observe.servicelog.filelog import one_line

__all__ = ["FACILITIES", "LEVELS", "SyslogSink", "open_syslog"]

#: xinetd's facility words (``log_type = SYSLOG facility [level]``).
FACILITIES: Mapping[str, int] = {
    "daemon": _stdlib_syslog.LOG_DAEMON,
    "auth": _stdlib_syslog.LOG_AUTH,
    "authpriv": _stdlib_syslog.LOG_AUTHPRIV,
    "user": _stdlib_syslog.LOG_USER,
    "mail": _stdlib_syslog.LOG_MAIL,
    "lpr": _stdlib_syslog.LOG_LPR,
    "news": _stdlib_syslog.LOG_NEWS,
    "uucp": _stdlib_syslog.LOG_UUCP,
    # LOG_FTP is missing from typeshed's stub; it is 11 << 3 everywhere.
    "ftp": getattr(_stdlib_syslog, "LOG_FTP", 11 << 3),
    **{f"local{n}": getattr(_stdlib_syslog, f"LOG_LOCAL{n}") for n in range(8)},
}

#: xinetd's level words.
LEVELS: Mapping[str, int] = {
    "emerg": _stdlib_syslog.LOG_EMERG,
    "alert": _stdlib_syslog.LOG_ALERT,
    "crit": _stdlib_syslog.LOG_CRIT,
    "err": _stdlib_syslog.LOG_ERR,
    "warning": _stdlib_syslog.LOG_WARNING,
    "notice": _stdlib_syslog.LOG_NOTICE,
    "info": _stdlib_syslog.LOG_INFO,
    "debug": _stdlib_syslog.LOG_DEBUG,
}


def open_syslog(module: Any, ident: str = "superd") -> None:
    """``openlog(ident, LOG_PID|LOG_NDELAY, LOG_DAEMON)`` on ``module``."""
    module.openlog(ident, module.LOG_PID | module.LOG_NDELAY,
                   module.LOG_DAEMON)


class SyslogSink:
    """Sends one service's lines to syslog at its facility and level."""

    def __init__(self, target: SyslogLog, module: Any) -> None:
        """``module`` is the stdlib ``syslog`` module (a fake in tests)."""
        self.target = target
        self._module = module
        # The loader validated the words; an unknown one (a model built by
        # hand) falls back to xinetd's defaults rather than failing a write.
        facility = FACILITIES.get(target.facility.lower(),
                                  _stdlib_syslog.LOG_DAEMON)
        level = LEVELS.get(target.level.lower(), _stdlib_syslog.LOG_INFO)
        self.priority = facility | level

    @property
    def is_open(self) -> bool:
        """Always True: syslog has nothing to close or fill up."""
        return True

    def open(self) -> None:
        """Nothing to open: the router calls ``openlog`` once."""

    def reopen(self) -> None:
        """Nothing to reopen: syslogd owns the files."""

    def close(self) -> None:
        """Nothing to close per service."""

    def write(self, service_id: str, line: str, now: float) -> None:
        """Send ``line``; the stdlib module drops it silently if syslogd is away."""
        self._module.syslog(self.priority, one_line(line))
