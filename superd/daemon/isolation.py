"""
Per-service isolation in the daemon: what runs when part of the configuration
is broken.

The loader (``load_configuration(..., isolate=True)``) says which service
blocks failed and why (``Configuration.failed``, ``failed_files``).  At
start every other service runs; a service whose handler cannot be built
(``superd.daemon.assembly.Unavailable``) fails the same way (``without``).
At a reload, a running service whose new block failed keeps running with
its previous definition, and so does every running service written in a
file or directory that could not be read or parsed as a whole, or in a
file that one of those may have included (``keep_previous``); the rest of
the reload applies.

``--strict`` and ``all_or_nothing = yes`` keep the older rule: any error
refuses the whole configuration (nothing starts; a reload changes nothing).
The daemon refuses to start when no service could be built at all.

Pure: values in, values out (and their JSON for ``superd status`` and
``superd reload``).
"""

from __future__ import annotations

from typing import AbstractSet, Any, Dict, Iterable, List, Optional, Sequence, Tuple

import attrs

from superd.config.conflicts import listeners
from superd.config.errors import MAX_FILE_ERRORS, Problem, capped
from superd.config.model import Configuration, FailedService, Location, ServiceConfig
from superd.config.text import printable

__all__ = [
    "Isolated",
    "Kept",
    "all_or_nothing",
    "bounded",
    "failed_json",
    "keep_previous",
    "kept_json",
    "refuses",
    "shown",
    "without",
]

#: A service that could not be built and why: what ``Assembly.build`` reports.
Failure = Tuple[ServiceConfig, Problem]


def all_or_nothing(strict: bool, config: Configuration,
                   running: Optional[Configuration] = None) -> bool:
    """True when any error refuses ``config`` as a whole: ``--strict``, or
    ``all_or_nothing = yes`` in its defaults -- or, at a reload from
    ``running`` whose new defaults failed (their value unknown), in the
    running ones."""
    if strict:
        return True
    if running is not None and config.defaults_failed:
        return running.all_or_nothing
    return config.all_or_nothing


def refuses(config: Configuration, strict: bool) -> bool:
    """True when the daemon must not start on ``config``: it has an error and
    all or nothing applies, or no service of it can run."""
    if config.ok:
        return False
    return all_or_nothing(strict, config) or not config.services


@attrs.frozen
class Kept:
    """A service a reload left running with its previous definition, and why."""

    #: The previous definition, still running.
    service: ServiceConfig
    #: The failed block meant to replace it (None: its file failed as a whole).
    failed: Optional[FailedService] = None
    #: The file or directory that could not be read or parsed, if that is why.
    path: Optional[str] = None

    @property
    def reason(self) -> str:
        """Why the previous definition runs, for people."""
        if self.failed is not None:
            count = len(self.failed.problems)
            return (f"its new block ({self.failed.location}) has {count}"
                    f" error{'' if count == 1 else 's'}")
        return f"{self.path} could not be read or parsed as a whole"


@attrs.frozen
class Isolated:
    """What runs: ``configuration.services`` (new definitions and the kept
    previous ones), and which of those are kept previous definitions."""

    configuration: Configuration
    kept: Tuple[Kept, ...] = ()


def bounded(config: Configuration) -> Configuration:
    """
    ``config`` with each failed service's problems capped as
    ``config.problems`` are (``MAX_FILE_ERRORS`` per file, then a count):
    every block of a garbage file carries all of that file's errors.
    """
    return attrs.evolve(config, failed=tuple(
        attrs.evolve(f, problems=capped(f.problems)) for f in config.failed))


def without(config: Configuration, failures: Sequence[Failure]) -> Configuration:
    """
    ``config`` with each service of ``failures`` failed: taken out of
    ``services`` and listed in ``failed`` with its problem (a service of
    ``failures`` that ``config`` does not run is only listed).
    """
    failing = {id(service) for service, _ in failures}
    failed = [FailedService(service.name, service.id, service.location, (problem,))
              for service, problem in failures]
    return attrs.evolve(
        config,
        services=tuple(s for s in config.services if id(s) not in failing),
        failed=(*config.failed, *failed),
        problems=(*config.problems, *(problem for _, problem in failures)))


def _under(file: str, path: str) -> bool:
    return file == path or file.startswith(path.rstrip("/") + "/")


def _replaced(old: ServiceConfig, good: Sequence[ServiceConfig]) -> bool:
    """True when a good new block takes ``old``'s place: the same identity
    (it keeps the sockets), or the same id written at the same place."""
    from superd.daemon.plan import service_key  # reloads only

    return any(new.id == old.id and (service_key(new) == service_key(old)
                                     or new.location == old.location) for new in good)


def _previous(failed: FailedService, running: Sequence[ServiceConfig],
              good: Sequence[ServiceConfig]) -> List[ServiceConfig]:
    """
    The running services ``failed`` was meant to redefine: same name, same
    file, and the same id (or, when its id line is what broke, the same
    place); not those a good block of the new configuration replaces.
    Of blocks sharing an id (one service on two binds), the one at the
    same place, if any.
    """
    found = [old for old in running
             if old.name == failed.name and old.location.file == failed.location.file
             and (old.id == failed.id or old.location == failed.location)
             and not _replaced(old, good)]
    here = [old for old in found if old.location == failed.location]
    return here or found


def _order(config: Configuration) -> Dict[str, int]:
    rank: Dict[str, int] = {}
    for source in config.sources:
        rank.setdefault(source, len(rank))
    return rank


def _clash(service: ServiceConfig, kept: Iterable[Kept]) -> Optional[Problem]:
    """The problem of a new service that would bind what a kept one holds."""
    mine = listeners(service)
    for entry in kept:
        held = entry.service
        for theirs in listeners(held):
            if any(m.overlaps(theirs) for m in mine):
                attribute = next((a for a in ("bind", "port") if a in service.lines), None)
                where = service.line_of(attribute or "bind")
                return Problem(
                    where.file, where.line, service.name, attribute,
                    f"{theirs.protocol} port {theirs.port} on {theirs.shown} is still used by"
                    f" service {held.name} ({held.location}), kept running because"
                    f" {entry.reason}")
    return None


def keep_previous(running: Configuration, new: Configuration,
                  refused: AbstractSet[int] = frozenset()) -> Isolated:
    """
    What a reload to ``new`` runs: its good services, plus the running
    services its failed blocks and failed files were meant to redefine, with
    their previous definitions (but none whose ``id()`` is in ``refused``:
    those could not be built again).  A good new service that would bind
    what a kept one holds fails too.  When the defaults failed, the
    daemon-wide settings stay those of ``running``.
    """
    good = list(new.services)
    kept: List[Kept] = []
    seen: set[int] = set()

    def keep(entry: Kept) -> None:
        if id(entry.service) not in seen and id(entry.service) not in refused:
            seen.add(id(entry.service))
            kept.append(entry)

    for path in new.failed_files:
        for old in running.services:
            if _under(old.location.file, path) and not _replaced(old, good):
                keep(Kept(old, path=path))
    # A file read last time and not now may have included others: their
    # services are unknown too, not removed.
    hiding = [path for path in new.failed_files if path in running.sources]
    if hiding:
        for old in running.services:
            if old.location.file not in new.sources and not _replaced(old, good):
                keep(Kept(old, path=hiding[0]))
    for failed in new.failed:
        for old in _previous(failed, running.services, good):
            keep(Kept(old, failed))
    clashes = [(s, p) for s in good for p in (_clash(s, kept),) if p is not None]
    result = without(new, clashes) if clashes else new
    rank = _order(new)

    def place(at: Location) -> Tuple[int, int]:
        return rank.get(at.file, len(rank)), at.line

    placed = [(place(s.location), s) for s in result.services]
    placed += [(place(k.failed.location if k.failed else k.service.location), k.service)
               for k in kept]
    placed.sort(key=lambda pair: pair[0])
    services = tuple(service for _, service in placed)
    if new.defaults_failed:
        result = attrs.evolve(result, ban_store=running.ban_store,
                              ban_store_password_file=running.ban_store_password_file,
                              ban_ends_sessions=running.ban_ends_sessions,
                              all_or_nothing=running.all_or_nothing)
    return Isolated(attrs.evolve(result, services=services), tuple(kept))


# -- as JSON (superd status, superd reload) ------------------------------------

def shown(failed: Sequence[FailedService]) -> Tuple[Tuple[FailedService, ...], int]:
    """
    The failed services worth listing one by one -- at most
    ``MAX_FILE_ERRORS`` per file, as errors are: a garbage file may hold
    thousands of headers -- and how many others there are.
    """
    per_file: Dict[str, int] = {}
    listed = []
    for service in failed:
        count = per_file[service.location.file] = per_file.get(service.location.file, 0) + 1
        if count <= MAX_FILE_ERRORS:
            listed.append(service)
    return tuple(listed), len(failed) - len(listed)


def failed_json(config: Configuration, kept: Sequence[Kept] = ()) -> List[Dict[str, Any]]:
    """
    The failed services of ``config`` (those ``shown`` lists) with the fields
    ``superd check --json`` gives them, plus ``state`` (``failed``; ``failed
    at reload`` when the previous definition keeps running) and ``previous``
    (where each previous definition still running was written).
    """
    from superd.config.check import failures_json  # status only

    listed, _ = shown(config.failed)
    entries: List[Dict[str, Any]] = failures_json(attrs.evolve(config, failed=listed))["failed"]
    for entry, failed in zip(entries, listed, strict=True):
        previous = [printable(str(k.service.location)) for k in kept if k.failed == failed]
        entry["state"] = "failed at reload" if previous else "failed"
        entry["previous"] = previous
    return entries


def kept_json(kept: Kept) -> Dict[str, Any]:
    """One previous definition a reload kept running, and why."""
    return {"id": printable(kept.service.id), "name": printable(kept.service.name),
            "location": printable(str(kept.service.location)),
            "reason": printable(kept.reason),
            "failed": None if kept.failed is None else printable(str(kept.failed.location)),
            "path": None if kept.path is None else printable(kept.path)}
