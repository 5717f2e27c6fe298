"""
OpenSSH under superd, as in the seed article: ``sshd -i`` spawned per
connection with the accepted socket as its standard input and output, driven
by the real ``ssh`` client; and the seed's ``-o AllowUsers=...`` variant
refusing the user.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.external import needs_root, service_block, wait_until
from tests.integration.harness import Superd, require_program
from tests.integration.servers import run_ssh, ssh_files

Factory = Callable[..., Superd]


@pytest.fixture
def ssh_setup(tmp_path: Path) -> dict[str, str]:
    """Host key, client key, authorized_keys and an sshd_config in tmp_path."""
    return ssh_files(tmp_path)


@needs_root
def test_sshd_serves_and_refuses(superd_factory: Factory, conf_dir: Callable[..., Path],
                                 ssh_setup: dict[str, str]) -> None:
    """``ssh root@127.0.0.1 echo hi`` prints hi through sshd -i; the service
    whose server_args add ``-o AllowUsers=someoneelse`` refuses root; both
    children are reaped and logged."""
    sshd = require_program("sshd")
    config = ssh_setup["config"]
    conf = conf_dir(ssh=(
        service_block("ssh", sshd, f"-i -f {config}", user="root", name="ssh")
        + service_block("ssh-refusing", sshd,
                        f"-i -f {config} -o AllowUsers=someoneelse",
                        user="root", name="ssh")))
    superd = superd_factory(conf)
    ok = run_ssh(superd.port("ssh"), ssh_setup["key"], "echo", "hi", "$SSH_CLIENT")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.split()[0] == "hi"
    assert ok.stdout.split()[1] == "127.0.0.1"
    refused = run_ssh(superd.port("ssh-refusing"), ssh_setup["key"], "echo", "hi")
    assert refused.returncode == 255 and "hi" not in refused.stdout
    assert "Permission denied" in refused.stderr
    assert wait_until(lambda: len([e for e in superd.events()
                                   if e.get("event") == "exit"]) == 2)
    assert wait_until(lambda: superd.children() == [])
    starts = [line for line in superd.xinetd_lines() if line.startswith("START: ssh")]
    assert len(starts) == 2 and all(line.endswith("from=127.0.0.1") for line in starts)
