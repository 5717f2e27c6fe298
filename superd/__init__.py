"""
superd: a Twisted multi-protocol service host that reads xinetd configuration.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
