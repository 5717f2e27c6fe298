"""
The public interface for users' own protocols: what a ``factory =`` or
``plugin =`` service implements and receives.

    from superd.api import ISuperdProtocol, UserAttribute, UserContext

These names are stable; where they are defined inside superd is not.
"""

from superd.config.userproto import ISuperdProtocol, UserAttribute, UserContext

__all__ = ["ISuperdProtocol", "UserAttribute", "UserContext"]
