"""
The xinetd configuration grammar: text in, raw blocks and directives out.

Pure: no file is opened here.  ``parse_text`` never raises for bad input; it
returns what it could read plus every problem it found, so the loader can
report all errors of all files in one pass.

Grammar (xinetd's, relaxed in two places: ``{`` may end the header line,
and the space before OP may be left out):

* whole-line ``#`` comments only (a ``#`` after values is a value);
* ``service NAME`` or ``defaults``, then ``{`` alone on the next line (or at
  the end of the header line), attribute lines, ``}`` alone on its line;
* attribute lines ``NAME OP VALUE...`` with OP one of ``=`` ``+=`` ``-=``;
  spaces around OP are optional (xinetd requires the one before it);
* values split on spaces and tabs; no quoting, no escapes;
* ``include FILE`` and ``includedir DIR`` at top level only.
"""

from __future__ import annotations

import re
from typing import Iterator, List, Optional, Tuple, Union

import attrs

from superd.config.errors import Problem
from superd.config.model import Location

__all__ = [
    "MAX_LINE_BYTES",
    "ParsedFile",
    "RawAttribute",
    "RawBlock",
    "RawDirective",
    "parse_text",
]

#: xinetd's line buffer: longer lines are an error.
MAX_LINE_BYTES = 16 * 1024

_ATTRIBUTE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)[ \t]*(\+=|-=|=)(.*)$")
_BLANKS = re.compile(r"[ \t]+")


@attrs.frozen
class RawAttribute:
    """One ``name op values`` line, unvalidated."""

    name: str
    op: str
    values: Tuple[str, ...]
    location: Location


@attrs.frozen
class RawBlock:
    """A ``service NAME`` (``name`` set) or ``defaults`` (``name`` None) block."""

    name: Optional[str]
    location: Location
    attributes: Tuple[RawAttribute, ...]
    #: False when the file ended (or another block began) before its ``}``:
    #: its attributes may be incomplete, so only their values are checked.
    closed: bool = True

    @property
    def is_defaults(self) -> bool:
        """True for the ``defaults`` section."""
        return self.name is None


@attrs.frozen
class RawDirective:
    """``include FILE`` or ``includedir DIR`` (``kind`` is the keyword)."""

    kind: str
    path: str
    location: Location


RawItem = Union[RawBlock, RawDirective]


@attrs.frozen
class ParsedFile:
    """Everything read from one file, in order, and what was wrong with it."""

    source: str
    items: Tuple[RawItem, ...]
    problems: Tuple[Problem, ...]


def _words(text: str) -> List[str]:
    """Split on spaces and tabs only, as xinetd does."""
    return [w for w in _BLANKS.split(text) if w]


def _lines(text: str) -> Iterator[Tuple[int, str]]:
    """Numbered lines, without their line ending (a CR before LF is dropped)."""
    for number, line in enumerate(text.split("\n"), start=1):
        yield number, line[:-1] if line.endswith("\r") else line


def _is_ignorable(line: str) -> bool:
    stripped = line.strip(" \t")
    return not stripped or stripped.startswith("#")


@attrs.define
class _Parser:
    """The state machine behind ``parse_text``."""

    source: str
    items: List[RawItem] = attrs.Factory(list)
    problems: List[Problem] = attrs.Factory(list)
    #: The open block: its name (None for defaults), header location, lines.
    block: Optional[Tuple[Optional[str], Location, List[RawAttribute]]] = None
    #: True between a header and its ``{``.
    expect_brace: bool = False

    def problem(self, line: int, message: str, service: Optional[str] = None) -> None:
        in_defaults = self.block is not None and self.block[0] is None
        section = "defaults" if in_defaults else None
        self.problems.append(Problem(self.source, line, service, None, message, section))

    def here(self, line: int) -> Location:
        return Location(self.source, line)

    @property
    def service(self) -> Optional[str]:
        return self.block[0] if self.block is not None else None

    def feed(self, number: int, line: str) -> None:
        if len(line.encode("utf-8", "surrogateescape")) > MAX_LINE_BYTES:
            self.problem(number, f"line longer than {MAX_LINE_BYTES} bytes", self.service)
            return
        if _is_ignorable(line):
            return
        words = _words(line)
        if self.expect_brace:
            self.expect_brace = False
            if words == ["{"]:
                return
            self.problem(number, "expected '{' on the line after the header", self.service)
        if self.block is not None:
            self.feed_block(number, line, words)
        else:
            self.feed_top(number, words)

    def feed_top(self, number: int, words: List[str]) -> None:
        if words[0] == "defaults{":
            words = ["defaults", "{", *words[1:]]
        keyword = words[0]
        if keyword in ("service", "defaults"):
            self.open_block(number, words)
        elif keyword in ("include", "includedir"):
            if len(words) != 2:
                self.problem(number, f"{keyword}: expected exactly one path")
                return
            self.items.append(RawDirective(keyword, words[1], self.here(number)))
        elif keyword in ("{", "}"):
            self.problem(number, f"unexpected '{keyword}' outside a service or defaults block")
        else:
            self.problem(
                number,
                "expected 'service NAME', 'defaults', 'include FILE' or "
                f"'includedir DIR', got {' '.join(words)[:80]!r}",
            )

    def open_block(self, number: int, words: List[str]) -> None:
        if len(words) > 1 and words[-1] != "{" and words[-1].endswith("{"):
            words = [*words[:-1], words[-1][:-1], "{"]  # ``service echo{``
        brace = words[-1] == "{" and len(words) > 1
        if brace:
            words = words[:-1]
        if words[0] == "service":
            if len(words) != 2:
                self.problem(number, "expected 'service NAME' (one name, no spaces)")
                name = words[1] if len(words) > 1 else "?"
            else:
                name = words[1]
        else:
            name = None
            if len(words) != 1:
                self.problem(number, "expected 'defaults' alone on its line")
        self.block = (name, self.here(number), [])
        self.expect_brace = not brace

    def close_block(self, closed: bool = True) -> None:
        assert self.block is not None
        name, location, attributes = self.block
        self.items.append(RawBlock(name, location, tuple(attributes), closed))
        self.block = None

    def feed_block(self, number: int, line: str, words: List[str]) -> None:
        assert self.block is not None
        if words == ["}"]:
            self.close_block()
            return
        match = _ATTRIBUTE.match(line.strip(" \t"))
        if match is not None:
            name, op, rest = match.groups()
            self.block[2].append(RawAttribute(name, op, tuple(_words(rest)), self.here(number)))
            return
        if words[0] in ("service", "defaults"):
            self.unclosed()
            self.feed_top(number, words)
            return
        if words[0] in ("include", "includedir"):
            message = f"{words[0]} is only allowed outside service and defaults blocks"
        elif "}" in words:
            message = "'}' must be alone on its line"
        else:
            message = f"expected 'ATTRIBUTE = VALUE' or '}}', got {line.strip()[:80]!r}"
        self.problem(number, message, self.service)

    def unclosed(self) -> None:
        assert self.block is not None
        name, location, _ = self.block
        self.problem(location.line, "block opened here has no closing '}'", name)
        self.close_block(closed=False)

    def finish(self) -> ParsedFile:
        if self.block is not None:
            self.unclosed()
        return ParsedFile(self.source, tuple(self.items), tuple(self.problems))


def parse_text(source_name: str, text: str) -> ParsedFile:
    """
    Read one configuration file's text.

    ``source_name`` is used in locations and messages only.  Every syntax
    problem is returned in ``ParsedFile.problems``; nothing is raised.
    """
    parser = _Parser(source_name)
    for number, line in _lines(text):
        parser.feed(number, line)
    return parser.finish()
