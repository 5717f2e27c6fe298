"""Compile the C helpers (load generator, floors, flood sender) into the build directory."""

from __future__ import annotations

import os
import subprocess

__all__ = ["PROGRAMS", "build_all"]

PROGRAMS = ("loadgen", "spawnloop", "upstream", "tinycat", "echoloop", "udpflood")
# tinycat is the "cheap child": no C library, so no dynamic loader at exec.
_FLAGS = {"tinycat": ["-static", "-nostdlib", "-fno-stack-protector"]}


def _stale(source: str, binary: str) -> bool:
    return not os.path.exists(binary) or os.path.getmtime(binary) < os.path.getmtime(source)


def build_all(bench_dir: str, build_dir: str) -> dict[str, str]:
    """``gcc -O2`` each program whose binary is missing or older than its source."""
    os.makedirs(build_dir, exist_ok=True)
    binaries = {}
    for name in PROGRAMS:
        source = os.path.join(bench_dir, name + ".c")
        binary = os.path.join(build_dir, name)
        if _stale(source, binary):
            flags = _FLAGS.get(name, [])
            subprocess.run(
                ["gcc", "-O2", "-Wall", "-Wextra", *flags, "-o", binary, source], check=True
            )
        binaries[name] = binary
    return binaries
