"""
The seams between the access layer and what serves an admitted peer.

A *handler* is built once per service at load time from its
``ServiceConfig``; the access-controlled factory calls it for each admitted
peer.  Builtins, spawned servers, sensors, redirects and users' own protocols
are all handlers, so access control, limits and logging apply to each alike.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface

__all__ = ["IDatagramHandler", "IStreamHandler"]


class IStreamHandler(Interface):
    """Serves admitted stream connections of one service."""

    def protocol_for(session):  # type: ignore[no-untyped-def]
        """
        Return the ``IProtocol`` that serves ``session``.

        The protocol (or the child it hands the socket to) must call
        ``session.end()`` exactly when the session is over.  Raising refuses
        the connection; the caller logs the failure.
        """


class IDatagramHandler(Interface):
    """Serves admitted datagrams of one in-process (``wait = yes``) service."""

    def handle_datagram(data, peer, reply):  # type: ignore[no-untyped-def]
        """
        Handle one datagram ``data`` from ``peer`` (a ``superd.core.session.Peer``).

        ``reply(data)`` sends a datagram back to the original source address.
        """

    suppress_replies = Attribute(
        "True when the handler never replies (discard), so the anti-reflection"
        " check may be skipped."
    )
