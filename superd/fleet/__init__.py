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

from typing import Final

__all__ = ["SERVICE_NAME"]

#: The name of the ``SharedBans`` service under the daemon's service tree:
#: the status finds it by that name without importing the client for a
#: daemon that has no ban store.
SERVICE_NAME: Final = "ban_store"
