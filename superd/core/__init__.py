"""
What every layer of superd shares and nothing else: the injected runtime
(reactor and command-line options), the admitted session and its peer, the
handler interfaces, and the daemon's fixed paths and exit statuses.

Nothing here imports any other part of superd.
"""

__all__: list[str] = []
