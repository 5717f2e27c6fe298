"""
TLS termination for any stream service (issue 6).

``settings`` reads and checks the ``tls_*`` attributes at load; ``context``
builds pyOpenSSL contexts from them; ``names`` reads and matches the names
in a client certificate; ``protocol`` puts the TLS layer directly under a
service's own protocol, so access control runs before any handshake and the
service starts only after one has succeeded.
"""

__all__ = ["context", "names", "protocol", "settings"]
