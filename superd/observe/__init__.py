"""
What superd tells the world about itself: structured log events and their
reason words (``events``), xinetd-format service logs (``servicelog``), the
observers for ``twistd --logger`` (``logs``) and per-block connection counts
(``counters``).
"""

__all__: list[str] = []
