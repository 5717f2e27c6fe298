"""
The one error type configuration code raises, and the shape of its messages.

Every problem is reported as ``FILE:LINE: service NAME: ATTRIBUTE: problem``
(parts that do not apply are left out), and every problem found in one pass is
reported together.
"""

from __future__ import annotations

from typing import Iterable, Optional, Tuple

import attrs

__all__ = ["EX_CONFIG", "ConfigError", "Problem"]

#: sysexits.h EX_CONFIG: the exit status for a configuration superd refuses.
EX_CONFIG = 78


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
        parts = [f"{self.file}:{self.line}" if self.line > 0 else self.file]
        if self.service is not None:
            parts.append(f"service {self.service}")
        elif self.section is not None:
            parts.append(self.section)
        if self.attribute is not None:
            parts.append(self.attribute)
        parts.append(self.message)
        return ": ".join(parts)


class ConfigError(Exception):
    """The configuration cannot be used; ``problems`` says every reason."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: Tuple[Problem, ...] = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))
