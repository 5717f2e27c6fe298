"""
conf/fail2ban against the real fail2ban: a real superd refuses 127.0.0.2
and ::1 for every reason it has (address, libwrap, time, connections per
second, service_limit, per_source_limit, process_limit, load, tls, a SENSOR
ban, IDONLY without ident, exec), and ``fail2ban-regex`` with the shipped
filter finds exactly the refusals each mode counts, per host, in

* the service log (``log_type = FILE``, xinetd's format),
* superd's own log: the JSON lines as written, as ``journalctl -o short``
  shows them, and the same events as superd's text log (``superd run``)
  and twistd's default text log render them,
* syslog (``log_type = SYSLOG`` with ``--syslog-ident xinetd``), written by a
  real rsyslogd that superd reaches through /dev/log in a private mount
  namespace; there fail2ban's stock ``xinetd-fail`` filter matches too.

The jail is loaded by ``fail2ban-client -d`` (the configuration fail2ban
would run, without starting it).
"""

from __future__ import annotations

import collections
import json
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from twisted.logger import LogLevel, formatEventAsClassicLogText

from superd.core.timestamps import parse_rfc3339
from superd.observe.logs import format_text
from tests.certs import make_pki
from tests.integration.external import SERVICE_USER, needs_root, script, wait_until
from tests.integration.harness import REQUIRE_ALL, Superd, require_program, start_command
from tests.integration.harness import twistd_command as daemon_command
from tests.integration.shipped import CONF

Factory = Callable[..., Superd]
Counts = collections.Counter[str]

HOSTS = ("127.0.0.2", "::1")
FILTER = CONF / "fail2ban" / "filter.d" / "superd.conf"
JAIL = CONF / "fail2ban" / "jail.d" / "superd.conf"
FAIL2BAN_ETC = Path("/etc/fail2ban")

#: Refusals of each host that each mode counts (service -> reason).
NORMAL = {"addr": "address", "wrap": "libwrap", "persrc": "per_source_limit",
          "tlsd": "tls", "trap": "address", "open": "address"}
AGGRESSIVE = {**NORMAL, "hours": "time", "rate": "connections per second",
              "inst": "service_limit", "procs": "process_limit", "load": "load",
              "idonly": "noid"}
#: Refused but never counted: the server's failure, not the client's.
NEVER = {"broken": "exec"}


def expected(mode: dict[str, str]) -> Counts:
    counts: Counts = collections.Counter({host: len(mode) for host in HOSTS})
    if mode is AGGRESSIVE:
        counts["127.0.0.1"] = 1  # the connection that tripped cps
    return counts


def block(service_id: str, extra: str = "", builtin: str = "echo") -> str:
    return (f"service {builtin}\n{{\n\tid = {service_id}\n\ttype = INTERNAL UNLISTED\n"
            "\tsocket_type = stream\n\twait = no\n\tport = 0\n\tbind = 127.0.0.1 ::1\n"
            f"{extra}}}\n")


def server_block(service_id: str, server: str) -> str:
    return (f"service {service_id}\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n"
            f"\twait = no\n\tport = 0\n\tbind = 127.0.0.1 ::1\n\tuser = {SERVICE_USER}\n"
            f"\tserver = {server}\n}}\n")


def scenario_files(directory: Path, world: Path, log_type: str) -> tuple[Path, list[str]]:
    """The configuration directory and the daemon's extra options."""
    conf = directory / "conf"
    conf.mkdir()
    pki = directory / "pki"
    pki.mkdir()
    server = make_pki(pki).server
    hour = (time.localtime().tm_hour + 12) % 24  # a window far from now
    files = {
        "00-defaults": f"defaults\n{{\n\tlog_type = {log_type}\n\tlog_on_failure = HOST\n}}\n",
        "addr": block("addr", "\tonly_from = 127.0.0.1\n"),
        "wrap": block("wrap", "\tlibwrap = f2bwrap\n"),
        "hours": block("hours", f"\taccess_times = {hour:02d}:00-{hour:02d}:01\n"),
        "persrc": block("persrc", "\tper_source = 1\n"),
        "inst": block("inst", "\tinstances = 1\n"),
        "rate": block("rate", "\tcps = 1 30\n"),
        "load": block("load", "\tmax_load = 0.01\n"),
        "tlsd": block("tlsd", f"\ttls_cert = {server.cert_path}\n"
                              f"\ttls_key = {server.key_path}\n"),
        "idonly": block("idonly", "\tflags = IDONLY\n\tlog_on_success = USERID\n"),
        "trap": block("trap", "\tflags = SENSOR\n\tdeny_time = 1\n"),
        "open": block("open"),
        "procs": server_block("procs", script(world, "hold", "exec sleep 30\n")),
        # Executable, but exec(2) fails: its interpreter does not exist.
        "broken": server_block("broken", _broken(world)),
    }
    for name, text in files.items():
        (conf / name).write_text(text)
    (directory / "hosts.allow").write_text("")
    (directory / "hosts.deny").write_text("f2bwrap: 127.0.0.2 [::1]\n")
    return conf, ["--hosts-allow", str(directory / "hosts.allow"),
                  "--hosts-deny", str(directory / "hosts.deny"), "--limit", "1"]


def _broken(world: Path) -> str:
    path = world / "broken"
    path.write_text("#!/nonexistent/interpreter\n")
    path.chmod(0o755)
    return str(path)


class Client:
    """Connections from the test hosts to the running daemon."""

    def __init__(self, superd: Superd) -> None:
        self.superd = superd
        self.held: list[socket.socket] = []

    def connect(self, service_id: str, source: str) -> socket.socket:
        destination = "::1" if ":" in source else "127.0.0.1"
        family = socket.AF_INET6 if ":" in source else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(10)
        sock.bind((source, 0))
        sock.connect((destination, self.superd.port(service_id, host=destination)))
        return sock

    def outcome(self, service_id: str, sock: socket.socket) -> dict[str, object]:
        """The daemon's decision on the connection ``sock``: its start,
        refuse or noid event (matched by the client's port)."""
        port = sock.getsockname()[1]
        return self.superd.wait_for_event(
            lambda e: (e.get("event") in ("start", "refuse", "noid")
                       and e.get("service_id") == service_id and e.get("peer_port") == port))

    def refused(self, service_id: str, source: str, reason: str, payload: bytes = b"") -> None:
        """Connect and see the connection refused for ``reason``."""
        with self.connect(service_id, source) as sock:
            if payload:
                sock.sendall(payload)
            event = self.outcome(service_id, sock)
        if reason == "noid":
            assert event.get("event") == "noid", event
        else:
            assert (event.get("event"), event.get("reason")) == ("refuse", reason), event

    def hold(self, service_id: str, source: str) -> None:
        """An admitted connection kept open."""
        sock = self.connect(service_id, source)
        self.held.append(sock)
        event = self.outcome(service_id, sock)
        assert event.get("event") == "start", event

    def close(self) -> None:
        for sock in self.held:
            sock.close()


def provoke(superd: Superd) -> None:
    """Every refusal of NORMAL, AGGRESSIVE and NEVER for both hosts."""
    superd.allow_errors = True  # the exec failures are logged as errors
    client = Client(superd)
    try:
        for host in HOSTS:
            client.refused("broken", host, "exec")
        assert wait_until(lambda: superd.children() == [])
        for host in HOSTS:
            for service_id in ("addr", "wrap", "hours", "load", "idonly"):
                client.refused(service_id, host, AGGRESSIVE[service_id])
            client.refused("tlsd", host, "tls", b"GET / HTTP/1.0\r\n\r\n")
            client.hold("persrc", host)
            client.refused("persrc", host, "per_source_limit")
        client.hold("inst", "127.0.0.1")
        client.hold("procs", "127.0.0.1")
        for host in HOSTS:
            client.refused("inst", host, "service_limit")
            client.refused("procs", host, "process_limit")
        trip_cps(client)
        for host in HOSTS:
            client.refused("rate", host, "connections per second")
        # Last: the sensor bans both hosts from every service.
        for host in HOSTS:
            client.refused("trap", host, "address")
            client.refused("open", host, "address")
    finally:
        client.close()


def trip_cps(client: Client) -> None:
    """Connect from 127.0.0.1 until cps deactivates ``rate`` (one FAIL)."""
    for _ in range(20):
        with client.connect("rate", "127.0.0.1") as sock:
            if client.outcome("rate", sock).get("event") == "refuse":
                return
    raise AssertionError("cps = 1 30 never deactivated the service")


# -- fail2ban ---------------------------------------------------------------

@pytest.fixture
def fail2ban_config(tmp_path: Path) -> Path:
    """A fail2ban configuration directory: the system's plus the shipped
    filter and jail (the jail reading ``services.log`` in tmp_path)."""
    require_program("fail2ban-regex")
    if not (FAIL2BAN_ETC / "filter.d" / "common.conf").exists():
        message = "fail2ban's configuration (/etc/fail2ban) is not installed"
        if REQUIRE_ALL:
            pytest.fail(message)
        pytest.skip(message)
    config = tmp_path / "fail2ban"
    shutil.copytree(FAIL2BAN_ETC, config)
    for stale in (config / "jail.d").glob("*"):
        stale.unlink()  # the distribution's own jails (sshd) are not under test
    shutil.copy(FILTER, config / "filter.d" / "superd.conf")
    (config / "jail.d" / "superd.conf").write_text(
        JAIL.read_text().replace("/var/log/superd/services.log",
                                 str(tmp_path / "services.log")))
    return config


def fail2ban_regex(config: Path, log: Path, filter_spec: str) -> tuple[Counts, int, str]:
    """(matched lines per host, matched count, fail2ban-regex's report)."""
    program = require_program("fail2ban-regex")
    base = [program, "-c", str(config), "--print-no-missed"]
    ips = subprocess.run([*base, "-o", "ip", str(log), filter_spec], capture_output=True,
                         text=True, timeout=120, check=True).stdout.split()
    report = subprocess.run([*base, str(log), filter_spec], capture_output=True,
                            text=True, timeout=120, check=True).stdout
    lines = re.search(r"^Lines: (\d+) lines, (\d+) ignored, (\d+) matched, (\d+) missed",
                      report, re.MULTILINE)
    assert lines is not None, report
    return collections.Counter(ips), int(lines[3]), report


def assert_modes(config: Path, log: Path, name: str = "superd") -> None:
    """Both modes find exactly the refusals they count, per host."""
    for mode, wanted in (("normal", NORMAL), ("aggressive", AGGRESSIVE)):
        hosts, matched, report = fail2ban_regex(config, log, f"{name}[mode={mode}]")
        assert hosts == expected(wanted), f"{mode}:\n{report}"
        assert matched == sum(expected(wanted).values()), report
        assert "no valid date" not in report.lower(), report


def date_hits(report: str, template: str) -> int:
    """How many lines the date template containing ``template`` read."""
    for line in report.splitlines():
        found = re.match(r"\|\s+\[(\d+)\] (.*)", line)
        if found and template in found[2]:
            return int(found[1])
    return 0


@needs_root  # servers run as nobody
def test_service_log_and_own_log(superd_factory: Factory, tmp_path: Path, world_dir: Path,
                                 fail2ban_config: Path) -> None:
    """The FILE service log and superd's own log, both formats, both modes."""
    log = tmp_path / "services.log"
    conf, options = scenario_files(tmp_path, world_dir, f"FILE {log}")
    superd = superd_factory(conf, *options)
    provoke(superd)
    superd.stop()
    assert_modes(fail2ban_config, log)
    # Dates read from each line, not taken as "now".
    _, matched, report = fail2ban_regex(fail2ban_config, log, "superd[mode=aggressive]")
    assert date_hits(report, "Year2/Month/Day@24hour") == len(log.read_text().splitlines())
    # The lines fail2ban must not count are there (the test provoked them).
    text = log.read_text()
    assert "FAIL: broken exec from=127.0.0.2" in text and "FAIL: broken exec from=::1" in text

    json_log = tmp_path / "journal.log"
    json_log.write_text("".join(journal_short(line, superd.pid)
                                for line in superd.stdout_lines))
    assert_modes(fail2ban_config, json_log)
    for render in (superd_text, twistd_text):
        text_log = tmp_path / f"{render.__name__}.log"
        text_log.write_text("".join(render(line) for line in superd.stdout_lines))
        assert_modes(fail2ban_config, text_log)


def journal_short(line: str, pid: int) -> str:
    """A JSON log line as ``journalctl -o short`` prints it."""
    seconds = parse_rfc3339(json.loads(line)["time"])
    stamp = time.strftime("%b %d %H:%M:%S", time.localtime(seconds))
    return f"{stamp} testhost superd[{pid}]: {line}"


def _event(line: str) -> dict[str, object]:
    """The twisted.logger event a JSON line was written from (its text as the format)."""
    record = json.loads(line)
    event = {"log_time": parse_rfc3339(record["time"]), "log_namespace": record["logger"],
             "log_level": LogLevel.levelWithName(record["level"]), "log_format": "{text}",
             "text": record["message"]}
    if record["event"] != "twisted":  # superd's own name, which the text shows
        event["event"] = record["event"]
    return event


def superd_text(line: str) -> str:
    """The line superd's text log (``superd run``) writes for the same event."""
    return format_text(_event(line)) or ""


def twistd_text(line: str) -> str:
    """The line twistd's default text log (``twistd superd``) writes for the same event."""
    return formatEventAsClassicLogText(_event(line)) or ""


def test_forged_lines_are_not_counted(fail2ban_config: Path, tmp_path: Path) -> None:
    """Text an ident server or a client controls cannot fake a refusal, and
    the count of suppressed refusals is not a refusal."""
    log = tmp_path / "forged.log"
    log.write_text(
        "26/12/7@01:12:44: USERID: svc FAIL: x address from=10.6.6.6\n"
        "26/12/7@01:12:44: USERID: svc : FAIL: x address from=10.6.6.7\n"
        "Dec  7 01:12:44 host superd[9]: USERID: svc FAIL: x address from=10.6.6.8\n"
        '2026-12-07T01:12:44+0000 [superd#info] USERID svc FAIL x address from=10.6.6.9\n'
        'Dec 07 01:12:44 host superd[9]: {"event": "userid", "user_text": '
        '"\\"event\\": \\"refuse\\", \\"reason\\": \\"address\\", '
        '\\"peer_host\\": \\"10.6.6.10\\""}\n'
        "2026-12-07T01:12:44+0000 [superd#info] FAIL echo address from=::1: "
        "7 more refusals in 10.0s not logged\n"
        "26/12/7@01:12:45: FAIL: echo address from=10.6.6.11\n")
    hosts, matched, report = fail2ban_regex(fail2ban_config, log, "superd[mode=aggressive]")
    assert (hosts, matched) == (collections.Counter({"10.6.6.11": 1}), 1), report


def test_jail_loads(fail2ban_config: Path, tmp_path: Path) -> None:
    """``fail2ban-client -d`` reads the jail with the filter and its log."""
    (tmp_path / "services.log").write_text("")
    client = require_program("fail2ban-client")
    dump = subprocess.run([client, "-c", str(fail2ban_config), "-d"], capture_output=True,
                          text=True, timeout=120, check=False)
    assert dump.returncode == 0, dump.stderr
    commands = [json.loads(line.replace("'", '"')) for line in dump.stdout.splitlines()
                if line.startswith("['add', 'superd'")]
    assert commands == [["add", "superd", "auto"]]
    assert f"'addlogpath', '{tmp_path / 'services.log'}'" in dump.stdout
    assert "connections per second" not in dump.stdout  # mode=normal
    assert "|per_source_limit|tls) from=<HOST>" in dump.stdout


# -- syslog through a real rsyslogd -----------------------------------------

RSYSLOG_CONF = """\
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="{socket}" CreatePath="off")
$ActionFileDefaultTemplate RSYSLOG_TraditionalFileFormat
daemon.* {log}
"""


@pytest.fixture
def rsyslogd(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A real rsyslogd listening on a socket in tmp_path, writing daemon.*
    to a file: (socket, log file)."""
    program = require_program("rsyslogd")
    work = tmp_path / "rsyslog"
    work.mkdir()
    sock, log = work / "log.sock", work / "daemon.log"
    config = work / "rsyslog.conf"
    config.write_text(RSYSLOG_CONF.format(socket=sock, log=log))
    process = subprocess.Popen([program, "-n", "-f", str(config), "-i", str(work / "pid")],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        assert wait_until(sock.exists, timeout=10), "rsyslogd did not create its socket"
        yield sock, log
    finally:
        process.terminate()
        process.wait(10)


def in_private_dev_log(sock: Path, command: Sequence[str]) -> list[str]:
    """``command`` in a mount namespace whose /dev/log leads to ``sock``
    (an overlay on /dev, so nothing changes outside the namespace)."""
    upper = sock.parent / "dev-upper"
    workdir = sock.parent / "dev-work"
    upper.mkdir()
    workdir.mkdir()
    prelude = (f'mount -t overlay overlay -o lowerdir=/dev,upperdir={upper},workdir={workdir} '
               f'/dev && ln -sfn {sock} /dev/log && exec "$@"')
    return [require_program("unshare"), "--mount", "--propagation", "private",
            "sh", "-c", prelude, "sh", *command]


def namespaces_work(tmp_path: Path) -> bool:
    trial = tmp_path / "trial"
    trial.mkdir()
    probe = subprocess.run(in_private_dev_log(trial / "x", ["test", "-L", "/dev/log"]),
                           capture_output=True, timeout=30, check=False)
    return probe.returncode == 0


@needs_root  # mount namespaces; servers run as nobody
def test_syslog_with_xinetd_ident(tmp_path: Path, world_dir: Path, fail2ban_config: Path,
                                  rsyslogd: tuple[Path, Path]) -> None:
    """log_type = SYSLOG with --syslog-ident xinetd, through rsyslogd: the
    shipped filter counts as on the service log, and fail2ban's stock
    xinetd-fail filter finds every address and libwrap refusal."""
    if not namespaces_work(tmp_path):
        message = "cannot make a private mount namespace here"
        if REQUIRE_ALL:
            pytest.fail(message)
        pytest.skip(message)
    sock, log = rsyslogd
    dev_log_before = os.path.lexists("/dev/log")
    conf, options = scenario_files(tmp_path, world_dir, "SYSLOG daemon")
    state = tmp_path / "state"
    command = in_private_dev_log(sock, daemon_command(
        str(conf), *options, "--syslog-ident", "xinetd", state_dir=str(state)))
    superd = start_command(command, str(state))
    try:
        provoke(superd)
        total = sum(expected(AGGRESSIVE).values()) + len(NEVER) * len(HOSTS)
        assert wait_until(lambda: log.exists() and
                          log.read_text().count(" xinetd[") >= total, timeout=10)
    finally:
        assert superd.stop() == 0
    text = log.read_text()
    assert f" xinetd[{superd.pid}]: FAIL: addr address from=::1\n" in text
    assert_modes(fail2ban_config, log)
    stock, matched, report = fail2ban_regex(fail2ban_config, log, "xinetd-fail")
    address_or_libwrap = sum(1 for reason in NORMAL.values() if reason in ("address", "libwrap"))
    assert stock == collections.Counter({host: address_or_libwrap for host in HOSTS}), report
    assert os.path.lexists("/dev/log") == dev_log_before  # the namespace's own
