"""
Drivers for the real servers and clients that superd hands connections to
(sshd, rsync, git daemon, in.tftpd), shared by the external-server tests and
the tests of the shipped examples.
"""

from __future__ import annotations

import filecmp
import os
import subprocess
from pathlib import Path

from tests.integration.harness import require_program

__all__ = [
    "git",
    "make_tree",
    "rsync_fetch",
    "rsync_module",
    "run_ssh",
    "same_tree",
    "ssh_files",
    "tftp_get",
]


def ssh_files(directory: Path) -> dict[str, str]:
    """Host key, client key, authorized_keys and an sshd_config in ``directory``:
    ``{"config": sshd_config path, "key": client key path}``."""
    keygen = require_program("ssh-keygen")
    require_program("ssh")
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation
    for name in ("host_key", "client_key"):
        subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f",
                        str(directory / name)], check=True, timeout=30)
    (directory / "authorized_keys").write_text((directory / "client_key.pub").read_text())
    config = directory / "sshd_config"
    config.write_text(
        f"HostKey {directory / 'host_key'}\n"
        f"AuthorizedKeysFile {directory / 'authorized_keys'}\n"
        "PermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "UsePAM no\n"
        "StrictModes no\n"
        "PidFile none\n")
    return {"config": str(config), "key": str(directory / "client_key")}


def run_ssh(port: int, key: str, *command: str) -> subprocess.CompletedProcess[str]:
    """The real ``ssh`` client as root@127.0.0.1:PORT with ``key``, no prompts."""
    return subprocess.run(
        [require_program("ssh"), "-p", str(port), "-i", key, "-F", "/dev/null",
         "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR",
         "root@127.0.0.1", *command],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, check=False)


def make_tree(root: Path) -> None:
    """Files of assorted sizes (binary, empty, 3 MiB), nested directories."""
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "empty").write_bytes(b"")
    (root / "small.txt").write_text("hello rsync\n")
    (root / "sub" / "random.bin").write_bytes(os.urandom(200_000))
    (root / "sub" / "deeper" / "big.bin").write_bytes(os.urandom(3 << 20))
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def rsync_module(directory: Path, settings: str) -> tuple[Path, Path]:
    """A tree (``make_tree``) in ``directory`` and an rsyncd.conf beside it
    serving it read-only as module ``data``, with global ``settings``."""
    source = directory / "source"
    source.mkdir()
    make_tree(source)
    config = directory / "rsyncd.conf"
    config.write_text(f"{settings}[data]\n\tpath = {source}\n\tread only = yes\n")
    config.chmod(0o644)
    return source, config


def rsync_fetch(port: int, dest: Path, *, client: str = "rsync", host: str = "127.0.0.1",
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``rsync -a rsync://HOST:PORT/data/ DEST/`` with the real client
    (``client = "rsync-ssl"`` for rsync over TLS)."""
    return subprocess.run(
        [require_program(client), "-a", f"rsync://{host}:{port}/data/", f"{dest}/"],
        capture_output=True, text=True, timeout=60, check=False, env=env)


def same_tree(a: Path, b: Path) -> bool:
    """True if both trees hold the same names and byte-identical files."""
    compare = filecmp.dircmp(a, b)
    if compare.left_only or compare.right_only or compare.funny_files:
        return False
    _, mismatch, errors = filecmp.cmpfiles(a, b, compare.common_files, shallow=False)
    if mismatch or errors:
        return False
    return all(same_tree(a / d, b / d) for d in compare.common_dirs)


def git(*args: str, cwd: Path | None = None) -> str:
    """Run the real ``git`` (fixed identity and branch name); its stdout."""
    result = subprocess.run(
        [require_program("git"), "-c", "user.name=t", "-c", "user.email=t@example.org",
         "-c", "init.defaultBranch=main", *args],
        cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def tftp_get(port: int, name: str, dest: Path) -> subprocess.CompletedProcess[str]:
    """The real ``tftp`` client fetching ``name`` from 127.0.0.1:PORT into ``dest``."""
    return subprocess.run(
        [require_program("tftp"), "-m", "binary", "127.0.0.1", str(port),
         "-c", "get", name, str(dest)],
        capture_output=True, text=True, timeout=30, cwd=dest.parent, check=False)
