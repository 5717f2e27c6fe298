"""
The xinetd configuration grammar: text in, raw blocks and directives out.

Pure: no file is opened here.  ``parse_text`` never raises for bad input; it
returns what it could read plus every problem it found, so the loader can
report all errors of all files in one pass.

Grammar (xinetd's, relaxed in two places: ``{`` may end the header line,
and the space before OP may be left out):

* whole-line ``#`` comments only (a ``#`` after values is read as values,
  which the loader refuses: ``draft.py``);
* ``service NAME`` or ``defaults``, then ``{`` alone on the next line (or at
  the end of the header line), attribute lines, ``}`` alone on its line;
* attribute lines ``NAME OP VALUE...`` with OP one of ``=`` ``+=`` ``-=``;
  spaces around OP are optional (xinetd requires the one before it);
* values split on spaces and tabs; no quoting, no escapes;
* ``include FILE`` and ``includedir DIR`` at top level only.

A problem inside a block belongs to that block (``RawBlock.problems``): the
block is incomplete and cannot run.  A misspelt header (``servce echo``,
``defualts``) still opens its block, so that what it would have defined is
known to have failed; any other line outside a block is a problem of the
file, and a ``{`` right after it opens a block nobody can name, skipped.
Lines with bytes that are not UTF-8 or with control characters are never
used.
"""

from __future__ import annotations

import re
from typing import Iterator, List, Optional, Tuple, Union

import attrs

from superd.config.errors import Location, Problem
from superd.config.text import bad_characters, closest, printable

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
_KEYWORDS = ("service", "defaults", "include", "includedir")
#: The name of a ``service`` header without one.
_NAMELESS = "?"


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
    #: Syntax problems inside the block (its lines that could not be read):
    #: the block is incomplete, as an unclosed one is.
    problems: Tuple[Problem, ...] = ()

    @property
    def is_defaults(self) -> bool:
        """True for the ``defaults`` section."""
        return self.name is None

    @property
    def complete(self) -> bool:
        """True when every line of the block was read."""
        return self.closed and not self.problems


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
    #: Every syntax problem, in line order.
    problems: Tuple[Problem, ...]
    #: The problems outside any block (also in ``problems``): lines that
    #: belong to no block, so no one can tell what they were meant to do.
    top_level: Tuple[Problem, ...] = ()


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


def _unknown_keyword(words: List[str]) -> str:
    """The message for a top-level line that is not a header or directive."""
    suggestion = closest(words[0], _KEYWORDS)
    if suggestion is not None:
        return f"unknown keyword {words[0]!r}; did you mean {suggestion!r}?"
    return ("expected 'service NAME', 'defaults', 'include FILE' or "
            f"'includedir DIR', got {' '.join(words)[:80]!r}")


@attrs.define
class _OpenBlock:
    """A block being read: header, attribute lines and problems so far."""

    name: Optional[str]
    location: Location
    attributes: List[RawAttribute] = attrs.Factory(list)
    problems: List[Problem] = attrs.Factory(list)


@attrs.define
class _Parser:
    """The state machine behind ``parse_text``."""

    source: str
    items: List[RawItem] = attrs.Factory(list)
    problems: List[Problem] = attrs.Factory(list)
    top_level: List[Problem] = attrs.Factory(list)
    block: Optional[_OpenBlock] = None
    #: True between a header and its ``{``.
    expect_brace: bool = False
    #: The last top-level line was not understood: a ``{`` now opens a
    #: block nobody can name, skipped (``skipping``) up to its ``}``.
    after_junk: bool = False
    skipping: bool = False

    def problem(self, line: int, message: str) -> None:
        """Record a problem: the open block's, or one outside any block."""
        if self.block is None:
            found = Problem(self.source, line, None, None, message)
            self.top_level.append(found)
        else:
            name = self.block.name
            section = "defaults" if name is None else None
            shown = None if name == _NAMELESS else name
            found = Problem(self.source, line, shown, None, message, section)
            self.block.problems.append(found)
        self.problems.append(found)

    def here(self, line: int) -> Location:
        return Location(self.source, line)

    def feed(self, number: int, line: str) -> None:
        if len(line.encode("utf-8", "surrogateescape")) > MAX_LINE_BYTES:
            self.problem(number, f"line longer than {MAX_LINE_BYTES} bytes")
            return
        if _is_ignorable(line):
            return
        words = _words(line)
        bad = bad_characters(line)
        if bad is not None:
            self.feed_bad(number, words, bad)
            return
        if self.expect_brace:
            self.expect_brace = False
            if words == ["{"]:
                return
            self.problem(number, "expected '{' on the line after the header")
        if self.skipping:
            self.skip(number, words)
        elif self.block is not None:
            self.feed_block(number, line, words)
        else:
            self.feed_top(number, words)

    def feed_bad(self, number: int, words: List[str], bad: str) -> None:
        """A line with bytes that are not UTF-8 or control characters: never
        used, but a header still opens its block (which then cannot run)."""
        self.expect_brace = False
        if words[0] == "service":
            self.skipping = False
            if self.block is not None:
                self.unclosed()
            self.open_block(number, [printable(word) for word in words])
        elif self.skipping:
            return
        self.problem(number, bad)

    def skip(self, number: int, words: List[str]) -> None:
        if words == ["}"]:
            self.skipping = False
        elif words[0] in ("service", "defaults"):
            self.skipping = False
            self.feed_top(number, words)

    def feed_top(self, number: int, words: List[str]) -> None:
        if words[0] == "defaults{":
            words = ["defaults", "{", *words[1:]]
        keyword = words[0]
        junk, self.after_junk = self.after_junk, False
        if keyword in ("service", "defaults"):
            self.open_block(number, words)
        elif keyword in ("include", "includedir"):
            if len(words) != 2:
                self.problem(number, f"{keyword}: expected exactly one path")
                return
            self.items.append(RawDirective(keyword, words[1], self.here(number)))
        elif words == ["{"] and junk:
            self.skipping = True  # the junk above was its header; reported already
        elif keyword in ("{", "}"):
            self.problem(number, f"unexpected '{keyword}' outside a service or defaults block")
        else:
            self.feed_junk(number, words)

    def feed_junk(self, number: int, words: List[str]) -> None:
        """A top-level line that is not a header: if it is a misspelt one
        (``servce echo``, ``defualts``), its block is read (and cannot run)."""
        suggestion = closest(words[0], ("service", "defaults"))
        shape = 2 if suggestion == "service" else 1
        if suggestion is not None and len(words) - (words[-1] == "{") == shape:
            self.open_block(number, [suggestion, *words[1:]])
            self.problem(number, _unknown_keyword(words))
            return
        self.problem(number, _unknown_keyword(words))
        self.after_junk = True

    def open_block(self, number: int, words: List[str]) -> None:
        if len(words) > 1 and words[-1] != "{" and words[-1].endswith("{"):
            words = [*words[:-1], words[-1][:-1], "{"]  # ``service echo{``
        brace = words[-1] == "{" and len(words) > 1
        if brace:
            words = words[:-1]
        if words[0] == "service":
            name: Optional[str] = words[1] if len(words) > 1 else _NAMELESS
        else:
            name = None
        self.block = _OpenBlock(name, self.here(number))
        self.expect_brace = not brace
        if words[0] == "service" and len(words) != 2:
            self.problem(number, "expected 'service NAME' (one name, no spaces)")
        elif words[0] == "defaults" and len(words) != 1:
            self.problem(number, "expected 'defaults' alone on its line")

    def close_block(self, closed: bool = True) -> None:
        assert self.block is not None
        block = self.block
        self.items.append(RawBlock(block.name, block.location, tuple(block.attributes),
                                   closed, tuple(block.problems)))
        self.block = None

    def feed_block(self, number: int, line: str, words: List[str]) -> None:
        assert self.block is not None
        if words == ["}"]:
            self.close_block()
            return
        match = _ATTRIBUTE.match(line.strip(" \t"))
        if match is not None:
            name, op, rest = match.groups()
            attribute = RawAttribute(name, op, tuple(_words(rest)), self.here(number))
            self.block.attributes.append(attribute)
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
        self.problem(number, message)

    def unclosed(self) -> None:
        assert self.block is not None
        self.problem(self.block.location.line, "block opened here has no closing '}'")
        self.close_block(closed=False)

    def finish(self) -> ParsedFile:
        if self.block is not None:
            self.unclosed()
        return ParsedFile(self.source, tuple(self.items), tuple(self.problems),
                          tuple(self.top_level))


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
