"""
The thin I/O layer: read ``-c PATH`` and its includes, then build the configuration.

``PATH`` is a file (``/etc/xinetd.conf`` works unchanged, with its
``includedir /etc/xinetd.d``) or a directory, read as ``includedir`` reads
one: sorted by name, skipping names that contain ``.`` or end in ``~``, and
anything that is not a regular file.

Relative ``include``/``includedir`` paths resolve against the directory of
the file that names them.  (xinetd resolves them against its working
directory at boot and against ``/`` after a reload, so the same file means
two things; superd deliberately fixes that.)

Every problem of every file is collected, and one ``ConfigError`` carries
them all.
"""

from __future__ import annotations

import os
from typing import List, Optional, Tuple

import attrs

from superd.config.build import build_configuration
from superd.config.environment import LoadEnvironment
from superd.config.errors import Problem
from superd.config.model import Configuration, Location
from superd.config.parse import RawBlock, RawDirective, parse_text

__all__ = ["MAX_INCLUDE_DEPTH", "LoadEnvironment", "load_configuration", "read_tree"]

#: Nesting limit for includes.  Cycles are caught by path, but a path that
#: grows through a symlink (``include ./loop/self``) never repeats.
MAX_INCLUDE_DEPTH = 32


def included_names(names: List[str]) -> List[str]:
    """The directory entries ``includedir`` reads, in its order."""
    return sorted(n for n in names if "." not in n and not n.endswith("~"))


@attrs.define
class _Reader:
    """Reads one configuration tree, following includes, collecting problems."""

    env: LoadEnvironment
    blocks: List[RawBlock] = attrs.Factory(list)
    problems: List[Problem] = attrs.Factory(list)
    sources: List[str] = attrs.Factory(list)

    def problem(self, path: str, at: Optional[Location], message: str) -> None:
        if at is None:
            self.problems.append(Problem(path, 0, None, None, message))
        else:
            self.problems.append(Problem(at.file, at.line, None, None, message))

    def read_dir(self, path: str, at: Optional[Location], stack: Tuple[str, ...]) -> None:
        try:
            names = self.env.list_dir(path)
        except OSError as error:
            self.problem(path, at, f"cannot read directory {path}: {_reason(error)}")
            return
        for name in included_names(names):
            full = _join(path, name)
            if self.env.is_file(full):
                self.read_file(full, at, stack)

    def read_file(self, path: str, at: Optional[Location], stack: Tuple[str, ...]) -> None:
        key = os.path.normpath(os.path.abspath(path))
        if key in stack:
            cycle = " -> ".join((*stack[stack.index(key) :], key))
            self.problem(path, at, f"include cycle: {cycle}")
            return
        if len(stack) >= MAX_INCLUDE_DEPTH:
            self.problem(path, at, f"includes nested more than {MAX_INCLUDE_DEPTH} deep")
            return
        try:
            text = self.env.read_file(path)
        except OSError as error:
            self.problem(path, at, f"cannot read {path}: {_reason(error)}")
            return
        parsed = parse_text(path, text)
        self.sources.append(path)
        self.problems.extend(parsed.problems)
        for item in parsed.items:
            if isinstance(item, RawDirective):
                self.follow(item, path, (*stack, key))
            else:
                self.blocks.append(item)

    def follow(self, directive: RawDirective, path: str, stack: Tuple[str, ...]) -> None:
        target = _join(os.path.dirname(path), directive.path)
        if directive.kind == "include":
            self.read_file(target, directive.location, stack)
        else:
            self.read_dir(target, directive.location, stack)


def _join(directory: str, relative: str) -> str:
    """``relative`` under ``directory``, without ``.`` components (``_clean``)."""
    return _clean(os.path.join(directory, relative))


def _clean(path: str) -> str:
    """
    ``path`` without ``.`` components, so that ``includedir .`` names files
    ``conf/chargen``, not ``conf/./chargen``, in every message.  ``..``
    stays: through a symbolic link it is not the parent it looks like.
    """
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if path.startswith("/"):
        return "/" + "/".join(parts)
    return "/".join(parts) or "."


def _reason(error: OSError) -> str:
    return error.strerror or str(error)


def read_tree(path: str, environment: LoadEnvironment) -> _Reader:
    """Read ``path`` (file or directory) and everything it includes."""
    reader = _Reader(environment)
    path = _clean(path)
    if environment.is_dir(path):
        reader.read_dir(path, None, ())
        if not reader.sources and not reader.problems:
            reader.problem(path, None, "no configuration files in this directory")
    else:
        reader.read_file(path, None, ())
    return reader


def load_configuration(
    path: str, *, environment: Optional[LoadEnvironment] = None, strict: bool = False
) -> Configuration:
    """
    Read, validate and return the configuration at ``path``.

    Raises ``ConfigError`` listing every problem found in every file.  With
    ``strict``, warnings (unknown attributes, trailing-zero wildcards ...)
    are errors too.
    """
    env = environment if environment is not None else LoadEnvironment.system()
    reader = read_tree(path, env)
    return build_configuration(
        reader.blocks, env, strict=strict, problems=reader.problems, sources=reader.sources
    )
