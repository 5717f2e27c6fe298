"""
Reading superd's reStructuredText sources for the documentation tests: the
attribute descriptions (``confval``), the command-line options (``program``
and ``option``) and the shell examples (``code-block:: console``).

Plain text parsing on purpose: the tests must say which line of which file
lacks what, and must run where Sphinx is not installed.
"""

from __future__ import annotations

import re
from pathlib import Path

import attrs

__all__ = [
    "REPO",
    "Attribute",
    "Block",
    "Command",
    "attributes",
    "code_blocks",
    "commands",
    "documented_options",
    "literal_terms",
]

#: The top of the source tree.
REPO = Path(__file__).resolve().parents[2]

_DIRECTIVE = re.compile(r"^(\s*)\.\. ([\w:-]+)::\s*(.*)$")
_OPTION_LINE = re.compile(r"^\s+:([\w-]+):\s*(.*)$")
_LITERAL = re.compile(r"``([^`]+)``")
_HEREDOC = re.compile(r"<<-?\s*'?(\w+)'?")


@attrs.frozen
class Attribute:
    """One ``.. confval::``: its options and the text of its body."""

    name: str
    line: int
    options: dict[str, str]
    body: list[str]


@attrs.frozen
class Command:
    """One ``$`` command of a console block and the output shown after it."""

    text: str
    expected: list[str]


@attrs.frozen
class Block:
    """One ``.. code-block:: console``."""

    path: Path
    line: int
    classes: frozenset[str]
    commands: list[Command]


def _directive_extent(lines: list[str], start: int) -> tuple[dict[str, str], list[str], int]:
    """The options and body of the directive on line ``start``, and the line after it."""
    indent = len(lines[start]) - len(lines[start].lstrip())
    options: dict[str, str] = {}
    index = start + 1
    name: str | None = None
    option_indent = indent + 1
    while index < len(lines) and lines[index].strip():
        line = lines[index]
        depth = len(line) - len(line.lstrip())
        match = _OPTION_LINE.match(line)
        if match and (name is None or depth == option_indent):
            name, option_indent = match.group(1), depth
            options[name] = match.group(2).strip()
        elif name is not None and depth > option_indent:
            options[name] += " " + line.strip()
        else:
            break
        index += 1
    body: list[str] = []
    while index < len(lines):
        line = lines[index]
        if line.strip() and len(line) - len(line.lstrip()) <= indent:
            break
        body.append(line)
        index += 1
    while body and not body[-1].strip():
        body.pop()
    return options, body, index


def attributes(path: Path) -> dict[str, Attribute]:
    """Every ``confval`` of ``path``, by name (a name twice is an error)."""
    lines = path.read_text().splitlines()
    found: dict[str, Attribute] = {}
    for number, line in enumerate(lines):
        match = _DIRECTIVE.match(line)
        if not match or match.group(2) != "confval":
            continue
        name = match.group(3).strip()
        if name in found:
            raise AssertionError(f"{path}:{number + 1}: {name} is described twice")
        options, body, _ = _directive_extent(lines, number)
        found[name] = Attribute(name, number + 1, options, body)
    return found


def literal_terms(body: list[str]) -> set[str]:
    """The literals (``X``) that are terms of the definition lists in ``body``."""
    terms: set[str] = set()
    for index, line in enumerate(body[:-1]):
        following = body[index + 1]
        indent = len(line) - len(line.lstrip())
        if (line.strip().startswith("``") and following.strip()
                and len(following) - len(following.lstrip()) > indent):
            terms.update(_LITERAL.findall(line))
    return terms


def documented_options(path: Path) -> dict[str, set[str]]:
    """Each ``.. program::`` of ``path`` and the option strings its
    ``.. option::`` directives define (``-c PATH, --config PATH``: both)."""
    programs: dict[str, set[str]] = {}
    current: str | None = None
    for number, line in enumerate(path.read_text().splitlines(), 1):
        match = _DIRECTIVE.match(line)
        if not match:
            continue
        if match.group(2) == "program":
            current = match.group(3).strip()
            programs.setdefault(current, set())
        elif match.group(2) == "option":
            if current is None:
                raise AssertionError(f"{path}:{number}: an option before any program")
            for form in match.group(3).split(", "):
                programs[current].add(form.split()[0])
    return programs


def _commands(content: list[str]) -> list[Command]:
    found: list[Command] = []
    index = 0
    while index < len(content):
        line = content[index]
        index += 1
        if not line.startswith("$ "):
            if found:
                found[-1].expected.append(line)
            elif line.strip():
                raise AssertionError(f"output before any command: {line!r}")
            continue
        text = line[2:]
        heredoc = _HEREDOC.search(text)
        if heredoc:
            end = content.index(heredoc.group(1), index)
            text = "\n".join([text, *content[index:end + 1]])
            index = end + 1
        found.append(Command(text, []))
    return found


def code_blocks(path: Path) -> list[Block]:
    """Every ``.. code-block:: console`` of ``path`` with its classes and commands."""
    lines = path.read_text().splitlines()
    blocks: list[Block] = []
    for number, line in enumerate(lines):
        match = _DIRECTIVE.match(line)
        if not match or match.group(2) != "code-block" or match.group(3).strip() != "console":
            continue
        options, body, _ = _directive_extent(lines, number)
        indents = [len(b) - len(b.lstrip()) for b in body if b.strip()]
        margin = min(indents) if indents else 0
        content = [b[margin:] for b in body]
        while content and not content[0].strip():
            content.pop(0)
        blocks.append(Block(path, number + 1, frozenset(options.get("class", "").split()),
                            _commands(content)))
    return blocks


def commands(blocks: list[Block]) -> list[str]:
    """Every command of ``blocks``, in order."""
    return [command.text for block in blocks for command in block.commands]
