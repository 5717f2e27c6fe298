"""
Access control and abuse protection: who may use a service, how often, and
what happens to those who may not.

``factory`` is the seam (one ``AccessControlledFactory`` per stream service,
one ``AccessControlledDatagramProtocol`` per in-process datagram service)
and ``gate`` holds a connection whose admission must wait (names, banners,
USERID: ``userid``);
``pipeline`` orders the policies; each policy module answers one question
(``addresses``, ``hostsaccess``, ``times``, ``rate``, ``limits``, ``load``);
``bans`` and ``banstore`` keep SENSOR bans; ``banners`` and ``refusals``
shape what a refused peer sees and what the log says; ``setup`` attaches the
daemon-wide state to the ``Runtime``; ``banscli`` is ``superd bans``.
"""

__all__: list[str] = []
