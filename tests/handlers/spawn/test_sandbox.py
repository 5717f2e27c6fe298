"""
Unit tests of ``superd.handlers.spawn.sandbox`` through ``build_spec``: the
exact chain of programs before the server for each sandbox setting, the
credentials left to the spawning thread only when nothing needs root, and
the host problems that are configuration errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import pytest

from superd.config.model import Credentials, Sandbox
from superd.handlers.spawn.spec import SpawnSetupError, build_spec
from superd.proc.cgroups import Limits
from tests.fakes import fake_processes
from tests.handlers.spawn.helpers import external_service

NOBODY = Credentials(user="nobody", uid=65534, gid=65534)


def spec_for(sandbox: Sandbox, credentials: Credentials = NOBODY, **kw: Any) -> Any:
    table, _ = fake_processes(None, **kw)
    service = external_service(sandbox=sandbox, credentials=credentials)
    return build_spec(service, table)


def test_no_sandbox_is_the_plain_server() -> None:
    spec = spec_for(Sandbox())
    assert spec.argv == ("sshd", "-i") and spec.credentials is not None


def test_no_new_privileges_keeps_the_thread_switch() -> None:
    """NNP alone: one setpriv exec; the credentials still switched by the thread."""
    spec = spec_for(Sandbox(no_new_privileges=True))
    assert spec.argv == ("/usr/bin/setpriv", "--no-new-privs", "--", "/usr/sbin/sshd", "-i")
    assert spec.executable == "/usr/bin/setpriv" and spec.wrapped == "/usr/sbin/sshd"
    assert spec.credentials is not None and spec.limits is None


def test_mounts_run_as_root_then_setpriv_drops() -> None:
    """private_tmp and read_only_paths: unshare, one root shell for the
    mounts (paths as parameters), then setpriv with the user and NNP."""
    spec = spec_for(Sandbox(no_new_privileges=True, private_tmp=True,
                            read_only_paths=("/etc", "/usr")))
    unshare, script = spec.argv[:5], spec.argv[5:10]
    assert unshare == ("/usr/bin/unshare", "--mount", "--propagation", "private", "--")
    assert script[0] == "/usr/bin/sh" and script[1] == "-c"
    assert script[2] == (
        "/usr/bin/mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp && "
        '/usr/bin/mount -o bind,ro -- "${1}" "${1}" && '
        '/usr/bin/mount -o bind,ro -- "${2}" "${2}" && shift 2 && exec "$@"')
    assert spec.argv[9:13] == ("/etc", "/usr", "/usr/bin/setpriv", "--reuid=65534")
    assert spec.argv[-4:] == ("--no-new-privs", "--", "/usr/sbin/sshd", "-i")
    assert spec.credentials is None  # setpriv takes them, after the mounts


def test_not_root_cannot_mount() -> None:
    from superd.proc.credentials import Identity
    with pytest.raises(SpawnSetupError) as caught:
        spec_for(Sandbox(private_tmp=True), Credentials(), identity=Identity(1000, 1000))
    assert (caught.value.attribute, caught.value.message) == (
        "private_tmp", "needs superd to run as root")


def test_missing_path_and_program() -> None:
    with pytest.raises(SpawnSetupError) as caught:
        spec_for(Sandbox(read_only_paths=("/nonexistent/superd",)))
    assert caught.value.attribute == "read_only_paths"
    assert caught.value.message == "/nonexistent/superd does not exist"


def test_limits_without_cgroups_are_refused() -> None:
    with pytest.raises(SpawnSetupError) as caught:
        spec_for(Sandbox(tasks_max=8))
    assert caught.value.attribute == "tasks_max"
    assert "needs a cgroup v2 subtree" in caught.value.message


class CgroupsStub:
    """A tracker with a cgroup per service (what the spec asks of it)."""

    def __init__(self, problem: Optional[str] = None) -> None:
        self.problem = problem

    def limits_problem(self, limits: Limits) -> Optional[str]:
        return self.problem

    def procs(self, service_id: str, limits: Limits) -> str:
        return f"/cg/service-{service_id}/cgroup.procs"


def test_limits_join_the_cgroup_in_the_child(monkeypatch: pytest.MonkeyPatch) -> None:
    table, _ = fake_processes(None)
    monkeypatch.setattr(table, "tracker", CgroupsStub())
    spec = build_spec(external_service(sandbox=Sandbox(memory_max=1 << 20),
                                       credentials=NOBODY), table)
    assert spec.argv[:4] == ("/usr/bin/sh", "-c", 'echo 0 >"${1}" && shift 1 && exec "$@"',
                             "superd-sandbox")
    assert spec.argv[4] == "/cg/service-ssh/cgroup.procs"
    assert spec.argv[5] == "/usr/bin/setpriv" and spec.credentials is None
    assert spec.limits == Limits(memory_max=1 << 20)
    monkeypatch.setattr(table, "tracker", CgroupsStub("the memory controller is missing"))
    with pytest.raises(SpawnSetupError, match="the memory controller is missing"):
        build_spec(external_service(sandbox=Sandbox(memory_max=1 << 20)), table)


def test_problems_reach_the_configuration_report(tmp_path: Path) -> None:
    """The assembly turns a SpawnSetupError into FILE:LINE: service: attribute."""
    from superd.config.model import Configuration, Location
    from superd.daemon.assembly import Assembly
    from tests.handlers.spawn.helpers import fake_parts

    parts, _ = fake_parts()
    service = external_service(sandbox=Sandbox(tasks_max=4),
                               lines={"tasks_max": Location("conf/ssh", 9)})
    _, failures = Assembly(parts, Configuration(services=(service,))).build([service])
    assert [(failed is service, str(p)) for failed, p in failures] == [(True,
        "conf/ssh:9: service ssh: tasks_max: needs a cgroup v2 subtree for superd, and"
        " there is none")]
