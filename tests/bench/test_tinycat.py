"""bench/tinycat.c, the libc-free child of the benchmark's tinycat figure."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from benchlib import build

from .conftest import BENCH_DIR


@pytest.fixture(scope="module")
def tinycat(tmp_path_factory: pytest.TempPathFactory) -> str:
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    return build.build_all(BENCH_DIR, str(tmp_path_factory.mktemp("build")))["tinycat"]


def test_copies_input_to_output_and_exits_0(tinycat: str) -> None:
    """Every byte, across many reads of its 64 KiB buffer, in order."""
    data = os.urandom(300_000) + b"\0end\n"
    done = subprocess.run([tinycat], input=data, capture_output=True, timeout=20, check=False)
    assert (done.returncode, done.stdout) == (0, data)


def test_empty_input_exits_0_without_output(tinycat: str) -> None:
    done = subprocess.run([tinycat], input=b"", capture_output=True, timeout=20, check=False)
    assert (done.returncode, done.stdout) == (0, b"")


def test_write_error_exits_1(tinycat: str, tmp_path: Path) -> None:
    """Standard output open read-only: write(2) fails with EBADF."""
    out = tmp_path / "out"
    out.write_bytes(b"")
    with out.open("rb") as read_only:
        done = subprocess.run([tinycat], input=b"x", stdout=read_only, timeout=20, check=False)
    assert done.returncode == 1


def test_is_static_without_an_interpreter(tinycat: str) -> None:
    """No PT_INTERP program header: the kernel starts it directly, no ld.so at exec."""
    with open(tinycat, "rb") as f:
        elf = f.read()
    assert elf[:5] == b"\x7fELF\x02"  # 64-bit, the only kinds tinycat.c builds for
    phoff, = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    types = [struct.unpack_from("<I", elf, phoff + i * phentsize)[0] for i in range(phnum)]
    assert types and 3 not in types  # 3 = PT_INTERP
