"""
TLS termination for any stream service.

``protocol`` puts the TLS layer directly under a service's own protocol, so
access control runs before any handshake and the service starts only after
one has succeeded; ``pipe`` relays a TLS session to an external server over
a socket pair; ``names`` reads and matches the names in a client
certificate.  The contexts are built from the configuration by
``superd.config.tlscontext``.
"""

__all__ = ["names", "pipe", "protocol"]
