"""
``superd run``: start the daemon in the foreground.

``superd run [--json-log] [options]`` replaces itself (``execv``) with this
interpreter's ``twistd --nodaemon --pidfile= superd [options]``: the
options a supervisor needs (no daemonizing, no pid file) are always there,
the process keeps its pid, and ``-c`` defaults to ``/etc/superd``.  The
main log is superd's readable text (``--logger superd.logs.text_stdout``:
RFC 3339 times, event names, no port chatter); ``--json-log`` selects the
JSON logger (``--logger superd.logs.json_stdout``) instead.  Every other
option is the daemon's own (``twistd superd --help``).  For other
twistd options (``--reactor``, ``--logfile``, ``--umask``...), run ``twistd``
itself.

The options are checked before the ``exec``, so a bad command line exits
64 here; the configuration is read by the daemon after it.
"""

from __future__ import annotations

import os
import sys
from typing import IO, Any, Callable, List, NoReturn, Optional, Sequence, cast

from superd.core.exits import EX_OSERR
from superd.core.paths import DEFAULT_CONFIG
from superd.daemon.options import Options

__all__ = [
    "DEFAULT_CONFIG",
    "EX_OSERR",
    "JSON_LOGGER",
    "TEXT_LOGGER",
    "RunOptions",
    "main",
    "twistd_command",
]

#: The ``twistd --logger`` of ``--json-log``.
JSON_LOGGER = "superd.logs.json_stdout"
#: The ``twistd --logger`` otherwise.
TEXT_LOGGER = "superd.logs.text_stdout"

_JSON_LOG = "--json-log"
# twisted.scripts.twistd has no __main__ block: call its entry point when the
# environment has no twistd script beside the interpreter.
_RUN_TWISTD = "from twisted.scripts.twistd import run; run()"

Exec = Callable[[str, List[str]], NoReturn]


class RunOptions(Options):
    """The daemon's options plus ``--json-log``; parsing them loads nothing."""

    synopsis = "Usage: superd run [--json-log] [options]"
    prefix = command = "superd run"
    longdesc = (
        "Start superd in the foreground, as a supervisor (systemd, supervisord, "
        "runit) wants it: this runs twistd --nodaemon --pidfile= superd "
        "[options] with the same Python, keeping the process id. -c defaults to "
        f"{DEFAULT_CONFIG}. For other twistd options run twistd itself: "
        "twistd --nodaemon --pidfile= [twistd options] superd [options]."
    )
    optParameters = [
        ["config", "c", None, f"Configuration directory or file (default {DEFAULT_CONFIG})."]
        if row[0] == "config" else row
        for row in cast(List[List[Any]], Options.optParameters)
    ]
    optFlags = [
        *Options.optFlags,
        ["json-log", None,
         f"Log one JSON object per event on stdout (twistd --logger {JSON_LOGGER}); "
         f"default: readable text on stdout (twistd --logger {TEXT_LOGGER})."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self.wants_help = False

    def opt_help(self) -> None:
        """Display this help and exit."""
        self.wants_help = True

    opt_h = opt_help

    def postOptions(self) -> None:
        # The daemon reads the configuration itself, after the exec; a
        # password on the command line is refused before it reaches twistd's.
        self.refuse_password_in_url()


def twistd_command(options: Sequence[str], *, json_log: bool, has_config: bool,
                   executable: str, twistd: Optional[str]) -> List[str]:
    """
    The argv that runs the daemon: ``executable`` running the ``twistd``
    script (or twistd's entry point when there is none) with the foreground
    options, then ``superd`` and ``options``, with ``-c`` added unless
    ``has_config``.
    """
    program = [executable, twistd] if twistd else [executable, "-c", _RUN_TWISTD]
    logger = ["--logger", JSON_LOGGER if json_log else TEXT_LOGGER]
    config = [] if has_config else ["-c", DEFAULT_CONFIG]
    return [*program, "--nodaemon", "--pidfile=", *logger, "superd", *config, *options]


def _without_json_log(argv: Sequence[str]) -> List[str]:
    # getopt accepts any unambiguous abbreviation (``--json``), so every
    # spelling of the flag is taken out, not only the full one.
    return [arg for arg in argv
            if not (arg.startswith("--j") and _JSON_LOG.startswith(arg))]


def _twistd_script(executable: str) -> Optional[str]:
    """The ``twistd`` script installed beside ``executable``, if any."""
    script = os.path.join(os.path.dirname(executable), "twistd")
    return script if os.path.isfile(script) else None


def main(argv: Sequence[str], out: IO[str], err: IO[str], *,
         execv: Exec = os.execv, executable: Optional[str] = None) -> int:
    """Check ``argv`` and exec the daemon; returns an exit status only when it cannot."""
    options = RunOptions()
    options.stdout, options.stderr = out, err
    try:
        options.parseOptions(list(argv))
    except SystemExit as e:  # a usage error, said on err
        return int(e.code or 0)
    if options.wants_help:
        print(options, file=out)
        return 0
    executable = executable or sys.executable
    command = twistd_command(
        _without_json_log(argv), json_log=bool(options["json-log"]),
        has_config=options["config"] is not None,
        executable=executable, twistd=_twistd_script(executable))
    out.flush()
    err.flush()
    try:
        execv(command[0], command)
    except OSError as e:
        print(f"superd run: cannot run {command[0]}: {e.strerror or e}", file=err)
        return EX_OSERR
