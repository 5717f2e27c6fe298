"""
The shared ban store set in the configuration file (``ban_store`` in
``defaults``) works like ``--ban-store``: a daemon configured only through
its file shares bans, both ways, with one configured on the command line.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.access.clients import daytime_block, fetch, hosts_args
from tests.integration.redisserver import RedisServer, redis_server  # noqa: F401 (fixtures)
from tests.integration.test_fleet import SENSOR, remote_ban, subscribed


def test_ban_store_from_the_file_shares_bans_with_the_option(
        redis_server: RedisServer,  # noqa: F811 (first: stopped after the daemons)
        superd_factory: Callable[..., Any], conf_dir: Callable[..., Path],
        tmp_path: Path) -> None:
    """127.0.0.3 trips the sensor of the file-configured superd and is refused by
    the --ban-store one; 127.0.0.4 trips the other's and is refused by the first."""
    daytime = daytime_block("daytime", "\tcps = 0 0\n")
    from_file = superd_factory(
        conf_dir(trap=SENSOR, daytime=daytime,
                 fleet=f"defaults\n{{\n\tban_store = {redis_server.url}\n}}\n"),
        *hosts_args(tmp_path))
    from_option = superd_factory(conf_dir(trap=SENSOR, daytime=daytime),
                                 *hosts_args(tmp_path), "--ban-store", redis_server.url)
    for superd in (from_file, from_option):
        subscribed(superd)
    assert not fetch("127.0.0.3", from_file.port("trap"))
    remote_ban(from_option, "127.0.0.3", 5)
    assert not fetch("127.0.0.3", from_option.port("daytime"))
    assert not fetch("127.0.0.4", from_option.port("trap"))
    remote_ban(from_file, "127.0.0.4", 5)
    assert not fetch("127.0.0.4", from_file.port("daytime"))
    assert fetch("127.0.0.2", from_file.port("daytime"))
