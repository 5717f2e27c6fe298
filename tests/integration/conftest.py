"""Fixtures for integration tests: daemons that are always stopped, by PID."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.external import world_directory
from tests.integration.harness import Superd, start_superd

StartSuperd = Callable[..., Superd]


def _crash_report(superd: Superd) -> str | None:
    """Why a daemon counts as crashed, or None if it did not."""
    status = superd.process.poll()
    if status is not None and not superd.stopped_by_test:
        return f"superd pid {superd.pid} died during the test (exit {status})"
    errors = [] if superd.allow_errors else superd.errors()
    if errors:
        shown = "\n".join(json.dumps(e)[:2000] for e in errors[:5])
        return f"superd pid {superd.pid} logged {len(errors)} error(s):\n{shown}"
    return None


def _schema_report(superd: Superd) -> str | None:
    """The lines of the daemon's log that break its schema, or None."""
    wrong = superd.schema_problems
    if not wrong:
        return None
    shown = "\n".join(problem[:2000] for problem in wrong[:5])
    return (f"superd pid {superd.pid} wrote {len(wrong)} line(s) outside the JSON"
            f" log's schema:\n{shown}")


@pytest.fixture
def superd_factory(tmp_path: Path) -> Iterator[StartSuperd]:
    """
    ``superd_factory(conf_dir, *args, **kw)`` starts a daemon (see
    ``start_superd``).  Every daemon is stopped at teardown, and the test
    fails if one died on its own, logged an error or wrote a line outside
    the JSON log's schema.
    """
    started: list[Superd] = []

    def start(conf_dir: Any, *args: str, **kw: Any) -> Superd:
        kw.setdefault("state_dir", str(tmp_path / f"state-{len(started)}"))
        superd = start_superd(str(conf_dir), *args, **kw)
        started.append(superd)
        return superd

    yield start
    problems = [p for p in map(_crash_report, started) if p]
    for superd in started:
        if superd.process.poll() is None:
            superd.stop()
    # After the stop: the lines written while stopping are checked too.
    problems += [p for p in map(_schema_report, started) if p]
    if problems:
        pytest.fail("\n".join(problems))


@pytest.fixture
def conf_dir(tmp_path: Path) -> Callable[..., Path]:
    """``conf_dir(name=text, ...)`` writes service files into a fresh directory."""
    counter = [0]

    def write(**files: str) -> Path:
        counter[0] += 1
        directory = tmp_path / f"conf-{counter[0]}"
        directory.mkdir()
        for name, text in files.items():
            (directory / name).write_text(text)
        return directory

    return write


@pytest.fixture
def world_dir() -> Iterator[Path]:
    """A directory every user can enter, for servers that run as nobody
    (see ``external.world_directory``)."""
    yield from world_directory()
