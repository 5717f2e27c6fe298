"""
Which services a problem stops: the rule behind per-service isolation.

A service block runs only if nothing that may have been meant for it went
wrong.  So a problem stops

* its own service block, when it is inside one (a bad value, a typo'd
  attribute, a line that could not be read, a missing required attribute);
* every service block of its file, when the file could not be read or
  parsed as a whole (not text, a line outside any block): nobody can tell
  which block the broken part belonged to;
* every service, when it is in a ``defaults`` section, or in a file that has
  one: the defaults restrict every service (``only_from``, ``instances`` ...),
  and a service must never run with a restriction dropped.

Pure values; ``build.py`` applies them.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import attrs

from superd.config.errors import Location, Problem

__all__ = ["EVERYTHING", "Blame", "Blamed"]


@attrs.frozen
class Blame:
    """What one problem stops from running."""

    #: The header of the one service block it belongs to.
    block: Optional[Location] = None
    #: Every service block written in this file, or in any file under this
    #: directory.
    path: Optional[str] = None
    #: Every service block.
    everything: bool = False


#: The blame of problems in a defaults section.
EVERYTHING = Blame(everything=True)


def _under(file: str, path: str) -> bool:
    return file == path or file.startswith(path.rstrip("/") + "/")


@attrs.define
class Blamed:
    """Every problem of a load with what it stops; asks whether a block runs."""

    blocks: Dict[Location, List[Problem]] = attrs.Factory(dict)
    paths: Dict[str, List[Problem]] = attrs.Factory(dict)
    everything: List[Problem] = attrs.Factory(list)

    def add(self, problem: Problem, blame: Blame) -> None:
        """Record that ``problem`` stops what ``blame`` names."""
        if blame.everything:
            self.everything.append(problem)
        elif blame.path is not None:
            self.paths.setdefault(blame.path, []).append(problem)
        elif blame.block is not None:
            self.blocks.setdefault(blame.block, []).append(problem)

    def stopping(self, block: Location) -> Tuple[Problem, ...]:
        """The problems that stop the service block whose header is ``block``."""
        found = list(self.blocks.get(block, ()))
        for path, problems in self.paths.items():
            if _under(block.file, path):
                found += problems
        return tuple(dict.fromkeys(found + self.everything))

    def failed_paths(self) -> Tuple[str, ...]:
        """The files and directories whose every service is stopped."""
        return tuple(self.paths)
