"""
The ban store's password on the real daemon: refused on the command line
(exit 64, where every local user would read it), taken from the environment
or a file instead, and never seen by a server superd starts, nor in its
command line.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.access.clients import fetch, hosts_args
from tests.integration.external import service_block
from tests.integration.harness import require_program, run_twistd
from tests.integration.redisserver import RedisServer, redis_with_password
from tests.integration.test_fleet import SENSOR, subscribed

__all__ = ["redis_with_password"]  # a fixture


def test_password_in_the_command_line_url_is_refused(conf_dir: Callable[..., Path],
                                                     tmp_path: Path) -> None:
    """Exit 64 with a message saying what to use instead, never echoing it."""
    done = run_twistd(str(conf_dir(trap=SENSOR)), *hosts_args(tmp_path),
                      "--ban-store", "redis://:s3cretPW@127.0.0.1:6379/0")
    assert done.returncode == 64
    assert "--ban-store-password-file" in done.stderr
    assert "s3cretPW" not in done.stderr + done.stdout


def test_password_from_the_environment_reaches_redis_not_servers(
        redis_with_password: RedisServer,  # first: stopped after the daemon
        superd_factory: Callable[..., Any], conf_dir: Callable[..., Path],
        tmp_path: Path) -> None:
    """SUPERD_BAN_STORE_PASSWORD authenticates the ban store; a server
    (``env``) started for a client does not see it, nor does superd's
    command line hold it."""
    env_program = require_program("env")
    conf = conf_dir(trap=SENSOR, env=service_block("env", env_program, user="root"))
    superd = superd_factory(conf, *hosts_args(tmp_path), "--ban-store",
                            redis_with_password.url,
                            env={"SUPERD_BAN_STORE_PASSWORD": "s3cret"})
    subscribed(superd)
    assert not fetch("127.0.0.3", superd.port("trap"))
    superd.wait_for_event(lambda e: e.get("event") == "ban" and e.get("action") == "add")
    served = fetch("127.0.0.2", superd.port("env"))
    assert served is not None and b"PATH=" in served
    assert b"SUPERD_BAN_STORE_PASSWORD" not in served and b"s3cret" not in served
    with open(f"/proc/{superd.pid}/cmdline", "rb") as cmdline:
        assert b"s3cret" not in cmdline.read()
    assert b"127.0.0.3" in redis_with_password.command("KEYS", "superd:ban:*")
