"""
External inetd-style servers: one process per connection (``wait = no``) or
one process owning the listening/bound socket (``wait = yes``).

* ``argv`` / ``environ``: the child's argument vector and environment, pure.
* ``credentials``: per-thread credential switching that keeps the
  ``posix_spawn`` fast path when superd runs as root.
* ``spawner``: ``posix_spawn`` with an explicit descriptor map, and reaping.
* ``handoff``: giving an accepted Twisted TCP connection to a child.
* ``handler``: ``ExternalHandler``, the ``IStreamHandler`` for ``wait = no``.
* ``table``: every running child, and stopping them with a grace period.
* ``wait``: ``wait = yes`` stream and datagram services, with respawn back-off.
"""

__all__: list[str] = []
