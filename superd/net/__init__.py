"""
Listening sockets: where a service listens (``sockets``), the listening port
that lets a handler take an accepted descriptor (``takingport``), one socket
as a Twisted service (``listener``), and sockets passed by systemd
(``activation``).
"""

__all__: list[str] = []
