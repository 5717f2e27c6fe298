"""
Servers confined without systemd (issue 17 item 6), read back from the
kernel: ``/proc/CHILD/status`` for ``no_new_privileges`` and the user,
``/proc/CHILD/mountinfo`` for the private ``/tmp`` and the read-only paths;
and the configuration errors for what this host cannot provide
(``memory_max``/``tasks_max`` without a usable cgroup controller).
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.cgroup import remove_tree, writable_cgroup2
from tests.integration.external import needs_root, script, service_block
from tests.integration.harness import Superd, require_program, run_twistd

pytestmark = needs_root


def mounts(pid: int) -> dict[str, tuple[str, str, str]]:
    """Mount point -> (mount id, file system type, per-mount options)."""
    found = {}
    with open(f"/proc/{pid}/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            found[fields[4]] = (fields[0], right.split()[0], fields[5])
    return found


def status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def started_pid(superd: Superd, service_id: str) -> int:
    event = superd.wait_for_event(
        lambda e: e.get("event") == "start" and e.get("service_id") == service_id)
    return int(event["pid"])


@pytest.fixture
def outside_tmp() -> Iterator[Path]:
    """A directory everyone can enter, not under /tmp (which private_tmp hides)."""
    path = Path(tempfile.mkdtemp(prefix="superd-sandbox-", dir="/var/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_confined_server(superd_factory: Callable[..., Superd],
                         conf_dir: Callable[..., Path], outside_tmp: Path) -> None:
    """no_new_privileges, private_tmp and read_only_paths, as nobody: the
    child has NoNewPrivs 1 and uid 65534, /tmp is a tmpfs of its own (what
    it writes there is not in the host's /tmp), /etc and the script's
    directory are read-only for it, and they are not for superd."""
    for program in ("unshare", "mount", "setpriv"):
        require_program(program)
    token = f"superd-sandbox-{uuid.uuid4().hex}"
    server = script(outside_tmp, "confined.sh",
                    f"touch /tmp/{token} && echo wrote\n"
                    f"touch {outside_tmp}/{token} 2>/dev/null || echo read-only\n"
                    "exec sleep 30\n")
    conf = conf_dir(box=service_block("box", server, extra=(
        "no_new_privileges = yes\nprivate_tmp = yes\n"
        f"read_only_paths = /etc {outside_tmp}\n")))
    superd = superd_factory(conf)
    with socket.create_connection(("127.0.0.1", superd.port("box")), timeout=10) as conn:
        conn.settimeout(10)
        answer = b""
        while b"read-only" not in answer:
            chunk = conn.recv(256)
            assert chunk, answer
            answer += chunk
        assert answer.split() == [b"wrote", b"read-only"]
        pid = started_pid(superd, "box")
        child = status(pid)
        assert child["NoNewPrivs"] == "1"
        assert child["Uid"].split()[0] == "65534"
        theirs, ours = mounts(pid), mounts(os.getpid())
        assert theirs["/tmp"][1] == "tmpfs"
        assert theirs["/tmp"][0] != ours.get("/tmp", ("",))[0]
        assert not os.path.exists(f"/tmp/{token}")
        for path in ("/etc", str(outside_tmp)):
            assert "ro" in theirs[path][2].split(","), theirs[path]
        assert "/etc" not in ours or "ro" not in ours["/etc"][2].split(",")
        assert superd.errors() == []
    assert not os.path.exists(outside_tmp / token)


def test_no_new_privileges_alone_keeps_the_user(superd_factory: Callable[..., Superd],
                                                conf_dir: Callable[..., Path],
                                                world_dir: Path) -> None:
    """no_new_privileges without mounts: still nobody, NoNewPrivs 1, and the
    host's mounts."""
    server = script(world_dir, "nnp.sh", "echo ready\nexec sleep 30\n")
    conf = conf_dir(nnp=service_block("nnp", server, extra="no_new_privileges = yes\n"))
    superd = superd_factory(conf)
    with socket.create_connection(("127.0.0.1", superd.port("nnp")), timeout=10) as conn:
        assert conn.recv(16).startswith(b"ready")
        pid = started_pid(superd, "nnp")
        assert status(pid)["NoNewPrivs"] == "1"
        assert status(pid)["Uid"].split()[0] == "65534"
        assert os.readlink(f"/proc/{pid}/ns/mnt") == os.readlink("/proc/self/ns/mnt")


@pytest.mark.parametrize("attribute, value", [("memory_max", "64M"), ("tasks_max", "16")])
def test_cgroup_limits_without_a_cgroup_are_refused(
        conf_dir: Callable[..., Path], world_dir: Path, attribute: str, value: str) -> None:
    """With --cgroup none there is nothing to limit: exit 78 and
    FILE:LINE: service NAME: ATTRIBUTE: the reason."""
    server = script(world_dir, "limited.sh", "exit 0\n")
    conf = conf_dir(lim=service_block("lim", server, extra=f"{attribute} = {value}\n"))
    done = run_twistd(str(conf), "--cgroup", "none")
    assert done.returncode == 78, done.stderr
    line = 14  # the attribute's line in service_block's layout
    assert (f"{conf / 'lim'}:{line}: service lim: {attribute}: needs a cgroup v2 subtree"
            f" for superd, and there is none: --cgroup none") in done.stderr


def test_cgroup_limits_without_their_controller_are_refused(
        conf_dir: Callable[..., Path], world_dir: Path) -> None:
    """A cgroup subtree whose parent hands down neither memory nor pids (a
    hybrid host, controllers bound to cgroup v1): the error names the
    missing controller."""
    mount = writable_cgroup2()
    root = os.path.join(mount, f"superd-test-{uuid.uuid4().hex[:12]}")
    server = script(world_dir, "limited.sh", "exit 0\n")
    conf = conf_dir(lim=service_block("lim", server, extra="tasks_max = 16\n"))
    with open(os.path.join(mount, "cgroup.subtree_control")) as f:
        if "pids" in f.read().split():
            pytest.skip("this host hands the pids controller down: nothing to refuse")
    try:
        done = run_twistd(str(conf), "--cgroup", root, "--grace", "1", timeout=15)
    finally:
        remove_tree(root)
    assert done.returncode == 78, done.stderr
    assert f"{conf / 'lim'}:14: service lim: tasks_max: needs the cgroup v2 pids controller;" \
        in done.stderr
    assert "the pids controller is not available in" in done.stderr


def test_private_tmp_hiding_what_the_server_needs_is_refused(
        conf_dir: Callable[..., Path], world_dir: Path) -> None:
    """A server (or a read-only path) under the /tmp that private_tmp empties
    cannot work: a configuration error naming the line."""
    server = script(world_dir, "hidden.sh", "exit 0\n")
    conf = conf_dir(box=service_block("box", server, extra="private_tmp = yes\n"))
    done = run_twistd(str(conf))
    assert done.returncode == 78, done.stderr
    assert f"{conf / 'box'}:14: service box: private_tmp: the server {server} would be" \
        " hidden by private_tmp's empty /tmp" in done.stderr
