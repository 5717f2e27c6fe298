"""
From raw blocks to per-service drafts: operators, scope and ``defaults`` copying.

Pure.  Walks the blocks of every file in reading order, applies each
attribute line to its block (``=``, ``+=``, ``-=``; ``=`` acts as ``+=`` for
cumulative attributes in ``defaults``), and starts each service from a copy
of the defaults' copied-at-parse attributes *as they stand at that point*
(xinetd-behaviour.md §4).  Filling the remaining defaults, and every check
that needs the outside world, happens later in ``build.py``.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Tuple

import attrs

from superd.config.attributes import (
    COPIED_FROM_DEFAULTS,
    UNKNOWN_ATTRIBUTE,
    AttributeSpec,
    lookup,
)
from superd.config.errors import Problem
from superd.config.extensions import is_user_protocol
from superd.config.model import AddressSpec, ConfigWarning, Location
from superd.config.parse import RawAttribute, RawBlock

__all__ = ["Draft", "Reporter", "draft_services"]

#: The warning for an attribute neither superd nor the service's protocol knows.


@attrs.define
class Reporter:
    """Collects every error and warning of one load, in the order found."""

    errors: List[Problem] = attrs.Factory(list)
    warnings: List[ConfigWarning] = attrs.Factory(list)

    def error(self, location: Location, message: str, *, service: Optional[str] = None,
              attribute: Optional[str] = None, section: Optional[str] = None) -> None:  # fmt: skip
        """Record a problem that stops superd from using the configuration."""
        self.errors.append(
            Problem(location.file, location.line, service, attribute, message, section)
        )

    def warn(self, location: Location, message: str, *, service: Optional[str] = None,
             attribute: Optional[str] = None, section: Optional[str] = None) -> None:  # fmt: skip
        """Record something worth fixing that superd can live with."""
        self.warnings.append(ConfigWarning(location, service, attribute, message, section))


@attrs.define
class Draft:
    """One block's attributes as parsed so far (``name`` None for defaults)."""

    name: Optional[str]
    location: Location
    values: Dict[str, Any] = attrs.Factory(dict)
    #: Each attribute's latest line (defaults' lines for copied values).
    lines: Dict[str, Location] = attrs.Factory(dict)
    #: Attributes written in this block itself, with their first line.
    written: Dict[str, Location] = attrs.Factory(dict)
    #: Unknown attributes: name -> values (kept for users' own protocols).
    extra: Dict[str, Tuple[str, ...]] = attrs.Factory(dict)
    #: Attributes written with an error (so "missing" is not reported too).
    invalid: set[str] = attrs.Factory(set)
    #: False for a block without its ``}``: too uncertain to check as a whole.
    complete: bool = True

    @property
    def is_defaults(self) -> bool:
        """True for the merged ``defaults`` section."""
        return self.name is None

    def where(self) -> Dict[str, Optional[str]]:
        """Keyword arguments naming this block in a Problem."""
        if self.name is None:
            return {"service": None, "section": "defaults"}
        return {"service": self.name, "section": None}


def _identity(item: Any) -> Any:
    """What ``-=`` compares: the meaning of an address entry, not its spelling."""
    if isinstance(item, AddressSpec):
        return (item.kind, item.network, item.name)
    return item


class _Entries(List[Any]):
    """
    A cumulative attribute's value as it is being built: the list, plus the
    identities of its items, kept from one line to the next rather than
    rebuilt on every line: a long list written as many ``+=`` lines is then
    combined in time linear in its length, not quadratic.
    """

    def __init__(self, items: Iterable[Any] = ()) -> None:
        super().__init__(items)
        self.identities = {_identity(item) for item in self}


def _combine(old: Optional[List[Any]], new: Tuple[Any, ...], op: str, replace: bool) -> Any:
    if op == "=" and replace:
        return list(new)
    # A plain list is a value copied from the defaults: its own copy, which
    # gets its identities once and is then extended in place.
    items = old if isinstance(old, _Entries) else _Entries(old or ())
    if op == "-=":
        gone = {_identity(item) for item in new}
        return _Entries(item for item in items if _identity(item) not in gone)
    seen = items.identities
    for item in new:
        identity = _identity(item)
        if identity not in seen:
            items.append(item)
            seen.add(identity)
    return items


def _scope_problem(spec: AttributeSpec, raw: RawAttribute, defaults: bool) -> Optional[str]:
    if spec.unsupported:
        return spec.unsupported
    if defaults and not spec.in_defaults:
        return "not allowed in defaults; set it in each service"
    if not defaults and not spec.in_service:
        return "only allowed in the defaults section"
    if raw.op != "=" and not spec.cumulative:
        return f"'{raw.op}' is not allowed for this attribute; use '='"
    if raw.op == "-=" and not spec.removable:
        return "'-=' is not allowed for this attribute"
    return None


def _count_problem(spec: AttributeSpec, raw: RawAttribute) -> Optional[str]:
    n = len(raw.values)
    if spec.count is not None and n != spec.count:
        return f"expected {spec.values_text}, got {n}"
    if spec.count is None and n < spec.minimum:
        return f"expected {spec.values_text}, got {n}"
    return None


def _warn_wildcards(draft: Draft, raw: RawAttribute, items: Any, report: Reporter) -> None:
    for spec in items:
        if isinstance(spec, AddressSpec) and spec.implicit_wildcard:
            report.warn(
                raw.location,
                f"{spec.text} is read as {spec.network} (xinetd's trailing-zero wildcard); "
                f"write {spec.network} to say so",
                attribute=raw.name,
                **draft.where(),
            )


def apply_line(draft: Draft, raw: RawAttribute, report: Reporter) -> None:
    """Apply one attribute line to ``draft``, reporting what is wrong with it."""
    where = dict(draft.where(), attribute=raw.name)
    spec = lookup(raw.name)
    if spec is None:
        if draft.is_defaults:
            report.warn(raw.location, UNKNOWN_ATTRIBUTE, **where)
        else:
            # Kept for a user protocol; whether it is unknown is decided at the
            # end of the block (``factory`` may come later).
            draft.extra[raw.name] = raw.values
            draft.lines[raw.name] = raw.location
        return
    problem = _scope_problem(spec, raw, draft.is_defaults) or _count_problem(spec, raw)
    first = draft.written.get(spec.key)
    if problem is None and first is not None and not spec.cumulative:
        problem = f"set twice (first at line {first.line}); write it once"
    if problem is None:
        try:
            parsed = spec.parse(raw.values)
        except ValueError as error:
            problem = str(error)
    if problem is not None:
        report.error(raw.location, problem, **where)
        draft.invalid.add(spec.key)
        return
    draft.written.setdefault(spec.key, raw.location)
    draft.lines[spec.key] = raw.location
    if spec.cumulative:
        if raw.op == "-=" and spec.key not in draft.values:
            return
        old = draft.values.get(spec.key)
        draft.values[spec.key] = _combine(old, parsed, raw.op, not draft.is_defaults)
        if raw.op != "-=":
            _warn_wildcards(draft, raw, parsed, report)
    else:
        draft.values[spec.key] = parsed


def _is_disabled(block: RawBlock) -> bool:
    return any(
        a.name == "disable" and a.op == "=" and a.values == ("yes",) for a in block.attributes
    )


def _start_service(block: RawBlock, defaults: Draft) -> Draft:
    draft = Draft(block.name, block.location, complete=block.closed)
    for key in COPIED_FROM_DEFAULTS & defaults.values.keys():
        value = defaults.values[key]
        draft.values[key] = list(value) if isinstance(value, list) else value
        draft.lines[key] = defaults.lines[key]
    return draft


def draft_services(blocks: Iterable[RawBlock], report: Reporter) -> Tuple[Draft, List[Draft]]:
    """
    The merged defaults and one draft per service not written ``disable = yes``.

    ``blocks`` come in reading order across all files; that order decides
    which defaults values each service copies.
    """
    defaults = Draft(None, Location("<defaults>", 0))
    seen_defaults: Dict[str, int] = {}
    services: List[Draft] = []
    for block in blocks:
        if block.is_defaults:
            _check_one_defaults(block, seen_defaults, report)
            for raw in block.attributes:
                apply_line(defaults, raw, report)
        elif not _is_disabled(block):
            draft = _start_service(block, defaults)
            for raw in block.attributes:
                apply_line(draft, raw, report)
            _warn_unknown(draft, report)
            services.append(draft)
    return defaults, services


def _warn_unknown(draft: Draft, report: Reporter) -> None:
    """Warn about a service's unknown attributes, unless a user protocol may
    declare them (``superd.config.extensions.check_extensions`` decides then)."""
    if is_user_protocol(draft.values, draft.invalid):
        return
    for name in draft.extra:
        report.warn(draft.lines[name], UNKNOWN_ATTRIBUTE,
                    **dict(draft.where(), attribute=name))


def _check_one_defaults(block: RawBlock, seen: Dict[str, int], report: Reporter) -> None:
    first = seen.setdefault(block.location.file, block.location.line)
    if first != block.location.line:
        report.error(
            block.location,
            f"only one defaults section is allowed per file (first at line {first})",
            section="defaults",
        )
