"""
Printing configuration problems and warnings for a person: one per line,
then a count, the same from ``superd check``, the daemon's start and
``superd migrate``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import IO

from superd.config.errors import ConfigError
from superd.config.model import ConfigWarning

__all__ = ["report_config_error", "report_warnings"]


def report_config_error(error: ConfigError, stream: IO[str]) -> None:
    """Print every problem of ``error`` (one per line) and a count."""
    for problem in error.problems:
        print(problem, file=stream)
    count = len(error.problems)
    plural = "" if count == 1 else "s"
    print(f"superd: {count} configuration error{plural}; nothing started", file=stream)


def report_warnings(warnings: Iterable[ConfigWarning], stream: IO[str]) -> None:
    """Print each configuration warning on its own line."""
    for warning in warnings:
        print(f"warning: {warning}", file=stream)
