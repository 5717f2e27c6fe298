"""
superd's cgroup v2 subtree: one cgroup per service holding its children and
every process they start, whatever their parentage, session or process
group -- so that stopping a service reaches all of them, and ``memory_max``
and ``tasks_max`` bound them together.

Where the subtree is (``detect``):

* ``--cgroup none``: nowhere; children are tracked by process group.
* ``--cgroup PATH``: PATH, a directory of a cgroup2 file system (created if
  missing, its parent must exist).  superd stays where it was started,
  unless PATH is its own cgroup.
* ``--cgroup auto`` (the default): superd's own cgroup when it has been
  delegated to it (systemd's ``Delegate=yes`` marks it with the
  ``trusted.delegate`` extended attribute); anything else belongs to
  someone else, and superd tracks by process group.

A cgroup that holds processes cannot hand controllers (``memory``,
``pids``) to its children, so when the subtree is superd's own cgroup superd
first moves itself into ``ROOT/superd``.  Each service's cgroup is
``ROOT/service-NAME``.

Getting a child in before it can fork.  ``posix_spawn`` cannot start a
child in another cgroup (that needs ``clone3(CLONE_INTO_CGROUP)``, which
``os.posix_spawn`` does not expose), and moving a process costs a full
RCU grace period inside the kernel (milliseconds for a write to
``cgroup.procs`` when writes are occasional, far less when they follow each
other closely; ``bench/spawncost.py`` measures it), so there are two ways in:

* by default the child is moved *after* ``posix_spawn``, by a worker thread
  (``CgroupMover``), never blocking the reactor; whatever the child started
  meanwhile is moved after it (``/proc/PID/task/PID/children``,
  recursively).  A server that forks in its first milliseconds and exits at
  once leaves its orphans outside the cgroup: they are still in its process
  group, which is tracked as well, so the one way out is to fork, leave the
  process group (``setsid``) and have the parent exit, all within those
  milliseconds;
* a service with ``memory_max`` or ``tasks_max`` must not have a single
  process outside its limits: its child moves *itself* before it executes
  the server (``join_prefix``: one more ``exec`` of ``/bin/sh``, and the
  grace period is spent in the child, not in superd).
"""

from __future__ import annotations

import errno
import hashlib
import os
import queue
import re
import signal
import threading
from typing import Callable, Dict, FrozenSet, List, Optional, Sequence, Tuple

import attrs

__all__ = [
    "CgroupError",
    "CgroupMover",
    "CgroupTree",
    "Detection",
    "Limits",
    "cgroup2_mount",
    "detect",
    "join_prefix",
    "own_cgroup",
]

#: Controllers superd uses for ``memory_max`` and ``tasks_max``.
CONTROLLERS = ("memory", "pids")
#: Depth of descendants moved after a spawn (children of children ...).
_SWEEP_DEPTH = 8
_NAME = re.compile(r"[^A-Za-z0-9_.@-]")
_DELEGATE_XATTRS = ("trusted.delegate", "user.delegate")


class CgroupError(Exception):
    """The cgroup subtree cannot be used (a bad ``--cgroup PATH``, say)."""


@attrs.frozen
class Limits:
    """What a service's cgroup is limited to (None: no limit, ``max``)."""

    #: ``memory_max``: bytes of memory for all its processes together.
    memory_max: Optional[int] = None
    #: ``tasks_max``: processes and threads of the service together.
    tasks_max: Optional[int] = None

    @property
    def controllers(self) -> FrozenSet[str]:
        """The cgroup controllers these limits need."""
        wanted = set()
        if self.memory_max is not None:
            wanted.add("memory")
        if self.tasks_max is not None:
            wanted.add("pids")
        return frozenset(wanted)

    def files(self, available: FrozenSet[str]) -> Dict[str, str]:
        """Interface file -> value, for the controllers ``available``."""
        values: Dict[str, str] = {}
        if "memory" in available:
            values["memory.max"] = _limit_text(self.memory_max)
        if "pids" in available:
            values["pids.max"] = _limit_text(self.tasks_max)
        return values


def _limit_text(value: Optional[int]) -> str:
    return "max" if value is None else str(value)


def cgroup2_mount(mountinfo: str) -> Optional[str]:
    """The first cgroup2 mount point in ``/proc/self/mountinfo`` text."""
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if sep and right.split()[:1] == ["cgroup2"] and len(fields) >= 5:
            return _unescape(fields[4])
    return None


def _unescape(path: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), path)


def own_cgroup(proc_cgroup: str) -> Optional[str]:
    """The cgroup v2 path (``/system.slice/superd.service``) in
    ``/proc/self/cgroup`` text, or None on a v1-only system."""
    for line in proc_cgroup.splitlines():
        if line.startswith("0::"):
            return line[3:].strip() or None
    return None


@attrs.frozen
class Detection:
    """Where superd's cgroup subtree is, or why there is none."""

    #: The directory superd manages (None: track by process group).
    root: Optional[str]
    #: What was found, for the log.
    reason: str
    #: The root is superd's own cgroup: superd moves into ``ROOT/superd``.
    move_self: bool = False


def _read(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def _delegated(path: str, getxattr: Callable[[str, str], bytes]) -> bool:
    for name in _DELEGATE_XATTRS:
        try:
            if getxattr(path, name).strip() == b"1":
                return True
        except OSError:
            continue
    return False


def detect(option: str, *, read: Callable[[str], str] = _read,
           getxattr: Callable[[str, str], bytes] = os.getxattr) -> Detection:
    """Where the subtree is for ``--cgroup option`` (``auto``, ``none``, a path)."""
    if option == "none":
        return Detection(None, "--cgroup none")
    try:
        mount = cgroup2_mount(read("/proc/self/mountinfo"))
        own = own_cgroup(read("/proc/self/cgroup"))
    except OSError as e:
        mount, own = None, None
        if option != "auto":
            raise CgroupError(f"cannot read /proc: {e.strerror or e}") from e
    if mount is None:
        if option != "auto":
            raise CgroupError("no cgroup2 file system is mounted")
        return Detection(None, "no cgroup2 file system is mounted")
    here = os.path.normpath(mount + (own or "/"))
    if option != "auto":
        path = os.path.normpath(option)
        if not os.path.isabs(option) or not path.startswith(mount.rstrip("/") + "/"):
            raise CgroupError(f"{option} is not a directory under the cgroup2 mount {mount}")
        return Detection(path, "--cgroup", move_self=path == here)
    if own is None:
        return Detection(None, "superd's own cgroup v2 path is unknown")
    if not _delegated(here, getxattr):
        return Detection(None, f"{here} is not delegated to superd (systemd: Delegate=yes;"
                               " or give --cgroup PATH)")
    return Detection(here, "delegated", move_self=True)


class CgroupTree:
    """superd's subtree: its service cgroups, their limits and their processes."""

    def __init__(self, root: str, *, own_pid: int, move_self: bool = False,
                 proc: str = "/proc",
                 kill: Callable[[int, int], None] = os.kill) -> None:
        self.root = root
        self._own_pid = own_pid
        self._move_self = move_self
        self._proc = proc
        self._kill = kill
        self._created_root = False
        #: Controllers handed to the service cgroups.
        self.controllers: FrozenSet[str] = frozenset()
        #: Why a controller superd uses is missing (for configuration errors).
        self.missing: str = ""
        #: service id -> the limits last written to its cgroup.
        self._services: Dict[str, Limits] = {}

    # -- setting up --------------------------------------------------------

    def open(self) -> "CgroupTree":
        """Create the root (and superd's own leaf if it moves), hand the
        controllers down; raises ``CgroupError``."""
        try:
            if not os.path.isdir(self.root):
                os.mkdir(self.root, 0o755)
                self._created_root = True
            if self._move_self:
                leaf = os.path.join(self.root, "superd")
                os.makedirs(leaf, 0o755, exist_ok=True)
                _write(os.path.join(leaf, "cgroup.procs"), str(self._own_pid))
            available = set(_read(os.path.join(self.root, "cgroup.controllers")).split())
        except OSError as e:
            raise CgroupError(f"{self.root}: {e.strerror or e}") from e
        enabled = set()
        problems = []
        for name in CONTROLLERS:
            if name not in available:
                problems.append(f"the {name} controller is not available in {self.root}"
                                f" (cgroup.controllers: {' '.join(sorted(available)) or 'none'})")
                continue
            try:
                _write(os.path.join(self.root, "cgroup.subtree_control"), f"+{name}")
                enabled.add(name)
            except OSError as e:
                problems.append(f"cannot enable the {name} controller in {self.root}:"
                                f" {e.strerror or e}")
        self.controllers = frozenset(enabled)
        self.missing = "; ".join(problems)
        return self

    def close(self) -> None:
        """Remove the empty service cgroups, and the root if superd made it."""
        for service_id in list(self._services):
            self.remove(service_id)
        if self._created_root:
            try:
                os.rmdir(self.root)
            except OSError:
                return  # something is still in it; leave it for the operator
            self._created_root = False

    def limits_problem(self, limits: Limits) -> Optional[str]:
        """Why ``limits`` cannot be enforced here, or None."""
        lacking = limits.controllers - self.controllers
        if not lacking:
            return None
        return (f"needs the cgroup v2 {' and '.join(sorted(lacking))} controller;"
                f" {self.missing}")

    # -- one service's cgroup ------------------------------------------------

    def directory(self, service_id: str) -> str:
        """The cgroup directory of ``service_id``."""
        name = _NAME.sub("_", service_id)
        if name != service_id or not name:
            # Two ids differing only in replaced characters must not share.
            name = f"{name}-{_short_hash(service_id)}"
        return os.path.join(self.root, f"service-{name}")

    def services(self) -> List[str]:
        """The services whose cgroup superd has made."""
        return list(self._services)

    def prepare(self, service_id: str, limits: Limits) -> str:
        """Create the service's cgroup with ``limits`` (if they changed) and
        return its ``cgroup.procs``; raises ``OSError``.  A reload writes the
        new limits when it builds the service, before it is committed."""
        path = self.directory(service_id)
        known = self._services.get(service_id)
        if known != limits:
            if known is None:
                os.makedirs(path, 0o755, exist_ok=True)
            for name, value in limits.files(self.controllers).items():
                _write(os.path.join(path, name), value)
            self._services[service_id] = limits
        return os.path.join(path, "cgroup.procs")

    def move(self, procs: str, pid: int) -> None:
        """Move ``pid`` and whatever it has started already into the cgroup
        of ``procs`` (blocks for the kernel's grace period: not in the
        reactor thread); raises ``OSError``."""
        try:
            _write(procs, str(pid))
        except ProcessLookupError:
            return  # it exited already: what it left is in its process group
        self._sweep(procs, [pid])

    def _sweep(self, procs: str, parents: Sequence[int]) -> None:
        for _ in range(_SWEEP_DEPTH):
            found = [child for parent in parents for child in self._children(parent)]
            if not found:
                return
            for child in found:
                try:
                    _write(procs, str(child))
                except ProcessLookupError:
                    continue
            parents = found

    def _children(self, pid: int) -> List[int]:
        try:
            text = _read(f"{self._proc}/{pid}/task/{pid}/children")
        except OSError:
            return []
        return [int(word) for word in text.split()]

    def pids(self, service_id: str) -> List[int]:
        """Every process in the service's cgroup now."""
        try:
            text = _read(os.path.join(self.directory(service_id), "cgroup.procs"))
        except OSError:
            return []
        return [int(word) for word in text.split()]

    def populated(self, service_id: str) -> bool:
        """True while a process of the service is alive in its cgroup."""
        try:
            text = _read(os.path.join(self.directory(service_id), "cgroup.events"))
        except OSError:
            return False
        return "populated 1" in text

    def signal(self, service_id: str, signum: int) -> None:
        """Send ``signum`` to every process of the service; SIGKILL through
        ``cgroup.kill`` where the kernel has it (no fork can race it)."""
        if signum == signal.SIGKILL:
            try:
                _write(os.path.join(self.directory(service_id), "cgroup.kill"), "1")
                return
            except FileNotFoundError:
                pass  # before Linux 5.14: one by one, as for other signals
            except OSError:
                return
        for pid in self.pids(service_id):
            try:
                self._kill(pid, signum)
            except (ProcessLookupError, PermissionError):
                continue

    def remove(self, service_id: str) -> None:
        """Remove the service's cgroup if nothing is left in it."""
        try:
            os.rmdir(self.directory(service_id))
        except FileNotFoundError:
            pass
        except OSError as e:
            if e.errno == errno.EBUSY:
                return  # still populated: kept, and known
        self._services.pop(service_id, None)


def join_prefix(procs: str, shell: str = "/bin/sh") -> Tuple[str, ...]:
    """The argv prefix with which a child moves itself into the cgroup of
    ``procs`` before executing the rest of its argv (it must still be root)."""
    return (shell, "-c", 'echo 0 >"$0" && exec "$@"', procs)


class CgroupMover:
    """Moves children into their cgroup from a worker thread (see the module)."""

    def __init__(self, tree: CgroupTree,
                 failed: Callable[[int, OSError], None]) -> None:
        self._tree = tree
        self._failed = failed
        self._queue: "queue.SimpleQueue[Optional[Tuple[str, int]]]" = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="superd-cgroup", daemon=True)
        self._thread.start()

    def move(self, procs: str, pid: int) -> None:
        """Queue ``pid`` for its cgroup (returns at once)."""
        self._queue.put((procs, pid))

    def stop(self) -> None:
        """Let the thread finish what is queued and end."""
        self._queue.put(None)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            procs, pid = item
            try:
                self._tree.move(procs, pid)
            except OSError as e:
                self._failed(pid, e)


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:8]


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
