"""
Per-service connection counters for ``superd status``: how many peers were
admitted, how many were refused, by xinetd's reason word, and how many live
sessions superd ended itself (a ban, a reload), by reason.

They are kept per configuration block (``ServiceConfig.block_key``): two
blocks may share an id, and ``superd status`` shows each one's own counts;
the metrics add up the blocks of an id.

The access layer bumps them on every decision (an attribute increment and a
dict update: cheap next to accepting a socket).  They belong to the daemon
(one ``Counters``), not to a factory, so a reload that rebuilds a service's
factory keeps its counts, and they count every refusal -- the FAIL log lines are rate-limited
(``superd.access.refusals``), the counters are not.
"""

from __future__ import annotations

from typing import Dict, List, Optional

__all__ = ["Counters", "ServiceCounters"]


class ServiceCounters:
    """The counts of one service block since superd started."""

    __slots__ = ("accepted", "ended", "refused", "service_id")

    def __init__(self, service_id: str) -> None:
        self.service_id = service_id
        self.accepted = 0
        #: reason word -> count.
        self.refused: Dict[str, int] = {}
        #: Live sessions superd ended: reason (``banned``, ``reconfigured``) -> count.
        self.ended: Dict[str, int] = {}

    def accept(self) -> None:
        """One peer admitted."""
        self.accepted += 1

    def refuse(self, reason: str) -> None:
        """One peer refused for ``reason``."""
        self.refused[reason] = self.refused.get(reason, 0) + 1

    def end(self, reason: str) -> None:
        """One live session ended by superd for ``reason``."""
        self.ended[reason] = self.ended.get(reason, 0) + 1

    def as_dict(self) -> Dict[str, object]:
        """``{"accepted": N, "refused": {reason: N}, "ended": {reason: N}}`` for JSON."""
        return {"accepted": self.accepted, "refused": dict(sorted(self.refused.items())),
                "ended": dict(sorted(self.ended.items()))}


class Counters:
    """Block key -> its counters, for every block that counted something."""

    def __init__(self) -> None:
        self._blocks: Dict[str, ServiceCounters] = {}

    def for_block(self, service_id: str, block: Optional[str] = None) -> ServiceCounters:
        """The counters of ``service_id``'s block ``block`` (the id itself by
        default), created on first use and kept for good."""
        key = service_id if block is None else block
        counters = self._blocks.get(key)
        if counters is None:
            counters = self._blocks[key] = ServiceCounters(service_id)
        return counters

    def get(self, block: str) -> Optional[ServiceCounters]:
        """The counters of ``block``, if it counted anything."""
        return self._blocks.get(block)

    def all(self) -> List[ServiceCounters]:
        """Every block's counters."""
        return list(self._blocks.values())
