"""
The thin I/O layer: read ``-c PATH`` and its includes, then build the configuration.

``PATH`` is a file (``/etc/xinetd.conf`` works unchanged, with its
``includedir /etc/xinetd.d``) or a directory, read as ``includedir`` reads
one: sorted by name, skipping names that contain ``.`` or end in ``~``, and
anything that is not a regular file (each listed in ``Configuration.notes``).

Relative ``include``/``includedir`` paths resolve against the directory of
the file that names them.  (xinetd resolves them against its working
directory at boot and against ``/`` after a reload, so the same file means
two things; superd deliberately fixes that.)

Every file is read as ``superd.core.files.read_regular_file`` reads it
(regular files of at most 4 MiB, never blocking); a file that is not text
at all is one problem.  Every problem of every file is collected: one
``ConfigError`` carries them all, or, with ``isolate=True``, the
``Configuration`` lists them with the services they stop.
"""

from __future__ import annotations

import os
import re
from typing import List, Optional, Tuple

import attrs

from superd.config.build import build_configuration
from superd.config.environment import LoadEnvironment
from superd.config.errors import ConfigError, ConfigNote, Location, Problem
from superd.config.isolation import EVERYTHING, Blame
from superd.config.model import Configuration
from superd.config.parse import ParsedFile, RawBlock, RawDirective, parse_text
from superd.config.text import not_text_reason, printable, service_headers

__all__ = ["MAX_INCLUDE_DEPTH", "LoadEnvironment", "load_configuration", "read_tree"]

#: Nesting limit for includes.  Cycles are caught by path, but a path that
#: grows through a symlink (``include ./loop/self``) never repeats.
MAX_INCLUDE_DEPTH = 32

_SKIPPED_NAME = "skipped: includedir reads no name that contains '.' or ends in '~'"
_DEFAULTS_LINE = re.compile(r"^[ \t]*defaults[ \t{]*$", re.MULTILINE)


def included_names(names: List[str]) -> List[str]:
    """The directory entries ``includedir`` reads (by name), in its order."""
    return sorted(n for n in names if "." not in n and not n.endswith("~"))


@attrs.define
class _Reader:
    """Reads one configuration tree, following includes, collecting problems."""

    env: LoadEnvironment
    blocks: List[RawBlock] = attrs.Factory(list)
    #: Problems outside any block, with what each stops.
    problems: List[Tuple[Problem, Blame]] = attrs.Factory(list)
    sources: List[str] = attrs.Factory(list)
    notes: List[ConfigNote] = attrs.Factory(list)
    #: Services of files that could not be parsed, known by their header.
    recovered: List[Tuple[Location, str]] = attrs.Factory(list)

    def problem(self, path: str, at: Optional[Location], message: str,
                blame: Optional[Blame] = None) -> None:
        """A problem with ``path`` (reported at ``at``, the line naming it, if
        any); by default it stops every service ``path`` holds."""
        where = Location(path, 0) if at is None else at
        found = Problem(where.file, where.line, None, None, message)
        self.problems.append((found, blame or Blame(path=path)))

    def read_dir(self, path: str, at: Optional[Location], stack: Tuple[str, ...]) -> None:
        try:
            names = self.env.list_dir(path)
        except OSError as error:
            self.problem(path, at, f"cannot read directory {path}: {_reason(error)}")
            return
        read = set(included_names(names))
        for name in sorted(names):
            full = _join(path, name)
            if name not in read:
                self.notes.append(ConfigNote(full, _SKIPPED_NAME))
                continue
            why = self.env.why_not_file(full)
            if why is None:
                self.read_file(full, at, stack)
            else:
                self.notes.append(ConfigNote(full, f"skipped: {why}"))

    def read_file(self, path: str, at: Optional[Location], stack: Tuple[str, ...]) -> None:
        key = os.path.normpath(os.path.abspath(path))
        if key in stack:
            cycle = " -> ".join((*stack[stack.index(key) :], key))
            self.problem(path, at, f"include cycle: {cycle}", Blame())
            return
        if len(stack) >= MAX_INCLUDE_DEPTH:
            self.problem(path, at, f"includes nested more than {MAX_INCLUDE_DEPTH} deep")
            return
        try:
            text = self.env.read_file(path)
        except OSError as error:
            self.problem(path, at, f"cannot read {path}: {_reason(error)}")
            return
        self.sources.append(path)
        if not self.is_text(path, text):
            return
        parsed = parse_text(path, text)
        self.add_problems(parsed)
        for item in parsed.items:  # blocks and includes in reading order
            if isinstance(item, RawDirective):
                self.follow(item, path, (*stack, key))
            else:
                self.blocks.append(item)

    def is_text(self, path: str, text: str) -> bool:
        """False (with one problem, and the services it names) for a file
        that is not a configuration file at all."""
        refused = not_text_reason(text)
        if refused is None:
            return True
        line, reason = refused
        blame = EVERYTHING if _DEFAULTS_LINE.search(text) else Blame(path=path)
        self.problem(path, Location(path, line), reason, blame)
        self.recovered += [(Location(path, n), name) for n, name in service_headers(text)]
        return False

    def add_problems(self, parsed: ParsedFile) -> None:
        """The problems of ``parsed`` outside its blocks: they stop every
        service of the file."""
        if not parsed.top_level:
            return
        # A file with defaults: the broken line may have been meant for them.
        has_defaults = any(isinstance(item, RawBlock) and item.is_defaults
                           for item in parsed.items)
        blame = EVERYTHING if has_defaults else Blame(path=parsed.source)
        self.problems += [(problem, blame) for problem in parsed.top_level]

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
    return printable(error.strerror or str(error))


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
    path: str, *, environment: Optional[LoadEnvironment] = None, strict: bool = False,
    isolate: bool = False,
) -> Configuration:
    """
    Read, validate and return the configuration at ``path``.

    By default all or nothing: raises ``ConfigError`` listing every problem
    found in every file (and, in ``warnings``, every warning).  With
    ``isolate``, never raises for what the files hold: the returned
    ``Configuration`` runs the services nothing is wrong with, and lists
    the others in ``failed`` (and ``failed_files``), every error in
    ``problems`` (see ``superd.config.isolation`` for which problem stops
    which services).  With ``strict``, warnings (unknown attributes,
    trailing-zero wildcards ...) are errors too.
    """
    env = environment if environment is not None else LoadEnvironment.system()
    reader = read_tree(path, env)
    config = build_configuration(
        reader.blocks, env, strict=strict, problems=reader.problems, sources=reader.sources,
        notes=reader.notes, recovered=reader.recovered, isolate=isolate,
    )
    if not isolate and config.problems:
        raise ConfigError(config.problems, config.warnings)
    return config
