"""
The daemon's command line: ``twistd superd [options]`` and ``superd run``.

``Options.postOptions`` loads the configuration (``-c``, by default
``/etc/superd`` as for every superd command), refusing a bad one with every
problem on stderr and exit status 78 (EX_CONFIG).  A bad command line exits
64 (EX_USAGE) with one line saying what is wrong, as every superd command
does, rather than twistd's status 1 after its whole usage text.
"""

from __future__ import annotations

import os
import sys
from typing import IO, NoReturn, Optional, Sequence

from twisted.python import usage

import superd
from superd.config.errors import ConfigError
from superd.config.model import Configuration
from superd.config.report import report_config_error, report_warnings
from superd.core.exits import EX_CONFIG, EX_NOINPUT, EX_USAGE
from superd.core.paths import DEFAULT_CONFIG, default_state_dir
from superd.core.runtime import RuntimeOptions

__all__ = ["Options"]


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"must be at least 1, not {value}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 3600:
        raise ValueError(f"must be between 0 and 3600 seconds, not {text}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise ValueError(f"must be a port number 1-65535, not {value}")
    return value


def _syslog_ident(text: str) -> str:
    # Log scanners parse "IDENT[PID]: ", so the ident must not contain
    # what would end it early.
    if not text or len(text) > 64 or not text.isprintable() or any(
            c.isspace() or c in ":[]" for c in text):
        raise ValueError(f"must be up to 64 printable characters without spaces, "
                         f"':' or brackets, not {text!r}")
    return text


def _redis_url(text: str) -> str:
    from superd.config.storeurl import parse_redis_url

    parse_redis_url(text)  # ValueError says what is wrong
    return text


class Options(usage.Options):
    """``twistd superd`` options."""

    synopsis = "[-c PATH] [options]"
    longdesc = (
        "Run the services described by xinetd-syntax configuration. PATH is a "
        "directory (every file read as by includedir) or a file such as "
        f"/etc/xinetd.conf; default {DEFAULT_CONFIG}."
    )
    #: How the command is named in usage errors: their prefix, and what
    #: takes ``--help``.
    prefix = "superd"
    command = "twistd superd"
    optFlags = [
        ["strict", None, "Refuse unknown attributes instead of warning about them."],
        ["log-connections", None,
         "Also write each connection's START and EXIT to the main log (the "
         "JSON logger always does; service logs never need this)."],
    ]
    optParameters = [
        ["config", "c", DEFAULT_CONFIG,
         f"Configuration directory or file (default {DEFAULT_CONFIG})."],
        ["state-dir", None, None,
         "Persistent state (bans). Default: /var/lib/superd as root, "
         "else $XDG_STATE_HOME/superd or ~/.local/state/superd."],
        ["limit", None, None, "Cap on running server processes of all services.",
         _positive_int],
        ["grace", None, 5.0, "Seconds between SIGTERM and SIGKILL for children at stop.",
         _seconds],
        ["hosts-allow", None, "/etc/hosts.allow", "hosts_access(5) allow table."],
        ["hosts-deny", None, "/etc/hosts.deny", "hosts_access(5) deny table."],
        ["syslog-ident", None, "superd",
         "Syslog identity of the log_type = SYSLOG lines; xinetd keeps log "
         "scanners keyed on xinetd[PID] (fail2ban, logwatch, logcheck) working.",
         _syslog_ident],
        ["ident-port", None, 113, "Port queried for RFC 1413 USERID.", _port],
        ["backlog", None, 1024, "Listen backlog of stream services.", _positive_int],
        ["metrics", None, None,
         "Serve Prometheus /metrics on this Twisted endpoint, e.g. "
         "tcp:9101:interface=127.0.0.1 (default: no metrics)."],
        ["ban-store", None, None,
         "Share SENSOR bans with other superd hosts through Redis: "
         "redis://[:password@]host[:port][/db]; overrides ban_store in the "
         "configuration's defaults (default: this host only).", _redis_url],
    ]

    def __init__(self) -> None:
        super().__init__()
        self.configuration: Optional[Configuration] = None
        #: Where problems are reported (a StringIO in tests).
        self.stderr: IO[str] = sys.stderr
        #: Where --version is printed.
        self.stdout: IO[str] = sys.stdout

    def opt_version(self) -> NoReturn:
        """Print superd's version and exit."""
        print(f"superd {superd.__version__}", file=self.stdout)
        raise SystemExit(0)

    def _fail(self, message: str, status: int) -> NoReturn:
        print(f"{self.prefix}: {message}", file=self.stderr)
        raise SystemExit(status)

    def parseOptions(self, options: Optional[Sequence[str]] = None) -> None:
        """Parse ``options``; a usage error exits 64 saying what is wrong."""
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            self._fail(f"{e}\n{self.prefix}: see '{self.command} --help'", EX_USAGE)

    def postOptions(self) -> None:
        if not self["config"]:
            self._fail("-c/--config PATH is required (a directory or a file)", EX_USAGE)
        if self["state-dir"] is None:
            self["state-dir"] = default_state_dir(os.geteuid(), os.environ)
        self.configuration = self._load(self["config"])

    def _load(self, path: str) -> Configuration:
        # Imported here so that `twistd --help` stays cheap.
        from superd.config.load import load_configuration

        try:
            configuration = load_configuration(path, strict=self["strict"])
        except ConfigError as e:
            report_config_error(e, self.stderr)
            raise SystemExit(EX_CONFIG) from None
        except OSError as e:
            self._fail(f"cannot read {path}: {e.strerror or e}", EX_NOINPUT)
        report_warnings(configuration.warnings, self.stderr)
        return configuration

    def ban_store(self) -> Optional[str]:
        """The shared ban store's URL: ``--ban-store``, else the file's ``ban_store``."""
        if self["ban-store"]:
            return str(self["ban-store"])
        return self.configuration.ban_store if self.configuration else None

    def runtime_options(self) -> RuntimeOptions:
        """The daemon-wide settings given on the command line."""
        return RuntimeOptions(
            state_dir=self["state-dir"], limit=self["limit"], grace=self["grace"],
            hosts_allow=self["hosts-allow"], hosts_deny=self["hosts-deny"],
            ident_port=self["ident-port"], backlog=self["backlog"],
            syslog_ident=self["syslog-ident"],
        )
