"""
Many hosts, one ban list: sensor bans shared through Redis.

``superd ... --ban-store redis://host:port/db`` shares every SENSOR ban of
this host with every superd using the same Redis, within a second, and
keeps serving on the local SQLite list while Redis is away
(``superd.fleet.sync``; its keys, scripts and messages in
``superd.fleet.wire``).  The client is our own, bounded, on Twisted
(``superd.fleet.client``, ``superd.fleet.resp``).
"""

from __future__ import annotations

from typing import Any

from superd.config.storeurl import RedisTarget, parse_redis_url
from superd.fleet.sync import SharedBans

__all__ = ["RedisTarget", "SharedBans", "attach", "parse_redis_url"]


def attach(top: Any, runtime: Any, url: str) -> SharedBans:
    """Share ``runtime.bans`` through the Redis at ``url`` while ``top`` runs."""
    if runtime.bans is None or not hasattr(runtime.bans, "merge"):
        raise ValueError("the ban store needs superd's ban list (superd.access)")
    shared = SharedBans(runtime.bans, parse_redis_url(url), runtime.reactor)
    shared.setServiceParent(top)
    return shared
