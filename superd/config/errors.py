"""
The one error type configuration code raises, and the shape of its messages.

Every problem is reported as ``FILE:LINE: service NAME: ATTRIBUTE: problem``
(parts that do not apply are left out), and every problem found in one pass is
reported together.
"""

from __future__ import annotations

from typing import Iterable, Optional, Tuple

import attrs

__all__ = ["EX_CONFIG", "ConfigError", "Problem", "finding_text"]

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
        where = f"{self.file}:{self.line}" if self.line > 0 else self.file
        return finding_text(where, self.service, self.section, self.attribute,
                            self.message)


def finding_text(where: str, service: Optional[str], section: Optional[str],
                 attribute: Optional[str], message: str) -> str:
    """``WHERE: service NAME: ATTRIBUTE: message`` (or ``WHERE: SECTION: ...``),
    leaving out the parts that are None: the shape of problems and warnings."""
    parts = [where]
    if service is not None:
        parts.append(f"service {service}")
    elif section is not None:
        parts.append(section)
    if attribute is not None:
        parts.append(attribute)
    parts.append(message)
    return ": ".join(parts)


class ConfigError(Exception):
    """The configuration cannot be used; ``problems`` says every reason."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: Tuple[Problem, ...] = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))
