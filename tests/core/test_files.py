"""Tests for ``superd.core.files``: reading a file named by configuration, safely."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from superd.core.files import MAX_CONFIG_FILE, read_regular_file, size_text


def _refusal(path: str, limit: int = MAX_CONFIG_FILE) -> str:
    with pytest.raises(OSError) as caught:
        read_regular_file(path, limit)
    return str(caught.value.strerror)


def test_a_regular_file_and_a_link_to_one_are_read(tmp_path: Path) -> None:
    """The bytes come back as written, through a symbolic link too."""
    (tmp_path / "file").write_bytes(b"service echo\n\xff")
    (tmp_path / "link").symlink_to("file")
    assert read_regular_file(str(tmp_path / "file")) == b"service echo\n\xff"
    assert read_regular_file(str(tmp_path / "link")) == b"service echo\n\xff"


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    """Opening a FIFO for reading would block until someone writes; it is refused at once."""
    os.mkfifo(tmp_path / "fifo")
    assert _refusal(str(tmp_path / "fifo")) == "not a regular file (a FIFO)"


def test_devices_and_directories_are_refused(tmp_path: Path) -> None:
    """/dev/zero would never end; a directory is no file."""
    assert _refusal("/dev/zero") == "not a regular file (a character device)"
    assert _refusal(str(tmp_path)) == "not a regular file (a directory)"


def test_a_file_over_the_limit_is_refused_after_reading_at_most_one_byte_more(
        tmp_path: Path) -> None:
    """At the limit the file is read; one byte more is refused with the limit in words."""
    (tmp_path / "big").write_bytes(b"x" * 1024)
    assert len(read_regular_file(str(tmp_path / "big"), 1024)) == 1024
    assert _refusal(str(tmp_path / "big"), 1023) == "larger than 1023 bytes"
    assert _refusal(str(tmp_path / "big"), 512) == "larger than 512 bytes"


def test_the_default_limit_is_four_mebibytes(tmp_path: Path) -> None:
    """A 4 MiB file is read, 4 MiB and one byte is not."""
    (tmp_path / "big").write_bytes(b"#" * MAX_CONFIG_FILE)
    assert len(read_regular_file(str(tmp_path / "big"))) == MAX_CONFIG_FILE
    with (tmp_path / "big").open("ab") as f:
        f.write(b"#")
    assert _refusal(str(tmp_path / "big")) == "larger than 4 MiB"


def test_paths_with_a_nul_byte_or_no_file_are_oserrors(tmp_path: Path) -> None:
    """A NUL byte in the path is an OSError (not Python's ValueError); so is absence."""
    assert _refusal(str(tmp_path) + "/a\x00b") == "the path contains a NUL byte"
    assert _refusal(str(tmp_path / "absent")) == "No such file or directory"


def test_size_text() -> None:
    """Limits read as a person writes them."""
    assert [size_text(n) for n in (4 * 1024 * 1024, 512 * 1024, 1000)] == [
        "4 MiB", "512 KiB", "1000 bytes"]
