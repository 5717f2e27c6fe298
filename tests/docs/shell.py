"""
Running the documentation's console examples as a reader would.

A ``.. code-block:: console`` is run when its ``:class:`` says so:

``runnable``
    each ``$`` command runs with ``bash`` in a scratch copy of the source
    tree's ``conf/`` and ``examples/``, with ``.venv`` being this
    virtualenv and its ``bin`` first on ``PATH``;
``daemon``
    the block's one command is the daemon, started in the background, in a
    network namespace of its own (so that the ports of ``conf/`` are its
    own), for the ``runnable-daemon`` blocks that follow.  Without one, the
    daemon is what ``make run`` starts;
``runnable-daemon``
    as ``runnable``, inside the daemon's network namespace;
``needs-xinetd``
    (with ``runnable``) the commands read the system's ``/etc/xinetd.conf``.

Every command must exit 0, and every output line shown after it must be
among the lines it printed, in order, whitespace runs counting as one
space; ``...`` in a shown line stands for any text, and a line of ``...``
alone for nothing.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import attrs

from tests.docs.rst import REPO, Command

__all__ = ["Daemon", "Sandbox", "make_run_command", "matches", "programs_of"]

#: Shell words that are not programs to look for.
_BUILTINS = frozenset({"cd", "printf", "echo", "exit", "test", "[", "true", "false", "export"})


def _normal(line: str) -> str:
    return " ".join(line.split())


def matches(expected: list[str], output: str) -> list[str]:
    """The shown lines not found, in order, in ``output`` (empty: all found)."""
    lines = [_normal(line) for line in output.splitlines()]
    position = 0
    for shown in (_normal(line) for line in expected):
        if shown in ("", "..."):
            continue
        pattern = re.compile(".*".join(re.escape(part.strip()) for part in shown.split("...")))
        while position < len(lines) and not pattern.fullmatch(lines[position]):
            position += 1
        if position == len(lines):
            return [shown]
        position += 1
    return []


def programs_of(command: str) -> set[str]:
    """The programs a command line runs (first word of each pipeline part)."""
    found: set[str] = set()
    first_line = command.splitlines()[0]
    for part in re.split(r"\|\||&&|\||;", first_line):
        words = shlex.split(part, comments=True)
        while words and re.match(r"^\w+=", words[0]):
            words.pop(0)
        if words and words[0] not in _BUILTINS and "/" not in words[0]:
            found.add(words[0])
    return found


def make_run_command() -> str:
    """The command of the Makefile's ``run`` target, as it runs it."""
    text = (REPO / "Makefile").read_text()
    recipe = re.search(r"^run:.*\n\t(.+)$", text, re.MULTILINE)
    assert recipe is not None, "the Makefile has no run target"
    return recipe.group(1).replace("$(BIN)", ".venv/bin")


@attrs.define
class Sandbox:
    """A scratch directory laid out as the top of the source tree."""

    root: Path

    @classmethod
    def create(cls, root: Path) -> Sandbox:
        ignore = shutil.ignore_patterns("__pycache__")
        for name in ("conf", "examples"):
            shutil.copytree(REPO / name, root / name, ignore=ignore)
        (root / ".venv").symlink_to(sys.prefix)
        (root / "home").mkdir()
        return cls(root)

    def environment(self) -> dict[str, str]:
        path = os.pathsep.join((os.path.join(sys.prefix, "bin"), "/usr/local/sbin",
                                "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"))
        return {"PATH": path, "HOME": str(self.root / "home"), "TZ": "UTC",
                "LANG": "C.UTF-8", "TERM": "dumb"}

    def run(self, command: Command,
            prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
        """Run one command with bash, in the sandbox (inside ``prefix``, e.g. nsenter)."""
        return subprocess.run([*prefix, "bash", "-c", command.text], cwd=self.root,
                              env=self.environment(), capture_output=True, text=True,
                              timeout=120, check=False, stdin=subprocess.DEVNULL)


@attrs.define
class Daemon:
    """A daemon command run in the background, in a network namespace of its own."""

    process: subprocess.Popen[str]
    log: Path

    @classmethod
    def start(cls, sandbox: Sandbox, command: str) -> Daemon:
        words = shlex.split(command)
        assert "--state-dir" in words, f"{command}: give --state-dir, for the commands"
        state = sandbox.root / words[words.index("--state-dir") + 1]
        log = sandbox.root / "daemon.log"
        with log.open("w") as output:
            process = subprocess.Popen(
                ["unshare", "--net", "--", "bash", "-c",
                 f"ip link set lo up && exec env {command}"],
                cwd=sandbox.root, env=sandbox.environment(), stdin=subprocess.DEVNULL,
                stdout=output, stderr=subprocess.STDOUT, text=True)
        daemon = cls(process, log)
        daemon._wait_until_ready(sandbox, state)
        return daemon

    def _wait_until_ready(self, sandbox: Sandbox, state: Path) -> None:
        status = [os.path.join(sys.prefix, "bin", "superd"), "status", "--state-dir", str(state)]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the daemon exited: {self.log.read_text()}")
            if subprocess.run(status, env=sandbox.environment(), capture_output=True,
                              timeout=30, check=False).returncode == 0:
                return
            time.sleep(0.2)
        raise AssertionError(f"the daemon did not answer: {self.log.read_text()}")

    @property
    def namespace(self) -> tuple[str, ...]:
        """The prefix that runs a command in the daemon's network namespace."""
        return ("nsenter", f"--net=/proc/{self.process.pid}/ns/net", "--")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
