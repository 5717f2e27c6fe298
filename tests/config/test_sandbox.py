"""
The sandbox attributes at load (issue 17 item 6): parsed into
``ServiceConfig.sandbox``; refused with FILE:LINE where they cannot apply.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from superd.config.load import load_configuration
from superd.config.model import Configuration, Sandbox
from tests.config.fakes import errors_under


def load(tmp_path: Path, body: str, head: str = "\tserver = /bin/cat\n\tuser = root\n",
         type: str = "UNLISTED") -> Configuration:
    conf = tmp_path / "svc"
    conf.write_text(f"service box\n{{\n\ttype = {type}\n\tsocket_type = stream\n"
                    f"\twait = no\n\tport = 0\n{head}{body}}}\n")
    return load_configuration(str(conf))


def problems(tmp_path: Path, body: str, **kw: str) -> list[str]:
    return errors_under(tmp_path, lambda: load(tmp_path, body, **kw))


def test_parsed(tmp_path: Path) -> None:
    config = load(tmp_path, "\tno_new_privileges = yes\n\tprivate_tmp = yes\n"
                            "\tread_only_paths = /etc /usr\n\tmemory_max = 64M\n"
                            "\ttasks_max = 32\n")
    assert config.services[0].sandbox == Sandbox(
        no_new_privileges=True, private_tmp=True, read_only_paths=("/etc", "/usr"),
        memory_max=64 << 20, tasks_max=32)
    assert load(tmp_path, "").services[0].sandbox == Sandbox()


@pytest.mark.parametrize("body, message", [
    ("\tmemory_max = 0\n", "svc:9: service box: memory_max: expected a size > 0, got '0'"),
    ("\ttasks_max = 0\n", "svc:9: service box: tasks_max: expected an integer >= 1, got '0'"),
    ("\tread_only_paths = etc\n",
     "svc:9: service box: read_only_paths: expected an absolute path, got 'etc'"),
    ("\tread_only_paths = /etc /etc\n",
     "svc:9: service box: read_only_paths: /etc is listed twice"),
    ("\tprivate_tmp = yes\n\tread_only_paths = /tmp/x\n",
     "svc:10: service box: read_only_paths: /tmp/x is hidden by private_tmp's empty /tmp"),
    ("\tprivate_tmp = maybe\n",
     "svc:9: service box: private_tmp: expected yes or no, got 'maybe'"),
])
def test_bad_values(tmp_path: Path, body: str, message: str) -> None:
    assert problems(tmp_path, body) == [message]


def test_only_servers_can_be_confined(tmp_path: Path) -> None:
    """A builtin has no child to confine."""
    found = problems(tmp_path, "\tprivate_tmp = yes\n", head="", type="INTERNAL UNLISTED")
    assert found[-1:] == ["svc:7: service box: private_tmp: only a service that runs a server"
            " (server = PATH) can be confined"]  # (box is no builtin either)


def test_server_hidden_by_private_tmp(tmp_path: Path) -> None:
    server = tmp_path / "server.sh"
    server.write_text("#!/bin/sh\n")
    server.chmod(0o755)
    head = f"\tserver = {server}\n\tuser = root\n"
    assert problems(tmp_path, "\tprivate_tmp = yes\n", head=head) == [
        "svc:9: service box: private_tmp: the server server.sh would be hidden by"
        " private_tmp's empty /tmp"]
