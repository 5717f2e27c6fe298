"""
Running programs: starting a child with ``posix_spawn`` (``spawner``), with
another user's credentials when superd runs as root (``credentials``),
learning that it ended (``reaping``), and the table of every running child
with their orderly stop (``table``).

Nothing here knows about connections or services' handlers; the spawn
handlers (``superd.handlers.spawn``) and the access limits use it.
"""

__all__: list[str] = []
