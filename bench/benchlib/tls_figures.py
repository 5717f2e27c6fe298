"""
The figures of issue 6: TLS echo (superd's ``tls_cert`` on its builtin echo
vs ``stunnel4`` in front of a plain C echo, same run, same certificate) and
``redirect`` (superd vs xinetd, both relaying to the same C upstream).

Handshakes come from four concurrent ``openssl s_time -new`` clients, each
a full handshake per connection; throughput from ``tlsclient.py`` echoing
64 KiB blocks over one connection.  The certificate is RSA 2048, made with
``openssl req`` in the run's temporary directory, so the server side of a
handshake (the RSA signature) dominates and the clients keep up.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
import time
from typing import Callable, Sequence

from . import daemons, procs
from .context import Bench, add_cpu_rows, errors_note, values
from .load import Sample, Series, paired_ratio, parse_result
from .report import Row, Target

__all__ = [
    "STUNNEL_PORT",
    "SUPERD_TLS_PORT",
    "fig_redirect",
    "fig_tls",
    "make_certificate",
    "parse_s_time",
    "stunnel_config",
    "superd_tls_config",
]

STUNNEL_PORT = 26010
SUPERD_TLS_PORT = 26011
S_TIME_CLIENTS = 4
_S_TIME = re.compile(r"(\d+) connections in [\d.]+ real seconds")


def make_certificate(directory: str) -> tuple[str, str]:
    """A self-signed RSA 2048 certificate and key for 127.0.0.1 (cert, key paths)."""
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    argv = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
    argv += ["-subj", "/CN=127.0.0.1", "-keyout", key, "-out", cert]
    subprocess.run(argv, check=True, capture_output=True, timeout=60)
    return cert, key


def stunnel_config(port: int, upstream: int, cert: str, key: str) -> str:
    """stunnel4 in the foreground, no pid file, TLS on ``port`` to plain ``upstream``."""
    return (
        "foreground = yes\npid =\n\n[echo]\n"
        f"accept = 127.0.0.1:{port}\nconnect = 127.0.0.1:{upstream}\n"
        f"cert = {cert}\nkey = {key}\n"
    )


def superd_tls_config(port: int, cert: str, key: str) -> str:
    """superd's builtin echo with TLS on ``port``."""
    return (
        "service echo\n{\n\tid = echo-tls\n\ttype = INTERNAL UNLISTED\n"
        "\tsocket_type = stream\n\twait = no\n"
        f"\tport = {port}\n\tbind = 127.0.0.1\n\tcps = 0 0\n"
        f"\ttls_cert = {cert}\n\ttls_key = {key}\n}}\n"
    )


def parse_s_time(text: str) -> int:
    """Connections one ``openssl s_time -new`` run completed (0 if it made none)."""
    found = _S_TIME.findall(text)
    return int(found[-1]) if found else 0


def _cpu(pids: Sequence[int]) -> float:
    return sum(procs.cpu_seconds(pid) for pid in pids)


def _handshakes(b: Bench, port: int, pids: Sequence[int]) -> Sample:
    """Four concurrent ``s_time -new`` clients for the run's duration (whole seconds)."""
    secs = max(1, round(b.loadgen.duration))
    argv = [*procs.pin_prefix(b.loadgen.cpu), "openssl", "s_time", "-new"]
    argv += ["-connect", f"127.0.0.1:{port}", "-time", str(secs)]
    before, t0 = _cpu(pids), time.monotonic()
    clients = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for _ in range(S_TIME_CLIENTS)
    ]
    outs = [c.communicate(timeout=secs + 60)[0] for c in clients]
    wall, cpu = time.monotonic() - t0, _cpu(pids) - before
    done = sum(parse_s_time(out) for out in outs)
    failed = sum(1 for out in outs if not parse_s_time(out))
    return Sample(conns=done, errors=failed, nbytes=0, secs=wall, total=done, cpu=cpu)


def _throughput(b: Bench, port: int, pids: Sequence[int]) -> Sample:
    client = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tlsclient.py")
    argv = [*procs.pin_prefix(b.loadgen.cpu), sys.executable, client, str(port)]
    argv += [str(b.loadgen.duration), str(b.loadgen.warmup)]
    before = _cpu(pids)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"tlsclient failed: {done.stderr.strip()[-300:]}")
    sample = parse_result(done.stdout.strip().splitlines()[-1])
    return dataclasses.replace(sample, cpu=_cpu(pids) - before)


class _TLSServers:
    """superd with TLS echo, stunnel4 and the C echo behind it; stopped by PID."""

    def __init__(self, b: Bench) -> None:
        self.started: list[procs.Server] = []
        self.stunnel: procs.Server | None = None
        self.superd: procs.Server | None = None
        try:
            self._start(b)
        except BaseException:
            self.stop()  # what did start is stopped by PID before the error goes up
            raise

    def _start(self, b: Bench) -> None:
        work = os.path.join(b.paths.tmp, "tls")
        os.makedirs(work, exist_ok=True)
        cert, key = make_certificate(work)
        stunnel = shutil.which("stunnel4") or shutil.which("stunnel")
        echo_port = daemons.UPSTREAM_PORTS["echo"]
        self.echo = self._add(daemons.start_upstream(b.paths, "echo", echo_port, b.server_cpu))
        if stunnel:
            conf = os.path.join(work, "stunnel.conf")
            with open(conf, "w") as f:
                f.write(stunnel_config(STUNNEL_PORT, echo_port, cert, key))
            argv = [*procs.pin_prefix(b.server_cpu), stunnel, conf]
            self.stunnel = self._add(
                procs.start("stunnel4", argv, os.path.join(work, "stunnel.log"))
            )
            procs.wait_listening(self.stunnel, [STUNNEL_PORT])
        if b.superd is not None:
            conf_text = superd_tls_config(SUPERD_TLS_PORT, cert, key)
            self.superd = self._add(
                daemons.start_superd_on(
                    b.paths, "superd-tls", conf_text, [SUPERD_TLS_PORT], b.server_cpu
                )
            )

    def _add(self, server: procs.Server) -> procs.Server:
        self.started.append(server)
        return server

    def runs(
        self, b: Bench, measure: Callable[[Bench, int, Sequence[int]], Sample]
    ) -> dict[str, Callable[[], Sample] | None]:
        sd, st = self.superd, self.stunnel
        return {
            "superd": None if sd is None else lambda: measure(b, SUPERD_TLS_PORT, [sd.pid]),
            "stunnel4": None
            if st is None
            else lambda: measure(b, STUNNEL_PORT, [st.pid, self.echo.pid]),
        }

    def stop(self) -> None:
        for server in reversed(self.started):
            server.stop()


def fig_tls(b: Bench) -> None:
    """Issue 6: TLS echo MB/s over one connection and handshakes/s, superd vs stunnel4."""
    servers = _TLSServers(b)
    try:
        tput = b.interleave(servers.runs(b, _throughput))
        hs = b.interleave(servers.runs(b, _handshakes))
    finally:
        servers.stop()
    _tls_rows(b, tput, hs, servers.stunnel is None)


def _vs_stunnel(s: dict[str, Series], key: Callable[[Sample], float]) -> str:
    r = paired_ratio(s["superd"], s["stunnel4"], key)
    return "" if r is None else f"superd/stunnel4 {r:.2f}x"


def _tls_rows(b: Bench, tput: dict[str, Series], hs: dict[str, Series], no_stunnel: bool) -> None:
    note = _vs_stunnel(tput, lambda x: x.mbps)
    b.report.rows.append(
        Row(
            "TLS echo over one connection (64 KiB blocks)",
            "MB/s",
            values(tput, lambda x: x.mbps),
            "; ".join(n for n in (note, errors_note(tput)) if n),
        )
    )
    note = _vs_stunnel(hs, lambda x: x.rate)
    b.report.rows.append(
        Row(
            f"TLS handshakes ({S_TIME_CLIENTS} x s_time -new, RSA 2048)",
            "hs/s",
            values(hs, lambda x: x.rate),
            "; ".join(n for n in (note, errors_note(hs)) if n),
        )
    )
    add_cpu_rows(b, "TLS handshake (stunnel4: + its C echo)", hs)
    why = b.na_reason() or ("stunnel4 not installed" if no_stunnel else "")
    b.report.targets.append(
        Target(
            6,
            "TLS handshakes/s: superd / stunnel4",
            paired_ratio(hs["superd"], hs["stunnel4"]),
            0.8,
            why_na=why,
        )
    )


def _upstreams(b: Bench) -> None:
    """The C line and stream servers behind the redirect services (started once)."""
    have = {s.name for s in b.helpers}
    for mode in ("line", "stream"):
        if f"upstream-{mode}" not in have:
            port = daemons.UPSTREAM_PORTS[mode]
            b.helpers.append(daemons.start_upstream(b.paths, mode, port, b.server_cpu))


def fig_redirect(b: Bench) -> None:
    """Issue 6: redirect conn/s (16 conc, upstream writes a line) and MB/s (one connection)."""
    _upstreams(b)
    conns = b.interleave({n: b.runner(n, "read", 10, conc=16) for n in ("superd", "xinetd")})
    b.report.rows.append(
        Row(
            "redirect conn/s (16 conc, upstream writes 6 B)",
            "conn/s",
            values(conns, lambda x: x.rate),
            errors_note(conns),
        )
    )
    add_cpu_rows(b, "redirect (xinetd: + its relay children)", conns)
    stream = b.interleave({n: b.runner(n, "stream", 11) for n in ("superd", "xinetd")})
    b.report.rows.append(
        Row(
            "redirect over one connection (upstream streams)",
            "MB/s",
            values(stream, lambda x: x.mbps),
            errors_note(stream),
        )
    )
    b.report.targets.append(
        Target(
            6,
            "redirect conn/s: superd / xinetd",
            paired_ratio(conns["superd"], conns["xinetd"]),
            1.5,
            why_na=b.na_reason(),
        )
    )
