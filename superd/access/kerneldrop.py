"""
Banned sources that keep hammering are dropped by the kernel.

A banned source is refused like any other (closed at once, FAIL logged) --
until it has been refused ``threshold`` times within ``window`` seconds.
Then its address joins a classic BPF socket filter attached to every
listening TCP and bound UDP socket of the services (the daemon passes them
in: ``superd.net.listener.Listeners.sockets``), so the kernel drops its
SYNs and datagrams before they reach the accept queue: the flood no longer
costs superd anything and no longer queues in front of well-behaved
clients.  (Without this, each refusal of a flood still costs an accept, a
close and a turn of the event loop, and the flood's connections wait in the
same accept queue as everyone else's.)  The address leaves the filter when
its ban ends or is lifted.  A source banned with its IPv6 network (a sensor
with ``v6_source_prefix``) is counted, filtered and released as that
network: walking its addresses neither resets the count nor fills the filter.

Linux only (``SO_ATTACH_FILTER``); anywhere the option fails, it is logged
once and superd goes on refusing in user space.  The program is rebuilt
from scratch on every change: a cBPF program is at most 4096 instructions,
which bounds the filter at ``MAX_ADDRESSES`` sources (the rest are refused
in user space as before).
"""

from __future__ import annotations

import ctypes
import errno
import ipaddress
import socket
import struct
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from superd.observe import events

__all__ = ["KernelDrop", "attach_program", "filter_program"]

_log = Logger(namespace="superd")

SO_ATTACH_FILTER = getattr(socket, "SO_ATTACH_FILTER", 26)
SO_DETACH_FILTER = getattr(socket, "SO_DETACH_FILTER", 27)
_NET = -0x100000  # SKF_NET_OFF: offsets from the network header
_LD_B, _LD_W, _AND, _JEQ, _JA, _RET = 0x30, 0x20, 0x54, 0x15, 0x05, 0x06
MAX_ADDRESSES = 400


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k & 0xFFFFFFFF)


def _v4_block(addresses: list[int]) -> list[bytes]:
    out = [_insn(_LD_W, 0, 0, _NET + 12)]  # IPv4 source address
    for value in addresses:
        out += [_insn(_JEQ, 0, 1, value), _insn(_RET, 0, 0, 0)]
    return [*out, _insn(_RET, 0, 0, 0xFFFFFFFF)]


def _v6_entry(packed: bytes, length: int) -> list[bytes]:
    """Drop the packet if its source is in ``packed``/``length``: one load
    and compare per 32-bit word the prefix touches (masked when partial);
    a mismatch skips the rest of the entry."""
    steps: list[tuple[list[bytes], int]] = []
    words = struct.unpack("!4I", packed)
    for i in range((length + 31) // 32):
        bits = min(32, length - 32 * i)
        mask = (0xFFFFFFFF << (32 - bits)) & 0xFFFFFFFF
        load = [_insn(_LD_W, 0, 0, _NET + 8 + 4 * i)]
        if bits < 32:
            load.append(_insn(_AND, 0, 0, mask))
        steps.append((load, words[i] & mask))
    out: list[bytes] = []
    rest = sum(len(load) + 1 for load, _ in steps) + 1
    for load, word in steps:
        rest -= len(load) + 1
        out += [*load, _insn(_JEQ, 0, rest, word)]
    return [*out, _insn(_RET, 0, 0, 0)]


def _v6_block(entries: list[tuple[bytes, int]]) -> list[bytes]:
    out: list[bytes] = []
    for packed, length in entries:
        out += _v6_entry(packed, length)
    return [*out, _insn(_RET, 0, 0, 0xFFFFFFFF)]


def filter_program(hosts: Iterable[str]) -> bytes:
    """A cBPF program dropping packets whose source is one of ``hosts``:
    addresses, or IPv6 networks (``2001:db8:1:2::/64``, the bans of a sensor
    with ``v6_source_prefix``)."""
    v4: list[int] = []
    v6: list[tuple[bytes, int]] = []
    for host in hosts:
        if "/" in host:
            network = ipaddress.ip_network(host)
            # Sources are only ever widened to IPv6 networks.
            if network.version == 6:
                v6.append((network.network_address.packed, network.prefixlen))
            continue
        address = ipaddress.ip_address(host)
        if address.version == 4:
            v4.append(int(address))
        else:
            v6.append((address.packed, 128))
    v4_code, v6_code = _v4_block(v4), _v6_block(v6)
    # IPv4 packets jump over the "ja" into the IPv4 block; others take the
    # "ja" (32-bit offset: the IPv4 block may be longer than a jeq can skip).
    head = [_insn(_LD_B, 0, 0, _NET), _insn(_AND, 0, 0, 0xF0),
            _insn(_JEQ, 1, 0, 0x40), _insn(_JA, 0, 0, len(v4_code))]
    return b"".join(head + v4_code + v6_code)


def attach_program(sock: socket.socket, program: bytes) -> None:
    """Attach ``program`` to ``sock`` (the kernel copies it)."""
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = struct.pack("HL", len(program) // 8, ctypes.addressof(buffer))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


class KernelDrop:
    """
    Moves hammering banned sources into the kernel's socket filters.
    ``sockets`` returns the services' listening sockets as they are now.
    """

    def __init__(self, clock: Any, sockets: Callable[[], Iterable[socket.socket]],
                 is_banned: Callable[[str], bool], *, threshold: int = 20,
                 window: float = 10.0) -> None:
        self._clock = clock
        self._sockets = sockets
        self._is_banned = is_banned
        self.threshold = threshold
        self.window = window
        self._counts: dict[str, tuple[float, int]] = {}
        self.dropped: set[str] = set()
        # Sockets carrying a filter, so that it is detached when the last
        # ban ends.  Weak: closed ports drop out.
        self._filtered: weakref.WeakValueDictionary[int, socket.socket] = (
            weakref.WeakValueDictionary())
        self._broken = False
        self._maintenance: LoopingCall | None = None

    def refused_banned(self, host: str, now: float) -> None:
        """A banned ``host`` was refused once more."""
        if host in self.dropped or self._broken:
            return
        start, count = self._counts.get(host, (now, 0))
        if not 0 <= now - start < self.window:
            start, count = now, 0
        self._counts[host] = (start, count + 1)
        if count + 1 >= self.threshold and len(self.dropped) < MAX_ADDRESSES:
            del self._counts[host]
            self.dropped.add(host)
            _log.warn("{peer_host} keeps connecting while banned; dropping its"
                      " packets in the kernel", event=events.EV_BAN,
                      action="kernel_drop", peer_host=host)
            self.apply()

    def apply(self) -> None:
        """Give every listening socket the filter for the current set."""
        program = filter_program(sorted(self.dropped)) if self.dropped else None
        for sock in self._sockets():
            try:
                if program is not None:
                    attach_program(sock, program)
                    self._filtered[id(sock)] = sock
                elif self._filtered.pop(id(sock), None) is not None:
                    sock.setsockopt(socket.SOL_SOCKET, SO_DETACH_FILTER, 0)
            except OSError as e:
                if e.errno in (errno.EBADF, errno.ENOTSOCK):
                    continue  # closed under us; it will not come back
                self._give_up(e)
                return

    def _give_up(self, error: OSError) -> None:
        self._broken = True
        self.dropped.clear()
        _log.warn("cannot attach socket filters ({error}); banned sources are"
                  " refused in user space only", event=events.EV_BAN,
                  action="kernel_drop_unavailable", error=str(error))

    def maintain(self) -> None:
        """Release sources whose ban ended; cover sockets opened since."""
        lifted = {h for h in self.dropped if not self._is_banned(h)}
        self.dropped -= lifted
        now = self._clock.seconds()
        self._counts = {h: c for h, c in self._counts.items()
                        if 0 <= now - c[0] < self.window}
        if self.dropped or lifted or len(self._filtered):
            self.apply()

    def start(self, interval: float = 5.0) -> None:
        """Maintain every ``interval`` seconds."""
        if self._maintenance is None:
            self._maintenance = LoopingCall(self.maintain)
            self._maintenance.clock = self._clock
            self._maintenance.start(interval, now=False)

    def stop(self) -> None:
        """Stop maintaining (filters stay on the sockets until they close)."""
        if self._maintenance is not None and self._maintenance.running:
            self._maintenance.stop()
        self._maintenance = None
