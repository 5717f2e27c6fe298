"""
xinetd-format service logs: ``log_type = FILE ...`` and ``SYSLOG ...``.

``ServiceLogRouter`` (``router.py``) is a ``twisted.logger`` observer that
writes the ``xinetd_line`` of START/EXIT/FAIL/USERID/NOID events to each
service's log target; ``filelog.py`` and ``syslogsink.py`` are the targets.
"""

from superd.servicelog.router import ServiceLogRouter

__all__ = ["ServiceLogRouter"]
