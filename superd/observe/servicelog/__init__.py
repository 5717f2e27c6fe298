"""
xinetd-format service logs: ``log_type = FILE ...`` and ``SYSLOG ...``.

``ServiceLogRouter`` (``router.py``) is a ``twisted.logger`` observer that
writes the ``xinetd_line`` of START/EXIT/FAIL/USERID/NOID events to each
service's log target; ``filelog.py`` and ``syslogsink.py`` are the targets;
``ServiceLogService`` (``service.py``) subscribes the router while running.
"""

from superd.observe.servicelog.router import ServiceLogRouter
from superd.observe.servicelog.service import ServiceLogService

__all__ = ["ServiceLogRouter", "ServiceLogService"]
