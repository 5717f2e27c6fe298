"""
only_from / no_access on the real daemon, with 127.0.0.x as distinct hosts:
the seed's trailing-zero form, best-match precedence, and a 10,000-entry list.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.access.clients import daytime_block, fetch, hosts_args


def served(data: bytes | None) -> bool:
    return bool(data) and data.endswith(b"\r\n")  # type: ignore[union-attr]


def test_seed_only_from_semantics(superd_factory: Callable[..., Any],
                                  conf_dir: Callable[..., Path],
                                  tmp_path: Path) -> None:
    """``only_from = 127.0.2.0`` is 127.0.2/24 (the seed's 192.168.0.0 form);
    a more specific no_access entry wins over it; FAIL says ``address``."""
    conf = conf_dir(daytime=daytime_block(
        "daytime", "\tonly_from      = 127.0.2.0\n\tno_access      = 127.0.2.9\n"))
    superd = superd_factory(conf, *hosts_args(tmp_path))
    port = superd.port("daytime")
    assert served(fetch("127.0.2.5", port))
    assert fetch("127.0.0.2", port) in (b"", None)
    assert fetch("127.0.2.9", port) in (b"", None)
    superd.wait_for_event(lambda e: e.get("xinetd_line") ==
                          "FAIL: daytime address from=127.0.2.9")
    lines = superd.xinetd_lines()
    assert "FAIL: daytime address from=127.0.0.2" in lines
    assert "START: daytime from=127.0.2.5" in lines


def test_ten_thousand_entries(superd_factory: Callable[..., Any],
                              conf_dir: Callable[..., Path],
                              tmp_path: Path) -> None:
    """A 10,000-entry only_from list admits exactly its members."""
    entries = [f"10.{i // 256}.{i % 256}.1" for i in range(9_999)] + ["127.0.0.2"]
    # Lines are limited to 16 KiB, so the list is written 500 entries a line.
    lines = "".join(f"\tonly_from      += {' '.join(entries[i:i + 500])}\n"
                    for i in range(0, len(entries), 500))
    conf = conf_dir(daytime=daytime_block("daytime", lines))
    superd = superd_factory(conf, *hosts_args(tmp_path))
    port = superd.port("daytime")
    assert served(fetch("127.0.0.2", port))
    assert fetch("127.0.0.3", port) in (b"", None)


def test_host_name_entry(superd_factory: Callable[..., Any],
                         conf_dir: Callable[..., Path], tmp_path: Path) -> None:
    """``only_from = localhost`` admits 127.0.0.1 after a reverse lookup
    confirmed forward (done off the reactor), and refuses 127.0.0.2."""
    try:
        name = socket.gethostbyaddr("127.0.0.1")[0]
    except OSError:
        name = ""
    if name != "localhost":
        pytest.skip("127.0.0.1 does not resolve to localhost here")
    conf = conf_dir(daytime=daytime_block("daytime", "\tonly_from      = localhost\n"))
    superd = superd_factory(conf, *hosts_args(tmp_path))
    port = superd.port("daytime")
    assert served(fetch("127.0.0.1", port))
    assert fetch("127.0.0.2", port) in (b"", None)
