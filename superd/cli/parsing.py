"""
The conventions every ``superd`` command line follows, on top of argparse.

* A usage error exits 64 (EX_USAGE, sysexits.h), not argparse's 2: a
  supervisor and a script tell a bad command line from a refused
  configuration (78) or a daemon that does not answer (69).
* ``--help`` and ``--version`` work on every command and subcommand and
  exit 0.
* What a command prints goes to the streams it is given (tests, and
  ``superd.cli.main.main``'s callers), help and usage errors included.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import redirect_stderr, redirect_stdout
from typing import IO, NoReturn, Optional, Sequence, Union

import superd
from superd.core.exits import EX_USAGE

__all__ = ["Parser", "add_version", "parse"]


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors exit 64 with a pointer to ``--help``."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EX_USAGE, f"{self.prog}: error: {message}\n"
                            f"{self.prog}: see '{self.prog} --help'\n")


def add_version(parser: argparse.ArgumentParser) -> None:
    """``--version``: print ``superd VERSION`` and exit 0."""
    parser.add_argument("--version", action="version", version=f"superd {superd.__version__}",
                        help="print superd's version and exit")


def parse(parser: argparse.ArgumentParser, argv: Sequence[str], out: IO[str],
          err: IO[str]) -> Union[argparse.Namespace, int]:
    """
    ``argv`` parsed, or the exit status when parsing ends the command:
    0 after ``--help`` or ``--version`` (printed on ``out``), 64 after a
    usage error (said on ``err``).
    """
    with redirect_stdout(out), redirect_stderr(err):
        try:
            return parser.parse_args(list(argv))
        except SystemExit as e:
            return _status(e.code)


def _status(code: Optional[Union[int, str]]) -> int:
    if code is None:
        return 0
    return code if isinstance(code, int) else EX_USAGE
