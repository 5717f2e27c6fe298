"""
What loading finds wrong or worth saying, and the shape of its messages.

Every finding is reported as ``FILE:LINE: service NAME: ATTRIBUTE: message``
(parts that do not apply are left out): a ``Problem`` is an error, a
``ConfigWarning`` something superd can live with, a ``ConfigNote`` a fact
about the files (one skipped for its name, a broken symbolic link).  Every
finding of one pass is reported together; ``ConfigError`` carries them when
the configuration is refused as a whole.
"""

from __future__ import annotations

from typing import Dict, Iterable, Optional, Sequence, Tuple

import attrs

from superd.config.text import printable

__all__ = [
    "MAX_FILE_ERRORS",
    "ConfigError",
    "ConfigNote",
    "ConfigWarning",
    "Location",
    "Omitted",
    "Problem",
    "capped",
    "error_count",
    "finding_text",
]

#: Errors shown per file; a garbage file must not flood the terminal.
MAX_FILE_ERRORS = 20


@attrs.frozen
class Location:
    """Where something was written: a file name and a 1-based line number."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@attrs.frozen
class Problem:
    """One thing wrong with the configuration, and where."""

    file: str
    line: int
    service: Optional[str]
    attribute: Optional[str]
    message: str
    #: A block that is not a service (``defaults``), shown where the
    #: service would be.
    section: Optional[str] = None

    def __str__(self) -> str:
        # Line 0 means "the file as a whole" (unreadable, not found ...).
        where = f"{self.file}:{self.line}" if self.line > 0 else self.file
        return finding_text(where, self.service, self.section, self.attribute,
                            self.message)


@attrs.frozen
class Omitted(Problem):
    """Stands for the errors of one file beyond ``MAX_FILE_ERRORS``."""

    count: int = 0


def capped(problems: Sequence[Problem]) -> Tuple[Problem, ...]:
    """``problems`` with at most ``MAX_FILE_ERRORS`` per file, the rest of a
    file counted in one ``Omitted`` after its last shown error."""
    seen: Dict[str, int] = {}
    kept = []
    for problem in problems:
        seen[problem.file] = seen.get(problem.file, 0) + 1
        if seen[problem.file] <= MAX_FILE_ERRORS:
            kept.append(problem)
    for file, count in seen.items():
        if count > MAX_FILE_ERRORS:
            rest = count - MAX_FILE_ERRORS
            last = max(i for i, p in enumerate(kept) if p.file == file)
            plural = "s" if rest != 1 else ""
            kept.insert(last + 1, Omitted(file, 0, None, None,
                                          f"{rest} more error{plural} in this file not shown",
                                          count=rest))
    return tuple(kept)


def error_count(problems: Iterable[Problem]) -> int:
    """How many errors ``problems`` stands for (an ``Omitted`` for its count)."""
    return sum(p.count if isinstance(p, Omitted) else 1 for p in problems)


@attrs.frozen
class ConfigWarning:
    """A non-fatal finding (unknown attribute, trailing-zero wildcard ...)."""

    location: Location
    service: Optional[str]
    attribute: Optional[str]
    message: str
    #: A block that is not a service (``defaults``), shown where the
    #: service would be.
    section: Optional[str] = None

    def __str__(self) -> str:
        return finding_text(str(self.location), self.service, self.section,
                            self.attribute, self.message)


@attrs.frozen
class ConfigNote:
    """A fact about the files worth a word: ``path`` was skipped, and why."""

    path: str
    message: str

    def __str__(self) -> str:
        return finding_text(self.path, None, None, None, self.message)


def finding_text(where: str, service: Optional[str], section: Optional[str],
                 attribute: Optional[str], message: str) -> str:
    """``WHERE: service NAME: ATTRIBUTE: message`` (or ``WHERE: SECTION: ...``),
    leaving out the parts that are None: the shape of every finding.  Bytes
    that are not UTF-8 and control characters are shown escaped."""
    parts = [where]
    if service is not None:
        parts.append(f"service {service}")
    elif section is not None:
        parts.append(section)
    if attribute is not None:
        parts.append(attribute)
    parts.append(message)
    return printable(": ".join(parts))


class ConfigError(Exception):
    """
    The configuration cannot be used; ``problems`` says every reason, and
    ``warnings`` what else was found (printed after the problems).
    """

    def __init__(self, problems: Iterable[Problem],
                 warnings: Iterable[ConfigWarning] = ()) -> None:
        self.problems: Tuple[Problem, ...] = tuple(problems)
        self.warnings: Tuple[ConfigWarning, ...] = tuple(warnings)
        super().__init__("\n".join(str(p) for p in self.problems))
