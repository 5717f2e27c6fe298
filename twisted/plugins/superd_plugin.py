"""
The twistd plugin: makes ``twistd superd -c PATH`` run superd.

twistd imports every plugin module just to list its subcommands, so this
shim imports nothing of superd until superd is actually run.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import IServiceMaker
from twisted.plugin import IPlugin
from zope.interface import implementer


@implementer(IServiceMaker, IPlugin)
class _SuperdServiceMaker:
    tapname = "superd"
    description = "Multi-protocol service host reading xinetd configuration"

    @property
    def options(self) -> Any:
        # twistd asks for the options before it imports the reactor: hold its
        # TLS imports back from here on (superd.core.lazytls).
        from superd.core import lazytls

        lazytls.hold()
        from superd.daemon.tap import Options

        return Options

    def makeService(self, options: Any) -> Any:
        from superd.daemon.tap import makeService

        return makeService(options)


serviceMaker = _SuperdServiceMaker()
