"""
The events superd's code emits, read from its source: every log call, the
event name it gives (resolved to its ``superd.observe.events`` constant)
and the fields it passes.  ``test_event_catalog`` checks it against
``superd.observe.events`` and the reference (``docs/logging.rst``).

    .venv/bin/python -m tests.observe.catalog      # print it, as the docs list it
"""

from __future__ import annotations

import ast
import functools
import importlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

from superd.observe import events

__all__ = ["LogCall", "documented", "event_names", "log_calls", "main"]

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "superd"
DOCS = ROOT / "docs" / "logging.rst"

#: twisted.logger.Logger's methods that emit an event.
LOG_METHODS = frozenset({"debug", "info", "warn", "error", "critical", "failure", "emit"})
#: Keyword arguments of those methods that are not fields of the event.
NOT_FIELDS = frozenset({"event", "level", "failure"})


@attrs.frozen
class LogCall:
    """One call that logs: where, the event's name (None: not resolved) and its fields."""

    where: str
    name: str | None
    expression: str
    fields: frozenset[str]


def event_names() -> dict[str, str]:
    """``EV_*`` constant -> event name, from ``superd.observe.events``."""
    return {key: value for key, value in vars(events).items()
            if key.startswith("EV_") and isinstance(value, str)}


def _is_logger(node: ast.expr) -> bool:
    text = ast.unparse(node)
    return bool(re.search(r"(^|[._])(log|logger|_log|_connection_log)$", text))


def _dict_keys(node: ast.expr | None) -> set[str]:
    """The literal keys of a dict display, or of both dicts of ``A if C else B``."""
    if isinstance(node, ast.Dict):
        return {k.value for k in node.keys if isinstance(k, ast.Constant)
                and isinstance(k.value, str)}
    if isinstance(node, ast.IfExp):
        return _dict_keys(node.body) | _dict_keys(node.orelse)
    return set()


def _spread_fields(function: ast.AST | None, name: str) -> set[str]:
    """Fields passed as ``**name``, ``name`` a dict assigned in ``function``."""
    found: set[str] = set()
    for node in ast.walk(function) if function is not None else ():
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == name for t in node.targets):
            found |= _dict_keys(node.value)
    return found


def _returned_fields(tree: ast.Module, name: str) -> set[str]:
    """Fields passed as ``**name(...)``: the dict displays the module's
    function ``name`` returns."""
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            for inner in ast.walk(node):
                if isinstance(inner, ast.Return):
                    found |= _dict_keys(inner.value)
    return found


def _calls(tree: ast.Module) -> Iterator[tuple[ast.Call, ast.AST | None]]:
    """Every logging call with its enclosing function (None at module level)."""
    def visit(node: ast.AST, function: ast.AST | None) -> Iterator[tuple[ast.Call, ast.AST | None]]:
        for child in ast.iter_child_nodes(node):
            inner = child if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) \
                else function
            if (isinstance(child, ast.Call) and isinstance(child.func, ast.Attribute)
                    and child.func.attr in LOG_METHODS and _is_logger(child.func.value)):
                yield child, function
            yield from visit(child, inner)
    yield from visit(tree, None)


def _resolve(expression: ast.expr, namespace: dict[str, Any]) -> str | None:
    """The event name ``expression`` (a constant's name) stands for, or None
    for a literal string or anything that is not a module-level name."""
    if isinstance(expression, ast.Constant):
        return None
    try:
        value = eval(compile(ast.Expression(expression), "<event>", "eval"),
                     dict(namespace))
    except Exception:
        return None
    return value if isinstance(value, str) else None


@functools.cache
def log_calls(source: Path = SOURCE) -> tuple[LogCall, ...]:
    """Every logging call in superd's source (read once per test run)."""
    found = []
    for path in sorted(source.rglob("*.py")):
        module = ".".join(path.relative_to(source.parent).with_suffix("").parts)
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        namespace: dict[str, Any] | None = None
        for call, function in _calls(tree):
            where = f"{path.relative_to(source.parent)}:{call.lineno}"
            keywords = {k.arg: k.value for k in call.keywords if k.arg is not None}
            fields = set(keywords) - NOT_FIELDS
            for spread in (k.value for k in call.keywords if k.arg is None):
                if isinstance(spread, ast.Name):
                    fields |= _spread_fields(function, spread.id)
                elif isinstance(spread, ast.Call) and isinstance(spread.func, ast.Name):
                    fields |= _returned_fields(tree, spread.func.id)
            name = None
            expression = ""
            if "event" in keywords:
                expression = ast.unparse(keywords["event"])
                if namespace is None:
                    namespace = vars(importlib.import_module(module.removesuffix(".__init__")))
                name = _resolve(keywords["event"], namespace)
            found.append(LogCall(where, name, expression, frozenset(fields)))
    return tuple(found)


def emitted() -> dict[str, frozenset[str]]:
    """Event name -> every field some call passes with it."""
    fields: dict[str, set[str]] = {}
    for call in log_calls():
        if call.name is not None:
            fields.setdefault(call.name, set()).update(call.fields)
    return {name: frozenset(names) for name, names in fields.items()}


_TERM = re.compile(r"^``([a-z0-9_]+)``\s*$")
_FIELDS = re.compile(r"^\s+:fields:\s*(.*)$")


def documented(text: str | None = None) -> dict[str, frozenset[str]]:
    """Event name -> fields, as the reference's event list gives them: a
    term ````name```` at the start of a line, then an indented
    ``:fields:`` line (``none``, or the field names in double backquotes,
    continued on indented lines)."""
    lines = (DOCS.read_text(encoding="utf-8") if text is None else text).splitlines()
    found: dict[str, frozenset[str]] = {}
    name: str | None = None
    index = 0
    while index < len(lines):
        term = _TERM.match(lines[index])
        if term:
            name = term.group(1)
        fields = _FIELDS.match(lines[index])
        if fields and name is not None:
            text_ = fields.group(1)
            while index + 1 < len(lines) and lines[index + 1].startswith("      ") \
                    and lines[index + 1].strip():
                index += 1
                text_ += " " + lines[index].strip()
            found[name] = frozenset(re.findall(r"``([A-Za-z0-9_]+)``", text_))
            name = None
        index += 1
    return found


def main() -> None:
    """Print each event name with its fields, in the reference's form."""
    fields = emitted()
    for name in sorted(event_names().values()):
        names = sorted(fields.get(name, ()))
        shown = ", ".join(f"``{f}``" for f in names) if names else "none"
        print(f"``{name}``\n   :fields: {shown}\n")


if __name__ == "__main__":
    main()
