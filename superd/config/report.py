"""
Printing configuration findings for a person: errors first, then warnings,
then notes, one per line, then a count -- the same from ``superd check``, the
daemon's start and ``superd migrate``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import IO

from superd.config.errors import ConfigError, ConfigNote, ConfigWarning, Problem, error_count

__all__ = ["error_summary", "report_config_error", "report_findings", "report_warnings"]


def error_summary(problems: Iterable[Problem]) -> str:
    """``N configuration error(s)``, counting those not shown."""
    count = error_count(problems)
    return f"{count} configuration error{'' if count == 1 else 's'}"


def report_findings(problems: Iterable[Problem], warnings: Iterable[ConfigWarning],
                    notes: Iterable[ConfigNote], stream: IO[str]) -> None:
    """Print every problem, then every warning, then every note."""
    for problem in problems:
        print(problem, file=stream)
    report_warnings(warnings, stream)
    for note in notes:
        print(f"note: {note}", file=stream)


def report_config_error(error: ConfigError, stream: IO[str]) -> None:
    """Print every problem of ``error`` (one per line), its warnings and a count."""
    report_findings(error.problems, error.warnings, (), stream)
    print(f"superd: {error_summary(error.problems)}; nothing started", file=stream)


def report_warnings(warnings: Iterable[ConfigWarning], stream: IO[str]) -> None:
    """Print each configuration warning on its own line."""
    for warning in warnings:
        print(f"warning: {warning}", file=stream)
