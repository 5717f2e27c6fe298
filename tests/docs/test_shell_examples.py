"""
The console examples of the README, the manual and the greeter example work
as written: every command marked runnable is run (``tests/docs/shell.py``
says how), against this virtualenv's ``superd``, and prints what the
documentation shows.  The tour of the README runs against a real daemon
started as ``make run`` starts it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.docs.rst import REPO, Block, code_blocks
from tests.docs.shell import Daemon, Sandbox, make_run_command, matches, programs_of
from tests.integration.harness import REQUIRE_ALL, require_program

SOURCES = [REPO / "README.rst", *sorted((REPO / "docs").glob("*.rst")),
           REPO / "examples" / "greeter" / "README.rst"]
RUNNABLE = frozenset({"runnable", "daemon", "runnable-daemon"})
KNOWN = RUNNABLE | {"needs-xinetd"}
XINETD_CONF = Path("/etc/xinetd.conf")


def runnable_sources() -> list[Path]:
    return [path for path in SOURCES if any(block.classes & RUNNABLE
                                            for block in code_blocks(path))]


def test_examples_are_found() -> None:
    """The files with runnable examples (a lost marker would silently test nothing)."""
    names = [str(path.relative_to(REPO)) for path in runnable_sources()]
    assert names == ["README.rst", "docs/first-service.rst", "docs/migrating.rst",
                     "examples/greeter/README.rst"]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_console_blocks_are_well_formed(path: Path) -> None:
    """Every console block starts with a command, and its classes are known."""
    for block in code_blocks(path):
        assert block.commands, f"{path}:{block.line}: no $ command"
        assert block.classes <= KNOWN, f"{path}:{block.line}: {sorted(block.classes)}"
        if "daemon" in block.classes:
            assert len(block.commands) == 1, f"{path}:{block.line}: one daemon per block"


def _skip(reason: str) -> None:
    if REQUIRE_ALL:
        pytest.fail(f"{reason} (SUPERD_REQUIRE_ALL=1)")
    pytest.skip(reason)


def _prepare(blocks: list[Block]) -> None:
    """Skip (or fail in CI) when what the examples need is missing."""
    wanted = {program for block in blocks if block.classes & RUNNABLE
              for command in block.commands for program in programs_of(command.text)}
    if any(block.classes & {"daemon", "runnable-daemon"} for block in blocks):
        if os.geteuid() != 0:
            pytest.skip("a daemon in a network namespace of its own needs root")
        wanted |= {"unshare", "nsenter", "ip"}
    if any("needs-xinetd" in block.classes for block in blocks) and not XINETD_CONF.exists():
        _skip("the examples read /etc/xinetd.conf: apt-get install xinetd")
    path = Sandbox(REPO).environment()["PATH"]
    for program in sorted(wanted):
        if shutil.which(program, path=path) is None:
            require_program(program)
    if "unshare" in wanted and subprocess.run(
            ["unshare", "--net", "--", "true"], capture_output=True, timeout=30,
            check=False).returncode != 0:
        _skip("cannot make a network namespace here (unshare --net)")


@pytest.mark.parametrize("path", runnable_sources(), ids=lambda p: str(p.relative_to(REPO)))
def test_examples_work_as_written(path: Path, tmp_path: Path) -> None:
    """Each runnable command exits 0 and prints the lines shown after it."""
    blocks = code_blocks(path)
    _prepare(blocks)
    sandbox = Sandbox.create(tmp_path)
    daemon_command = make_run_command()
    daemon: Daemon | None = None
    try:
        for block in blocks:
            if "daemon" in block.classes:
                if daemon is not None:
                    daemon.stop()
                    daemon = None
                daemon_command = block.commands[0].text
                continue
            if not block.classes & RUNNABLE:
                continue
            prefix: tuple[str, ...] = ()
            if "runnable-daemon" in block.classes:
                if daemon is None:
                    daemon = Daemon.start(sandbox, daemon_command)
                prefix = daemon.namespace
            for command in block.commands:
                result = sandbox.run(command, prefix)
                where = f"{path.relative_to(REPO)}:{block.line}: $ {command.text}"
                assert result.returncode == 0, f"{where}\n{result.stdout}{result.stderr}"
                missing = matches(command.expected, result.stdout + result.stderr)
                assert missing == [], f"{where}\nnot printed: {missing}\n{result.stdout}"
    finally:
        if daemon is not None:
            daemon.stop()
