"""
`pip install .` into a fresh virtualenv gives a working `twistd superd` and
`superd` console script (the plugin ships without any __init__.py under
twisted/, which would shadow Twisted's own plugin package).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SKIP = shutil.ignore_patterns(".venv", ".git", "build", "dist", "*.egg-info", "__pycache__",
                              ".*_cache", ".hypothesis", "state", "dropin.cache")


def run(*command: str | Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True,
                            timeout=timeout, check=False, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, f"{command}: {result.stdout}\n{result.stderr}"
    return result


@pytest.mark.slow
def test_pip_install_makes_twistd_list_superd(tmp_path: Path) -> None:
    """After `pip install .` into a fresh venv, `twistd --help` lists superd,
    it runs, and its man pages are under the venv's share/man."""
    source = tmp_path / "src"
    shutil.copytree(REPO, source, ignore=SKIP)  # pip builds in-tree; keep the checkout clean
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    run(venv / "bin" / "python", "-m", "pip", "install", "--quiet", source, timeout=600)
    listing = run(venv / "bin" / "twistd", "--help").stdout
    assert any(line.split()[:1] == ["superd"] for line in listing.splitlines()), listing
    site = next((venv / "lib").glob("python3*/site-packages"))
    assert (site / "twisted" / "plugins" / "superd_plugin.py").is_file()
    assert not (site / "twisted" / "plugins" / "__init__.py").read_text().count("superd")
    assert "superd" in run(venv / "bin" / "superd", "version").stdout
    check = run(venv / "bin" / "superd", "check", "-c", REPO / "conf").stdout
    assert "echo-stream" in check
    # The man pages come with it, where man looks for a bin directory on PATH.
    for page in ("man8/superd.8", "man8/superd-migrate.8", "man5/superd.conf.5"):
        installed = venv / "share" / "man" / page
        assert installed.read_bytes() == (REPO / "docs" / "man" / installed.name).read_bytes()
    if shutil.which("man"):
        found = subprocess.run(["man", "-w", "5", "superd.conf"], capture_output=True,
                               text=True, timeout=60, check=False,
                               env={"PATH": f"{venv / 'bin'}:/usr/bin:/bin"})
        assert found.stdout.strip() == str(venv / "share" / "man" / "man5" / "superd.conf.5")
