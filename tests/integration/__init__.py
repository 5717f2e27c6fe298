"""Integration tests: the real daemon (twistd) and real programs over loopback."""
