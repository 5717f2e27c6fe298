"""
The ``superd`` command: ``check``, ``migrate``, ``status``, ``reload``,
``bans`` and ``run``.  Talks to a running daemon only through its control
socket.
"""

__all__: list[str] = []
