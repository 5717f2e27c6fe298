"""
External inetd-style servers: one process per connection (``wait = no``) or
one process owning the listening/bound socket (``wait = yes``).

* ``argv`` / ``environ``: the child's argument vector and environment, pure.
* ``credentials``: per-thread credential switching that keeps the
  ``posix_spawn`` fast path when superd runs as root.
* ``spawner``: ``posix_spawn`` with an explicit descriptor map.
* ``reaping``: learning that a child ended (on SIGCHLD, per exited child).
* ``spec``: what is fixed about a service's children, computed at load.
* ``handoff``: giving an accepted Twisted TCP connection to a child.
* ``handler``: ``ExternalHandler``, the ``IStreamHandler`` for ``wait = no``.
* ``table``: every running child, and stopping them with a grace period.
* ``wait``: ``wait = yes`` stream and datagram services; ``backoff``: the
  respawn guard for their servers that exit at once.
"""

__all__: list[str] = []
