"""
Tests of ``superd.handlers.tls.certwatch``: one watch over the certificate
files of every running TLS service -- a change is acted on once it settles,
the files are looked at every ``FALLBACK`` seconds regardless, and nothing
is left scheduled or open once no service is watched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import attrs
import pytest
from twisted.internet.testing import MemoryReactorClock

from superd.handlers.tls.certwatch import (
    FALLBACK,
    MAX_SETTLE,
    SETTLE,
    CertificateFiles,
    file_state,
    links_to,
)


@attrs.define(eq=False)
class Member:
    """A TLS service's files, counting the looks."""

    paths: Sequence[str]
    checks: int = 0

    def watched_paths(self) -> Sequence[str]:
        return self.paths

    def check(self) -> None:
        self.checks += 1


@attrs.define
class FakeWatch:
    """What ChangeWatch.start returned: the paths and the on_change callback."""

    paths: Sequence[str]
    on_change: Callable[[], object]
    stopped: bool = False
    asked: int = 0

    def changed(self) -> bool:
        self.asked += 1
        return True

    def stop(self) -> None:
        self.stopped = True


@attrs.define
class Setup:
    reactor: MemoryReactorClock
    files: CertificateFiles
    watches: list[FakeWatch]


@pytest.fixture
def setup() -> Setup:
    reactor, watches = MemoryReactorClock(), []

    def start(reactor: Any, paths: Sequence[str], clock: Any,
              on_change: Callable[[], object]) -> Optional[FakeWatch]:
        watches.append(FakeWatch(paths, on_change))
        return watches[-1]

    return Setup(reactor, CertificateFiles(reactor, start), watches)


def test_added_files_are_looked_at_and_watched(setup: Setup) -> None:
    """Adding looks at once and watches the union of every member's paths."""
    a, b = Member(["/a/cert.pem"]), Member(["/b/cert.pem", "/a/cert.pem"])
    setup.files.add(a)
    setup.files.add(b)
    assert (a.checks, b.checks) == (1, 1)
    assert setup.watches[-1].paths == ("/a/cert.pem", "/b/cert.pem")
    assert setup.watches[0].stopped and not setup.watches[-1].stopped


def test_a_change_is_read_once_it_settles(setup: Setup) -> None:
    """Events in a burst give one look, SETTLE after the last one."""
    member = Member(["/a/cert.pem"])
    setup.files.add(member)
    watch = setup.watches[-1]
    watch.on_change()
    setup.reactor.advance(SETTLE / 2)
    watch.on_change()
    setup.reactor.advance(SETTLE * 0.9)
    assert member.checks == 1
    setup.reactor.advance(SETTLE * 0.2)
    assert (member.checks, watch.asked) == (2, 1)


def test_a_stream_of_changes_is_read_within_max_settle(setup: Setup) -> None:
    """A writer that never stops still gets its files read MAX_SETTLE after it began."""
    member = Member(["/a/cert.pem"])
    setup.files.add(member)
    step = SETTLE / 2
    checks = []
    while setup.reactor.seconds() < MAX_SETTLE + SETTLE:
        setup.watches[-1].on_change()
        setup.reactor.advance(step)
        checks.append((setup.reactor.seconds(), member.checks))
    # Reset until MAX_SETTLE has passed, then left to fire.
    assert next(t for t, n in checks if n == 2) <= MAX_SETTLE + SETTLE
    assert all(n == 1 for t, n in checks if t < MAX_SETTLE)


def test_files_are_looked_at_every_fallback(setup: Setup) -> None:
    """Whatever inotify says (or cannot see), the files are looked at every FALLBACK s."""
    member = Member(["/a/cert.pem"])
    setup.files.add(member)
    setup.reactor.advance(FALLBACK)
    setup.reactor.advance(FALLBACK)
    assert member.checks == 3


def test_nothing_is_left_once_every_member_left(setup: Setup) -> None:
    """Removing the last member stops the watch, the fallback and a pending look."""
    member = Member(["/a/cert.pem"])
    setup.files.add(member)
    setup.watches[-1].on_change()
    setup.files.remove(member)
    assert setup.watches[-1].stopped and setup.reactor.getDelayedCalls() == []
    setup.reactor.advance(FALLBACK * 3)
    assert member.checks == 1


def test_without_inotify_the_fallback_still_looks(tmp_path: Path) -> None:
    """Where no watch can be made, the files are still looked at every FALLBACK s."""
    reactor = MemoryReactorClock()
    files = CertificateFiles(reactor, lambda *args: None)
    member = Member([str(tmp_path / "cert.pem")])
    files.add(member)
    reactor.advance(FALLBACK)
    assert member.checks == 2
    files.remove(member)


def test_real_inotify_event_leads_to_a_look(tmp_path: Path) -> None:
    """With the real ChangeWatch, a renamed file is heard through the reactor."""
    pytest.importorskip("twisted.internet.inotify")
    reactor = MemoryReactorClock()
    files = CertificateFiles(reactor)
    member = Member([str(tmp_path / "cert.pem")])
    files.add(member)
    (tmp_path / "cert.new").write_text("renewed")
    (tmp_path / "cert.new").rename(tmp_path / "cert.pem")
    for reader in reactor.getReaders():
        reader.doRead()
    reactor.advance(SETTLE)
    assert member.checks == 2
    files.remove(member)
    assert reactor.getReaders() == []


def test_file_state_and_links(tmp_path: Path) -> None:
    """A replaced file has another state; a missing one says so; links are found."""
    target = tmp_path / "real"
    target.mkdir()
    (tmp_path / "live").symlink_to(target)
    path = tmp_path / "live" / "cert.pem"
    path.write_text("one")
    before = file_state([str(path)])
    (target / "new").write_text("two")
    (target / "new").rename(path)
    assert file_state([str(path)]) != before
    assert file_state([str(tmp_path / "missing")]) == (("error", 2),)
    assert links_to(str(path)) == [str(path), str(tmp_path / "live")]
