"""
Which connections get an RFC 1413 ident lookup (``log_on_success/failure =
USERID``, ``flags = IDONLY``): asked of every service when it is built, so
apart from the client (``superd.access.ident``), which is imported only by
the first lookup.
"""

from __future__ import annotations

from superd.config.model import ServiceConfig, SocketType

__all__ = ["IDENT_PORT", "must_identify", "wants_userid"]

#: identd's port (RFC 1413).
IDENT_PORT = 113


def wants_userid(service: ServiceConfig, admitted: bool) -> bool:
    """
    Whether a connection of ``service`` gets an ident lookup: only stream
    ``wait = no`` services (as xinetd); admitted ones when ``log_on_success``
    has USERID (or the service is IDONLY), refused ones when
    ``log_on_failure`` has USERID.
    """
    if service.socket_type is not SocketType.STREAM or service.wait:
        return False
    if service.unix is not None:
        return False  # a UNIX peer has no host to ask; its uid is known
    if service.port == IDENT_PORT and service.protocol == "tcp":
        # Asking the client's identd about a connection to our own ident
        # service would loop (xinetd clears USERID there too).
        return False
    if admitted:
        return "USERID" in service.log_on_success or must_identify(service)
    return "USERID" in service.log_on_failure


def must_identify(service: ServiceConfig) -> bool:
    """True for ``flags = IDONLY``: clients without an ident answer are refused."""
    return "IDONLY" in service.flags
