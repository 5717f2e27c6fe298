"""
The wire format of bans shared through Redis (pure: no I/O).

A ban is the key ``<prefix><host>`` whose value is its absolute expiry in
milliseconds (``inf``: forever), set and published by ``MERGE_SCRIPT``, which
keeps the longer of the stored and the new ban; ``LIFT_SCRIPT`` deletes it.
Messages on the channel are ``<host> <expiry> <service>`` (expiry ``0``:
lifted).  Everything read back is checked: a malformed key, value or message
is ignored, never trusted.
"""

from __future__ import annotations

import math
from typing import Optional

from superd.core.session import canonical_host

__all__ = [
    "LIFTED",
    "LIFT_SCRIPT",
    "MERGE_SCRIPT",
    "format_expiry",
    "message_label",
    "parse_expiry",
    "parse_host",
    "parse_message",
]

# KEYS[1] ban key; ARGV[1] expiry ms or "inf"; ARGV[2] channel; ARGV[3] message.
MERGE_SCRIPT = """
local cur = redis.call('GET', KEYS[1])
if cur == 'inf' then return 0 end
if cur and ARGV[1] ~= 'inf' and tonumber(cur) and tonumber(cur) >= tonumber(ARGV[1]) then
  return 0
end
if ARGV[1] == 'inf' then
  redis.call('SET', KEYS[1], 'inf')
else
  redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[1])
end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
"""

# KEYS[1] ban key; ARGV[1] channel; ARGV[2] message.
LIFT_SCRIPT = """
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
"""
#: The expiry field of a message that lifts a ban.
LIFTED = "0"


def format_expiry(expires: float) -> str:
    """An absolute expiry as stored: integer milliseconds, or ``inf``."""
    return "inf" if math.isinf(expires) else str(int(expires * 1000))


def parse_expiry(text: str) -> Optional[float]:
    """Seconds since the epoch (``math.inf``: forever) or None if malformed."""
    if text == "inf":
        return math.inf
    if not text.isdigit() or len(text) > 16:
        return None
    return int(text) / 1000.0


def parse_host(text: str) -> Optional[str]:
    """``text`` if it is a canonical IP address, else None (never trusted blindly)."""
    return text if text and len(text) <= 64 and canonical_host(text) == text \
        and any(c in text for c in ".:") else None


def parse_message(data: bytes) -> Optional[tuple[str, float, str]]:
    """``host expiry service`` from the channel (expiry 0: lifted), or None if malformed."""
    try:
        fields = data.decode("ascii").split(" ", 2)
    except UnicodeDecodeError:
        return None
    if len(fields) < 3:
        return None
    host, expires = parse_host(fields[0]), parse_expiry(fields[1])
    if host is None or expires is None:
        return None
    return host, expires, fields[2][:64]


def message_label(service_id: str) -> str:
    """A service id for a message: printable ASCII, never empty."""
    text = "".join(c if c.isascii() and c.isprintable() else "_" for c in service_id[:64])
    return text or "-"
