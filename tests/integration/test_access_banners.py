"""
Banners on the real daemon: ``banner`` before the checks, ``banner_success``
before the server runs (also for a spawned server, which gets the socket
itself), ``banner_fail`` to a refused peer.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.access.clients import fetch, hosts_args, open_from
from tests.integration.harness import require_program


def external_block(tmp_path: Path, cat: str) -> str:
    return (
        "service catsrv\n{\n"
        "\ttype           = UNLISTED\n"
        "\tsocket_type    = stream\n"
        "\twait           = no\n"
        "\tport           = 0\n"
        "\tbind           = 127.0.0.1\n"
        "\tuser           = root\n"
        f"\tserver         = {cat}\n"
        "\tonly_from      = 127.0.0.2\n"
        f"\tbanner         = {tmp_path / 'banner'}\n"
        f"\tbanner_success = {tmp_path / 'welcome'}\n"
        f"\tbanner_fail    = {tmp_path / 'go-away'}\n"
        "\tlog_on_failure = HOST\n"
        "}\n")


def test_banners_around_a_spawned_server(superd_factory: Callable[..., Any],
                                         conf_dir: Callable[..., Path],
                                         tmp_path: Path) -> None:
    """The admitted peer reads banner + banner_success, then talks to cat;
    the refused peer reads banner + banner_fail and EOF."""
    cat = require_program("cat")
    (tmp_path / "banner").write_text("hello\n")
    (tmp_path / "welcome").write_text("welcome\n")
    (tmp_path / "go-away").write_text("go away\n")
    superd = superd_factory(conf_dir(catsrv=external_block(tmp_path, cat)),
                            *hosts_args(tmp_path))
    port = superd.port("catsrv")
    with open_from("127.0.0.2", port) as conn:
        expected = b"hello\nwelcome\n"
        got = b""
        while len(got) < len(expected):
            chunk = conn.recv(100)
            assert chunk, got
            got += chunk
        assert got == expected
        conn.sendall(b"ping\n")
        assert conn.recv(100) == b"ping\n"
    assert fetch("127.0.0.3", port) == b"hello\ngo away\n"
    superd.wait_for_event(lambda e: e.get("xinetd_line") ==
                          "FAIL: catsrv address from=127.0.0.3")
