"""
What serves an admitted peer: the builtins, external servers (``spawn``),
TLS termination (``tls``), ``redirect``, ``tcpmux`` and users' own Twisted
protocols (``userproto``).  Each is an ``IStreamHandler`` or
``IDatagramHandler`` wrapped by the access layer.
"""

__all__: list[str] = []
