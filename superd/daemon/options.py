"""
The daemon's command line: ``twistd superd [options]`` and ``superd run``.

``Options.postOptions`` loads the configuration (``-c``, by default
``/etc/superd`` as for every superd command), each service's errors apart
(``superd.daemon.isolation``).  It refuses the configuration, with every
problem on stderr and exit status 78 (EX_CONFIG), only when no service of it
can run, or when ``--strict`` or ``all_or_nothing = yes`` asks for all or
nothing.  A bad command line exits 64 (EX_USAGE) with one line saying what
is wrong, as every superd command does, rather than twistd's status 1 after
its whole usage text.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping
from typing import IO, NoReturn, Optional, Sequence

from twisted.python import usage

import superd
from superd.config.errors import ConfigError
from superd.config.model import Configuration
from superd.config.report import report_config_error, report_warnings
from superd.config.storeurl import PASSWORD_VARIABLE, url_has_password
from superd.core.exits import EX_CONFIG, EX_NOINPUT, EX_USAGE
from superd.core.paths import DEFAULT_CONFIG, default_state_dir
from superd.core.runtime import RuntimeOptions
from superd.daemon.banstoreconfig import BanStoreSettings, settings_for
from superd.daemon.isolation import bounded, refuses

__all__ = ["Options"]


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"must be at least 1, not {value}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 64:
        raise ValueError(f"must be between 0 and 64, not {value}")
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


def _cgroup(text: str) -> str:
    if text not in ("auto", "none") and not text.startswith("/"):
        raise ValueError(f"expected auto, none or an absolute path, not {text!r}")
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
        ["strict", None,
         "Refuse unknown attributes instead of warning about them, and refuse "
         "the whole configuration (at start and at reload) on any error, instead "
         "of running every service without one (as all_or_nothing = yes does)."],
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
        ["cgroup", None, "auto",
         "Where each service's cgroup v2 goes (it holds every process its servers "
         "start): a directory of the cgroup2 file system, 'auto' (superd's own "
         "cgroup if delegated to it, e.g. systemd's Delegate=yes) or 'none' "
         "(process groups only).", _cgroup],
        ["spawn-helpers", None, 0,
         "Helper processes that start servers, so that superd never waits for a "
         "server's exec (default 0: superd starts them itself, without waiting "
         "where its compiled clone module is built, else with spawn threads when "
         "execs are slow).", _count],
        ["metrics", None, None,
         "Serve Prometheus /metrics on this Twisted endpoint, e.g. "
         "tcp:9101:interface=127.0.0.1 (default: no metrics)."],
        ["ban-store", None, None,
         "Share SENSOR bans with other superd hosts through Redis: "
         "redis[s]://[user@]host[:port][/db][?ca=PATH] (rediss: TLS); overrides "
         "ban_store in the configuration's defaults (default: this host only). "
         "No password here: every local user can read a command line.", _redis_url],
        ["ban-store-password-file", None, None,
         "File holding the ban store's password (else $SUPERD_BAN_STORE_PASSWORD, "
         "else ban_store_password_file in the configuration's defaults)."],
    ]

    def __init__(self, environ: Optional[MutableMapping[str, str]] = None) -> None:
        super().__init__()
        self.configuration: Optional[Configuration] = None
        #: Where problems are reported (a StringIO in tests).
        self.stderr: IO[str] = sys.stderr
        #: Where the ban store's password variable is taken from (and out of).
        self._environ = os.environ if environ is None else environ
        #: The shared ban store, once the options are checked (None: none).
        self.ban_store_settings: Optional[BanStoreSettings] = None
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
        self.refuse_password_in_url()
        if self["state-dir"] is None:
            self["state-dir"] = default_state_dir(os.geteuid(), os.environ)
        self.configuration = self._load(self["config"])
        try:
            self.ban_store_settings = settings_for(
                self.ban_store(), option_password_file=self["ban-store-password-file"],
                config_password_file=self.configuration.ban_store_password_file,
                environ=self._environ,
                warn=lambda text: print(f"superd: warning: {text}", file=self.stderr))
        except ValueError as e:
            self._fail(f"ban store: {e}", EX_CONFIG)

    def _load(self, path: str) -> Configuration:
        # Imported here so that `twistd --help` stays cheap.
        from superd.config.load import load_configuration

        try:
            configuration = bounded(load_configuration(path, strict=self["strict"],
                                                       isolate=True))
        except OSError as e:
            self._fail(f"cannot read {path}: {e.strerror or e}", EX_NOINPUT)
        if refuses(configuration, self["strict"]):
            report_config_error(ConfigError(configuration.problems, configuration.warnings),
                                self.stderr)
            raise SystemExit(EX_CONFIG)
        # The errors of services that do not run are printed once the
        # handlers are built (superd.daemon.tap.assemble): some fail only then.
        report_warnings(configuration.warnings, self.stderr)
        return configuration

    def refuse_password_in_url(self) -> None:
        """Exit 64 if ``--ban-store`` carries a password: it is too late to
        hide this one, but the daemon must not run for months with it."""
        if self["ban-store"] and url_has_password(self["ban-store"]):
            self._fail("--ban-store: a password in the URL can be read by every local "
                       "user (ps, /proc/PID/cmdline); give it with "
                       f"--ban-store-password-file FILE or {PASSWORD_VARIABLE}", EX_USAGE)

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
            ident_port=self["ident-port"], backlog=self["backlog"], cgroup=self["cgroup"],
            syslog_ident=self["syslog-ident"], spawn_helpers=self["spawn-helpers"],
        )
