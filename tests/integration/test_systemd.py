"""
The systemd units of conf/systemd: ``systemd-analyze verify`` accepts them
without a warning (with the install path pointing at this virtualenv, so
that the ExecStart= program exists), and the root unit's ExecStart= starts
the real daemon, whose main process sends READY=1 and STOPPING=1 as
Type=notify with NotifyAccess=main expects.
"""

from __future__ import annotations

import array
import os
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.harness import REQUIRE_ALL, require_program
from tests.integration.shipped import CONF, ECHO, INSTALL_ROOT, installed_here

UNITS = sorted(p.name for p in (CONF / "systemd").iterdir())
SERVICES = [name for name in UNITS if name.endswith(".service")]


def unit_setting(text: str, key: str) -> list[str]:
    """Every value of ``key=`` in a unit file (continuation lines joined)."""
    joined = text.replace("\\\n", " ")
    return [line.split("=", 1)[1].strip() for line in joined.splitlines()
            if line.startswith(f"{key}=")]


def test_units_are_listed() -> None:
    """The units this module checks (a new one is verified too)."""
    assert UNITS == ["superd-activated.service", "superd-unprivileged.service",
                     "superd.service", "superd.socket"]


@pytest.mark.parametrize("name", SERVICES)
def test_service_units_use_the_one_install_path(name: str) -> None:
    """ExecStart= is ``superd run`` from the virtualenv on /etc/superd;
    no ExecStartPre check; no restart on 78 or 64; the man pages."""
    text = (CONF / "systemd" / name).read_text()
    [start] = unit_setting(text, "ExecStart")
    assert shlex.split(start)[:4] == [f"{INSTALL_ROOT}/bin/superd", "run", "-c", "/etc/superd"]
    assert unit_setting(text, "ExecStartPre") == []
    assert unit_setting(text, "RestartPreventExitStatus") == ["78 64"]
    assert unit_setting(text, "Documentation") == ["man:superd(8) man:superd.conf(5)"]
    assert unit_setting(text, "Delegate") == ([] if "unprivileged" in name else ["yes"])


def man_environment() -> dict[str, str]:
    """The environment of a user with superd's virtualenv on PATH and no
    MANPATH: man then finds the pages under the virtualenv's share/man."""
    env = {key: value for key, value in os.environ.items() if key != "MANPATH"}
    env["PATH"] = os.pathsep.join((os.path.join(sys.prefix, "bin"), env.get("PATH", "")))
    return env


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    """Every unit verifies without a single message, Documentation= included:
    man:superd(8) and man:superd.conf(5) resolve to the installed pages."""
    analyze = require_program("systemd-analyze")
    for name in UNITS:
        text = (CONF / "systemd" / name).read_text()
        (tmp_path / name).write_text(installed_here(text) if name in SERVICES else text)
    env = man_environment()
    man = shutil.which("man", path=env["PATH"]) is not None and subprocess.run(
        ["man", "-w", "superd"], env=env, capture_output=True, check=False,
        timeout=30).returncode == 0
    if not man and REQUIRE_ALL:
        pytest.fail("man -w superd finds no page: install man-db, then make venv")
    result = subprocess.run(
        [analyze, "verify", f"--man={'yes' if man else 'no'}", *UNITS], env=env,
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_verify_checks_the_man_pages(tmp_path: Path) -> None:
    """The check above can fail on Documentation=: a page that does not exist
    is reported."""
    analyze = require_program("systemd-analyze")
    require_program("man")
    text = (CONF / "systemd" / "superd.service").read_text()
    (tmp_path / "superd.service").write_text(installed_here(text).replace(
        "man:superd.conf(5)", "man:superd-nowhere(5)"))
    result = subprocess.run([analyze, "verify", "--man=yes", "superd.service"],
                            env=man_environment(), cwd=tmp_path, capture_output=True,
                            text=True, timeout=120, check=False)
    assert "superd-nowhere" in result.stdout + result.stderr


def test_verify_finds_a_missing_program(tmp_path: Path) -> None:
    """The check above can fail: as shipped, without /opt/superd, it does."""
    analyze = require_program("systemd-analyze")
    (tmp_path / "superd.service").write_text(
        (CONF / "systemd" / "superd.service").read_text().replace(
            INSTALL_ROOT, str(tmp_path / "nowhere")))
    result = subprocess.run([analyze, "verify", "--man=no", "superd.service"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode != 0 and "nowhere/bin/superd" in result.stderr


def receive_state(listener: socket.socket) -> tuple[str, int]:
    """One notification and the pid of its sender (SCM_CREDENTIALS)."""
    size = socket.CMSG_SPACE(struct.calcsize("3i"))
    data, ancillary, _, _ = listener.recvmsg(4096, size)
    pid = -1
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = array.array("i", payload[:struct.calcsize("3i")])[0]
    return data.decode(), pid


def test_exec_start_notifies_from_the_main_process(tmp_path: Path) -> None:
    """superd.service's ExecStart=, with this venv, a test configuration and
    state directory: READY=1 then, on SIGTERM, STOPPING=1 and exit 0 -- each
    sent by the process systemd started (NotifyAccess=main)."""
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "echo").write_text(ECHO)
    [start] = unit_setting(installed_here((CONF / "systemd" / "superd.service").read_text()),
                           "ExecStart")
    argv = shlex.split(start)
    argv[argv.index("-c") + 1] = str(conf)
    argv[argv.index("--state-dir") + 1] = str(tmp_path / "state")
    notify = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(notify)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        listener.settimeout(30)
        work = tmp_path / "cwd"
        work.mkdir()
        process = subprocess.Popen(argv, env={"NOTIFY_SOCKET": notify, "PATH": "/usr/bin:/bin"},
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, cwd=work)
        try:
            state, sender = receive_state(listener)
            assert state.startswith("READY=1") and sender == process.pid, state
            process.send_signal(signal.SIGTERM)
            state, sender = receive_state(listener)
            assert state.startswith("STOPPING=1") and sender == process.pid, state
            output, _ = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(10)
    assert process.returncode == 0, output
    assert list(work.iterdir()) == []  # no twistd.pid
    assert "service echo listening on tcp 127.0.0.1:" in output  # the journal's text
