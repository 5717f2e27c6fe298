"""
The man pages superd(8), superd.conf(5) and superd-migrate(8): the ones
committed under docs/man are what the documentation sources build (with
warnings as errors), and ``man`` finds the installed ones for a virtualenv
whose ``bin`` is on ``PATH``, with no ``MANPATH`` set.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs.rst import REPO
from tests.integration.harness import REQUIRE_ALL, require_program

MAN = REPO / "docs" / "man"
PAGES = {"superd": "8", "superd.conf": "5", "superd-migrate": "8"}


def test_the_pages_are_committed() -> None:
    """docs/man holds exactly the pages conf.py builds and setup.cfg installs."""
    assert sorted(p.name for p in MAN.iterdir()) == sorted(
        f"{name}.{section}" for name, section in PAGES.items())
    setup = (REPO / "setup.cfg").read_text()
    for name, section in PAGES.items():
        assert f"share/man/man{section} =" in setup and f"docs/man/{name}.{section}" in setup


def test_committed_pages_are_what_the_sources_build(tmp_path: Path) -> None:
    """Sphinx's man builder, run on docs/ as ``make docs`` runs it, writes
    the committed pages byte for byte (run ``make docs`` after editing)."""
    if importlib.util.find_spec("sphinx") is None:
        message = "Sphinx is not installed (make venv installs the dev extras)"
        if REQUIRE_ALL:
            pytest.fail(message)
        pytest.skip(message)
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "man",
         "-d", str(tmp_path / "doctrees"), str(REPO / "docs"), str(tmp_path / "man")],
        capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    built = {p.name: p.read_bytes() for p in (tmp_path / "man").iterdir()}
    committed = {p.name: p.read_bytes() for p in MAN.iterdir()}
    stale = sorted(name for name in built.keys() | committed.keys()
                   if built.get(name) != committed.get(name))
    assert stale == [], f"docs/man differs from the sources: {stale}; run make docs"


def man_environment() -> dict[str, str]:
    """A user's environment with this virtualenv's bin first on PATH and no MANPATH."""
    env = {key: value for key, value in os.environ.items() if key != "MANPATH"}
    env["PATH"] = os.pathsep.join((os.path.join(sys.prefix, "bin"), "/usr/bin", "/bin"))
    return env


@pytest.mark.parametrize(("name", "section"), sorted(PAGES.items()))
def test_man_finds_the_installed_page(name: str, section: str) -> None:
    """``man -w`` finds the page under this virtualenv's share/man through
    PATH alone, and it is the committed one (``make venv`` installs it)."""
    man = require_program("man")
    result = subprocess.run([man, "-w", section, name], env=man_environment(),
                            capture_output=True, text=True, timeout=60, check=False)
    expected = Path(sys.prefix) / "share" / "man" / f"man{section}" / f"{name}.{section}"
    assert (result.returncode, result.stdout.strip()) == (0, str(expected)), (
        f"{result.stderr} (make venv installs the pages)")
    assert expected.read_bytes() == (MAN / f"{name}.{section}").read_bytes(), (
        "the installed page is stale: make venv")


def test_man_renders_the_configuration_page() -> None:
    """``man superd.conf`` renders, with an attribute and its fields."""
    man = require_program("man")
    env = {**man_environment(), "MANPAGER": "cat", "PAGER": "cat", "MANWIDTH": "100"}
    result = subprocess.run([man, "superd.conf"], env=env, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert "SUPERD.CONF(5)" in text and "only_from" in text
    assert "Compared with xinetd" in text and "Where" in text
