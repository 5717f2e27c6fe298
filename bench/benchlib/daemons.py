"""
The servers a benchmark compares: superd, xinetd, the spawn floors (the C
accept-and-posix_spawn loop and the same loop in Python) and the echo peers
(plain ``twistd inetd`` and the C epoll echo loop).

Each is started on its own port range (pinned to the server CPU under
``--pin``; children inherit the affinity), with its files in the run's
temporary directory, and returned as a ``procs.Server`` that the caller
stops by PID.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from typing import Sequence

from . import confgen, procs

__all__ = [
    "ECHOLOOP_PORT",
    "PYLOOP_PORT",
    "TWISTD_INETD_PORT",
    "SPAWNLOOP_PORT",
    "UPSTREAM_PORTS",
    "Paths",
    "inetd_conf",
    "start_echoloop",
    "start_pyloop",
    "start_spawnloop",
    "start_superd",
    "start_superd_on",
    "start_twistd_inetd",
    "start_upstream",
    "start_xinetd",
    "superd_argv",
    "xinetd_argv",
]

SPAWNLOOP_PORT = 26005
PYLOOP_PORT = 26009
ECHOLOOP_PORT = 26012
# Twisted's inetd binds the /etc/services port of "echo" on every interface;
# it runs in a network namespace of its own, where that is loopback only.
TWISTD_INETD_PORT = 7
# bench/upstream.c per mode: behind the redirect services and stunnel4.
UPSTREAM_PORTS = {**confgen.REDIRECT_UPSTREAMS, "echo": 26008}
XINETD = "/usr/sbin/xinetd"


@dataclass(frozen=True)
class Paths:
    """Where things are: the repository, its venv, the build and temp dirs."""

    repo: str
    build: str
    tmp: str

    @property
    def venv_bin(self) -> str:
        return os.path.join(self.repo, ".venv", "bin")

    @property
    def twistd(self) -> str:
        venv = os.path.join(self.venv_bin, "twistd")
        return venv if os.path.exists(venv) else shutil.which("twistd") or "twistd"

    @property
    def python(self) -> str:
        venv = os.path.join(self.venv_bin, "python")
        return venv if os.path.exists(venv) else "python3"


def _ports(services: list[confgen.Service], base: int) -> list[int]:
    return [svc.port(base) for svc in services if not svc.udp]


def _udp_ports(services: list[confgen.Service], base: int) -> list[int]:
    return [svc.port(base) for svc in services if svc.udp]


def start_xinetd(paths: Paths, services: list[confgen.Service], cpu: int | None) -> procs.Server:
    """xinetd in the foreground on its own configuration file (never /etc)."""
    work = os.path.join(paths.tmp, "xinetd")
    os.makedirs(work, exist_ok=True)
    conf = os.path.join(work, "xinetd.conf")
    with open(conf, "w") as f:
        f.write(confgen.render(services, confgen.XINETD_BASE, log_dir=work))
    argv = xinetd_argv(conf, work, cpu)
    server = procs.start("xinetd", argv, os.path.join(work, "stdout.log"))
    base = confgen.XINETD_BASE
    return _listening(server, _ports(services, base), udp=_udp_ports(services, base))


def xinetd_argv(conf: str, work: str, cpu: int | None) -> list[str]:
    """xinetd in the foreground on ``conf``, logging to WORK/xinetd.log."""
    argv = [*procs.pin_prefix(cpu), XINETD, "-dontfork", "-stayalive"]
    argv += ["-filelog", os.path.join(work, "xinetd.log"), "-f", conf]
    return [*argv, "-pidfile", os.path.join(work, "xinetd.pid")]


def superd_argv(paths: Paths, conf_dir: str, state_dir: str, cpu: int | None) -> list[str]:
    return [
        *procs.pin_prefix(cpu),
        paths.twistd,
        "-n",
        "--pidfile=",
        "superd",
        "-c",
        conf_dir,
        "--state-dir",
        state_dir,
    ]


def start_superd(
    paths: Paths, services: list[confgen.Service], cpu: int | None, extra: Sequence[str] = ()
) -> procs.Server:
    """``twistd -n superd`` on a directory holding the generated configuration;
    ``extra``: more superd arguments."""
    work = os.path.join(paths.tmp, "superd")
    conf_dir = os.path.join(work, "conf")
    state_dir = os.path.join(work, "state")
    os.makedirs(conf_dir, exist_ok=True)
    os.makedirs(state_dir, exist_ok=True)
    # No dot in the name: a directory is read like includedir, which skips those.
    with open(os.path.join(conf_dir, "bench"), "w") as f:
        f.write(confgen.render(services, confgen.SUPERD_BASE, log_dir=work))
    argv = [*superd_argv(paths, conf_dir, state_dir, cpu), *extra]
    server = procs.start("superd", argv, os.path.join(work, "superd.log"), cwd=work)
    base = confgen.SUPERD_BASE
    return _listening(server, _ports(services, base), udp=_udp_ports(services, base))


def start_spawnloop(paths: Paths, cpu: int | None, program: str = "/bin/cat") -> procs.Server:
    """The C accept-and-posix_spawn loop on 127.0.0.1:SPAWNLOOP_PORT."""
    argv = [
        *procs.pin_prefix(cpu),
        os.path.join(paths.build, "spawnloop"),
        str(SPAWNLOOP_PORT),
        program,
    ]
    server = procs.start("spawnloop", argv, os.path.join(paths.tmp, "spawnloop.log"))
    return _listening(server, [SPAWNLOOP_PORT])


def start_pyloop(paths: Paths, cpu: int | None, program: str = "/bin/cat") -> procs.Server:
    """bench/pyspawnloop.py, on the interpreter superd runs on, on 127.0.0.1:PYLOOP_PORT."""
    script = os.path.join(paths.repo, "bench", "pyspawnloop.py")
    argv = [*procs.pin_prefix(cpu), paths.python, script, str(PYLOOP_PORT), program]
    server = procs.start("pyloop", argv, os.path.join(paths.tmp, "pyloop.log"))
    return _listening(server, [PYLOOP_PORT])


def start_echoloop(paths: Paths, cpu: int | None) -> procs.Server:
    """bench/echoloop.c, the C epoll echo floor, on 127.0.0.1:ECHOLOOP_PORT."""
    argv = [*procs.pin_prefix(cpu), os.path.join(paths.build, "echoloop"), str(ECHOLOOP_PORT)]
    server = procs.start("echoloop", argv, os.path.join(paths.tmp, "echoloop.log"))
    return _listening(server, [ECHOLOOP_PORT])


def inetd_conf() -> str:
    """Twisted inetd's configuration for its own echo (inetd.conf syntax)."""
    return "echo stream tcp nowait root internal\n"


def start_twistd_inetd(paths: Paths, cpu: int | None) -> procs.Server:
    """Plain ``twistd -n inetd -f FILE`` serving Twisted's echo, on the venv's twistd.

    It listens on port 7 of every interface; ``unshare --net`` gives it a
    network namespace whose only interface is its own loopback, so nothing
    outside the machine (nor the host's port 7) is touched.  Load reaches it
    through ``nsenter`` (``procs.Server.netns``).
    """
    work = os.path.join(paths.tmp, "twistd-inetd")
    os.makedirs(work, exist_ok=True)
    conf = os.path.join(work, "inetd.conf")
    with open(conf, "w") as f:
        f.write(inetd_conf())
    twistd = [paths.twistd, "-n", "--pidfile=", "inetd", "-f", conf]
    # unshare and sh exec in place: the PID started is twistd's.
    netns = ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$0" "$@"']
    argv = [*procs.pin_prefix(cpu), *netns, *twistd]
    server = procs.start("twistd-inetd", argv, os.path.join(work, "twistd.log"), cwd=work)
    server.netns = f"/proc/{server.pid}/ns/net"
    return _listening(server, [TWISTD_INETD_PORT])


def ports_in_use(ports: list[int]) -> list[int]:
    """The given ports that something already listens on."""
    return sorted(set(ports) & procs.listening_ports())


def version_of(argv: list[str]) -> str:
    """First line a ``--version``-style command prints (stdout or stderr)."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except OSError as e:
        return f"unavailable ({e.strerror})"
    text = (done.stdout + done.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def start_superd_on(
    paths: Paths,
    name: str,
    conf_text: str,
    ports: list[int],
    cpu: int | None,
    extra: Sequence[str] = (),
) -> procs.Server:
    """One more superd on its own configuration text, logging JSON lines.

    Used by the figures that need a differently started daemon (TLS, a
    fleet sharing Redis, metrics on or off); its log file holds one JSON
    event per line, read back with ``procs.json_events``.
    """
    work = os.path.join(paths.tmp, name)
    conf_dir, state_dir = os.path.join(work, "conf"), os.path.join(work, "state")
    os.makedirs(conf_dir, exist_ok=True)
    os.makedirs(state_dir, exist_ok=True)
    with open(os.path.join(conf_dir, "bench"), "w") as f:
        f.write(conf_text)
    argv = superd_argv(paths, conf_dir, state_dir, cpu)
    at = argv.index(paths.twistd) + 1  # twistd's own option, before nice's/taskset's
    argv[at:at] = ["--logger", "superd.logs.json_stdout"]
    server = procs.start(name, [*argv, *extra], os.path.join(work, "superd.log"), cwd=work)
    return _listening(server, ports)


def start_upstream(paths: Paths, mode: str, port: int, cpu: int | None) -> procs.Server:
    """bench/upstream.c in ``line``, ``echo`` or ``stream`` mode on 127.0.0.1:port."""
    argv = [*procs.pin_prefix(cpu), os.path.join(paths.build, "upstream"), mode, str(port)]
    server = procs.start(f"upstream-{mode}", argv, os.path.join(paths.tmp, f"upstream-{mode}.log"))
    return _listening(server, [port])


def _listening(
    server: procs.Server, ports: Sequence[int], udp: Sequence[int] = ()
) -> procs.Server:
    """``server`` once it listens on ``ports`` (and ``udp``); stopped by PID if it never does."""
    try:
        procs.wait_listening(server, ports, udp=udp)
    except RuntimeError:
        server.stop()
        raise
    return server
