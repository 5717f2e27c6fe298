"""Tests for ``superd.access.changewatch``: inotify instead of a stat per check."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor

from superd.access import changewatch
from superd.access.changewatch import MAX_TRUST, ChangeWatch
from superd.access.hostsaccess import HostsAccess

pytest.importorskip("twisted.internet.inotify")  # Linux only


class Watched:
    """hosts.allow and hosts.deny in a directory, watched with a fake clock."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(exist_ok=True)
        self.allow = directory / "hosts.allow"
        self.deny = directory / "hosts.deny"
        self.clock = Clock()
        self.clock.advance(1000)
        watch = ChangeWatch.start(MemoryReactor(), [str(self.allow), str(self.deny)],
                                  self.clock.seconds)
        assert watch is not None
        self.watch = watch

    def settled(self) -> bool:
        """The first answer is always "changed"; then nothing has."""
        return self.watch.changed() and not self.watch.changed()


@pytest.fixture
def watched(tmp_path: Path) -> Any:
    result = Watched(tmp_path / "etc")
    yield result
    result.watch.stop()


def test_quiet_files_need_no_look(watched: Watched) -> None:
    """Asked again and again with nothing written: no."""
    assert watched.settled()
    assert [watched.watch.changed() for _ in range(5)] == [False] * 5


def test_a_write_is_seen_by_the_very_next_question(watched: Watched) -> None:
    """The event is queued by the write itself: no reactor turn in between."""
    watched.deny.write_text("ALL: 10.0.0.1\n")
    assert watched.settled()
    with watched.deny.open("a") as f:
        f.write("sshd: 10.0.0.2\n")
    assert watched.watch.changed() and not watched.watch.changed()


def test_replacing_by_rename_and_deleting_are_seen(watched: Watched) -> None:
    """Editors write a new file and rename it over the old one."""
    watched.allow.write_text("ALL: 127.0.0.1\n")
    assert watched.settled()
    new = watched.allow.with_name("hosts.allow.new")
    new.write_text("ALL: 127.0.0.2\n")
    assert watched.watch.changed()  # the new file's creation, in the same directory
    os.replace(new, watched.allow)
    assert watched.watch.changed() and not watched.watch.changed()
    watched.allow.unlink()
    assert watched.watch.changed()


def test_time_is_a_safety_net(watched: Watched) -> None:
    """A change inotify cannot see (another host on NFS) shows within MAX_TRUST."""
    assert watched.settled()
    watched.clock.advance(MAX_TRUST / 2)
    assert not watched.watch.changed()
    watched.clock.advance(MAX_TRUST / 2)
    assert watched.watch.changed() and not watched.watch.changed()


def test_symlinked_file_is_watched_where_it_lives(tmp_path: Path) -> None:
    """hosts.deny linked from a directory managed elsewhere: an in-place edit
    of the target is seen, and so is a deleted target directory (Twisted's
    INotify gives up then; the watch is rebuilt and works again once the
    directory is back)."""
    managed = tmp_path / "managed"
    managed.mkdir()
    (managed / "deny").write_text("ALL: 10.0.0.1\n")
    watched = Watched(tmp_path / "etc")
    watched.deny.symlink_to(managed / "deny")
    watched.clock.advance(MAX_TRUST)  # the new link's target gets watched on the next look
    assert watched.settled() and not watched.watch.changed()
    with (managed / "deny").open("a") as f:
        f.write("ALL: 10.0.0.2\n")
    assert watched.watch.changed() and not watched.watch.changed()
    shutil.rmtree(managed)
    # A dangling link's directory cannot be watched: look every time ...
    assert [watched.watch.changed() for _ in range(3)] == [True] * 3
    managed.mkdir()
    (managed / "deny").write_text("ALL: 10.0.0.3\n")
    # ... until it is back and watched again (tried once a MAX_TRUST), by a
    # rebuilt watch.
    watched.clock.advance(MAX_TRUST)
    assert watched.watch.changed() and not watched.watch.changed()
    with (managed / "deny").open("a") as f:
        f.write("ALL: 10.0.0.4\n")
    assert watched.watch.changed() and not watched.watch.changed()
    watched.watch.stop()


def test_an_unwatchable_directory_means_always_look(tmp_path: Path) -> None:
    """A file in a directory that does not exist cannot be watched: every
    question is answered "changed", as without inotify."""
    watched = Watched(tmp_path / "etc")
    watch = ChangeWatch.start(MemoryReactor(), [str(tmp_path / "nowhere" / "hosts.allow")],
                              watched.clock.seconds)
    assert watch is not None
    assert [watch.changed() for _ in range(3)] == [True] * 3
    watch.stop()
    watched.watch.stop()


def test_without_inotify_start_says_so(monkeypatch: pytest.MonkeyPatch,
                                       tmp_path: Path) -> None:
    """No inotify (not Linux, or the instance limit reached): None, logged."""
    def unavailable() -> Any:
        raise ImportError("inotify is not available on this system")

    monkeypatch.setattr(changewatch, "_inotify", unavailable)
    assert ChangeWatch.start(MemoryReactor(), [str(tmp_path / "a")], Clock().seconds) is None


def test_stop_closes_the_descriptor(tmp_path: Path) -> None:
    watched = Watched(tmp_path / "etc")
    notify = watched.watch._notify
    fd = notify.fileno()
    watched.watch.stop()
    assert not notify.connected
    with pytest.raises(OSError):
        os.fstat(fd)


def test_hosts_access_reads_the_files_only_when_told(watched: Watched) -> None:
    """HostsAccess with a watch: no stat of either file while nothing
    changes, and a deny line written is applied to the next check."""
    access = HostsAccess(str(watched.allow), str(watched.deny), None, watched.watch)
    looks: list[str] = []
    for table in (access.allow, access.deny):
        real = table.current

        def current(real: Any = real, path: str = table.path) -> Any:
            looks.append(path)
            return real()

        table.current = current  # type: ignore[method-assign]
    assert access.decide("sshd", "10.0.0.1")
    assert access.decide("sshd", "10.0.0.1") and len(looks) == 2
    watched.deny.write_text("sshd: 10.0.0.1\n")
    assert not access.decide("sshd", "10.0.0.1")
    assert len(looks) == 4
    assert not access.decide("sshd", "10.0.0.1") and len(looks) == 4
