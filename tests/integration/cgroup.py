"""A cgroup v2 subtree of its own for a test daemon (``--cgroup PATH``)."""

from __future__ import annotations

import os
import uuid

import pytest

from superd.proc.cgroups import cgroup2_mount
from tests.integration.harness import REQUIRE_ALL


def writable_cgroup2() -> str:
    """The cgroup2 mount point, or skip (fail under SUPERD_REQUIRE_ALL=1)
    where there is none this test may write to."""
    with open("/proc/self/mountinfo") as f:
        mount = cgroup2_mount(f.read())
    if mount is None or os.geteuid() != 0 or not os.access(mount, os.W_OK):
        message = "a writable cgroup2 file system (and root) is needed"
        if REQUIRE_ALL:
            pytest.fail(f"{message} (SUPERD_REQUIRE_ALL=1)")
        pytest.skip(message)
    return mount


def fresh_root() -> str:
    """A path for a daemon's subtree that does not exist yet."""
    return os.path.join(writable_cgroup2(), f"superd-test-{uuid.uuid4().hex[:12]}")


def remove_tree(root: str) -> None:
    """Remove what a test daemon left of its subtree (empty cgroups only)."""
    if not os.path.isdir(root):
        return
    for sub in os.listdir(root):
        if os.path.isdir(os.path.join(root, sub)):
            os.rmdir(os.path.join(root, sub))
    os.rmdir(root)
