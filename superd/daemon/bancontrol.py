"""
Bans through the running daemon: the control socket's ``bans``, ``ban`` and
``unban`` commands, which ``superd bans list/add/remove`` send.

The daemon applies a change to the ban list in force -- the one every
connection is checked against -- which stores it (SQLite), shares it (the
fleet's ban store listens to the list) and logs it (a ``ban`` event with
``source = operator``); a new ban ends the source's open sessions, as every
ban does unless ``ban_ends_sessions = no``.  ``bans`` lists what is in
force, with the field names of ``superd status``: ``host``, ``until`` (RFC
3339, null: forever), ``added`` (RFC 3339, null: not known), ``service_id``
(who banned it) and ``hits``.

Requests (JSON, see ``superd.daemon.control``)::

    {"command": "bans"}
    {"command": "ban", "host": "192.0.2.7", "minutes": 10}    (null: forever)
    {"command": "unban", "host": "192.0.2.7"}
"""

from __future__ import annotations

from typing import Any, Dict, List

from superd.access.banrecord import Ban
from superd.access.bans import OPERATOR_SERVICE, BanList
from superd.access.state import AccessState
from superd.config.model import FOREVER
from superd.core.session import parse_host
from superd.core.timestamps import rfc3339_or_none
from superd.daemon.control import Handler
from superd.observe import events

__all__ = ["OPERATOR", "OPERATOR_SERVICE", "BanControl", "ban_row", "ban_rows"]

Json = Dict[str, Any]

#: The ``source`` of bans made and lifted by hand, in the log.
OPERATOR = "operator"
#: Longest ban in minutes short of forever (about 1900 years).
MAX_MINUTES = 1_000_000_000


def ban_row(ban: Ban) -> Json:
    """One ban as ``superd status`` and ``superd bans list`` show it (times
    in RFC 3339; ``until`` null: forever)."""
    return {"host": ban.host, "until": rfc3339_or_none(ban.expires),
            "added": rfc3339_or_none(ban.added), "service_id": ban.service,
            "hits": ban.hits, "remote": ban.remote}


def ban_rows(bans: BanList) -> List[Json]:
    """The bans in force, by host: what ``superd status`` and ``superd bans
    list`` show -- the list every connection is checked against, with when
    each was added, by which service, how often and whether the fleet sent
    it (kept in memory: the database may be degraded)."""
    return [ban_row(ban) for ban in bans.entries()]


def _host(request: Json) -> str:
    text = request.get("host")
    if not isinstance(text, str):
        raise ValueError("'host' must be an IP address")
    return parse_host(text)


def _minutes(request: Json) -> int:
    minutes = request.get("minutes")
    if minutes is None:
        return FOREVER
    if (not isinstance(minutes, int) or isinstance(minutes, bool)
            or not 0 < minutes <= MAX_MINUTES):
        raise ValueError(f"'minutes' must be a whole number from 1 to {MAX_MINUTES},"
                         " or null for forever")
    return minutes


class BanControl:
    """The ban commands of the control socket, on one daemon's access state."""

    def __init__(self, access: AccessState) -> None:
        self._access = access

    def commands(self) -> Dict[str, Handler]:
        """Command name -> handler, for ``ControlFactory``."""
        return {"bans": self.list_bans, "ban": self.ban, "unban": self.unban}

    def list_bans(self, request: Json) -> Json:
        """``bans``: every ban in force."""
        return {"ok": True, "bans": ban_rows(self._access.bans)}

    def ban(self, request: Json) -> Json:
        """``ban``: ban (or extend the ban of) ``host`` for ``minutes``."""
        try:
            host, minutes = _host(request), _minutes(request)
        except ValueError as e:
            return {"ok": False, "error": str(e)}
        bans = self._access.bans
        open_sessions = [s for s in self._access.counter.from_host(host)
                         if s.end_reason is None]
        bans.ban(host, minutes, OPERATOR_SERVICE, source=OPERATOR)
        ban = bans.entry(host)
        if ban is None:
            return {"ok": False, "error": "the ban list is full of bans made by hand;"
                                          " not banned"}
        ended = sum(s.end_reason == events.END_BANNED for s in open_sessions)
        return {"ok": True, "ban": ban_row(ban), "ended": ended}

    def unban(self, request: Json) -> Json:
        """``unban``: lift the ban of ``host``."""
        try:
            host = _host(request)
        except ValueError as e:
            return {"ok": False, "error": str(e)}
        return {"ok": True, "host": host, "lifted": self._access.bans.lift(host, OPERATOR)}

