"""
From raw blocks to per-service drafts: operators, scope and ``defaults`` copying.

Pure.  Walks the blocks of every file in reading order, applies each
attribute line to its block (``=``, ``+=``, ``-=``; ``=`` acts as ``+=`` for
cumulative attributes in ``defaults``), and starts each service from a copy
of the defaults' copied-at-parse attributes *as they stand at that point*,
as xinetd does (a later ``defaults`` line does not reach earlier services).
Filling the remaining defaults, and every check that needs the outside
world, happens later in ``build.py``.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

import attrs

from superd.config.attributes import (
    COPIED_FROM_DEFAULTS,
    AttributeSpec,
    lookup,
    unknown_attribute,
)
from superd.config.errors import ConfigWarning, Location, Problem
from superd.config.extensions import is_user_protocol
from superd.config.isolation import EVERYTHING, Blame, Blamed
from superd.config.model import AddressSpec
from superd.config.parse import RawAttribute, RawBlock

__all__ = ["Draft", "Drafts", "Reporter", "draft_services"]


@attrs.define
class Reporter:
    """
    Collects every error and warning of one load, in the order found, each
    with what it stops from running (``blame``: the block being read).
    """

    errors: List[Problem] = attrs.Factory(list)
    warnings: List[ConfigWarning] = attrs.Factory(list)
    blamed: Blamed = attrs.Factory(Blamed)
    #: What an error found now stops (see ``blaming``).
    blame: Blame = attrs.field(factory=Blame)
    #: ``blame`` when each warning was found (``--strict`` makes them errors).
    warning_blames: List[Blame] = attrs.Factory(list)

    @contextmanager
    def blaming(self, blame: Blame) -> Iterator[None]:
        """Within the block: errors found stop what ``blame`` names."""
        outer, self.blame = self.blame, blame
        try:
            yield
        finally:
            self.blame = outer

    def add(self, problem: Problem, blame: Optional[Blame] = None) -> None:
        """Record ``problem`` (found elsewhere) as stopping ``blame``."""
        self.errors.append(problem)
        self.blamed.add(problem, self.blame if blame is None else blame)

    def error(self, location: Location, message: str, *, service: Optional[str] = None,
              attribute: Optional[str] = None, section: Optional[str] = None) -> None:  # fmt: skip
        """Record a problem that stops the current block from running."""
        self.add(Problem(location.file, location.line, service, attribute, message, section))

    def warn(self, location: Location, message: str, *, service: Optional[str] = None,
             attribute: Optional[str] = None, section: Optional[str] = None) -> None:  # fmt: skip
        """Record something worth fixing that superd can live with."""
        self.warnings.append(ConfigWarning(location, service, attribute, message, section))
        self.warning_blames.append(self.blame)


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
    known = len(seen)
    for item in new:
        seen.add(_identity(item))  # one hash per item: the set grows if it is new
        if len(seen) != known:
            known += 1
            items.append(item)
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


def _comment_problem(spec: AttributeSpec, raw: RawAttribute) -> Optional[str]:
    """What to say about a ``#`` after the values (xinetd reads it as values)."""
    start = next((i for i, word in enumerate(raw.values) if word.startswith("#")), None)
    if start is None:
        return None
    tail = " ".join(raw.values[start:])
    tail = tail if len(tail) <= 40 else tail[:37] + "..."
    return f"comments must be on their own line ({tail!r} follows the values)"


def _unknown(draft: Draft, raw: RawAttribute, report: Reporter) -> None:
    """An attribute superd does not know: a slip for a known one is an error
    (the intended setting is missing), another build's is a warning."""
    where = dict(draft.where(), attribute=raw.name)
    if not draft.is_defaults:
        # Kept for a user protocol, which may declare it: decided at the end
        # of the block (``factory`` may come later).
        draft.extra[raw.name] = raw.values
        draft.lines[raw.name] = raw.location
        return
    message, meant = unknown_attribute(raw.name)
    if meant is None:
        report.warn(raw.location, message, **where)
    else:
        report.error(raw.location, message, **where)
        draft.invalid.add(meant)


def apply_line(draft: Draft, raw: RawAttribute, report: Reporter) -> None:
    """Apply one attribute line to ``draft``, reporting what is wrong with it."""
    where = dict(draft.where(), attribute=raw.name)
    spec = lookup(raw.name)
    if spec is None:
        _unknown(draft, raw, report)
        return
    comment = _comment_problem(spec, raw)
    if comment is not None and spec.key == "server_args":
        # Passed to the server, as by xinetd; the program may want a '#'.
        report.warn(raw.location, comment + "; they are passed to the server", **where)
        comment = None
    problem = comment or _scope_problem(spec, raw, draft.is_defaults) or _count_problem(spec, raw)
    first = draft.written.get(spec.key)
    if problem is None and first is not None and not spec.cumulative:
        problem = f"set twice (first at line {first.line}); write it once"
    problems = [problem] if problem is not None else []
    if not problems:
        try:
            parsed = spec.parse(raw.values)
        except ValueError as error:
            # Every bad entry of a list, each on its own.
            problems = list(getattr(error, "messages", None) or [str(error)])
    if problems:
        for message in problems:
            report.error(raw.location, message, **where)
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
    draft = Draft(block.name, block.location, complete=block.complete)
    for key in COPIED_FROM_DEFAULTS & defaults.values.keys():
        value = defaults.values[key]
        draft.values[key] = list(value) if isinstance(value, list) else value
        draft.lines[key] = defaults.lines[key]
    return draft


@attrs.frozen
class Drafts:
    """What ``draft_services`` read."""

    #: The merged defaults.
    defaults: Draft
    #: One per service block not written ``disable = yes``, in reading order.
    services: List[Draft]
    #: The service blocks written ``disable = yes`` (not checked, as xinetd).
    switched_off: List[RawBlock]
    #: Each block's place in reading order, by its header.
    order: Dict[Location, int]


def draft_services(blocks: Iterable[RawBlock], report: Reporter) -> Drafts:
    """
    The merged defaults and one draft per service not written ``disable = yes``.

    ``blocks`` come in reading order across all files; that order decides
    which defaults values each service copies.  Each block's syntax problems
    and every error found in it are blamed on it (on every service for a
    ``defaults`` block).
    """
    defaults = Draft(None, Location("<defaults>", 0))
    seen_defaults: Dict[str, int] = {}
    services: List[Draft] = []
    switched_off: List[RawBlock] = []
    order: Dict[Location, int] = {}
    for block in blocks:
        order.setdefault(block.location, len(order))
        with report.blaming(EVERYTHING if block.is_defaults else Blame(block=block.location)):
            for problem in block.problems:
                report.add(problem)
            if block.is_defaults:
                _check_one_defaults(block, seen_defaults, report)
                for raw in block.attributes:
                    apply_line(defaults, raw, report)
            elif _is_disabled(block):
                switched_off.append(block)
            else:
                draft = _start_service(block, defaults)
                for raw in block.attributes:
                    apply_line(draft, raw, report)
                _check_unknown(draft, report)
                services.append(draft)
    return Drafts(defaults, services, switched_off, order)


def _check_unknown(draft: Draft, report: Reporter) -> None:
    """Report a service's unknown attributes, unless a user protocol may
    declare them (``superd.config.extensions.check_extensions`` decides then)."""
    if is_user_protocol(draft.values, draft.invalid):
        return
    for name in draft.extra:
        message, meant = unknown_attribute(name)
        where = dict(draft.where(), attribute=name)
        if meant is None:
            report.warn(draft.lines[name], message, **where)
        else:
            report.error(draft.lines[name], message, **where)
            draft.invalid.add(meant)


def _check_one_defaults(block: RawBlock, seen: Dict[str, int], report: Reporter) -> None:
    first = seen.setdefault(block.location.file, block.location.line)
    if first != block.location.line:
        report.error(
            block.location,
            f"only one defaults section is allowed per file (first at line {first})",
            section="defaults",
        )
