"""
What a daemon serving builtins and sensors -- no TLS, no USERID, no UNIX
socket, no ban stored yet -- leaves unloaded: OpenSSL, SQLite, the ident
client, the TLS services' parts, the UNIX socket code, reload planning,
the spawn helpers' code, Python's IDNA codec, and any thread.  Each of them
is imported (or started) by the first service, ban or request that needs it.

The daemon is built and its sockets bound in a fresh interpreter, as twistd
does it: this one imported everything long ago.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

#: Modules a plain configuration must not load.
OPTIONAL = (
    "OpenSSL",
    "cryptography",
    "sqlite3",
    "encodings.idna",
    "superd.access.banstore",
    "superd.access.ident",
    "superd.handlers.tls.certwatch",
    "superd.net.shared",
    "superd.net.unixsocket",
    "superd.net.unixport",
    "superd.daemon.plan",
    "superd.config.check",
    "superd.proc.spawnhelper",
    "superd.proc.helpermain",
)

def block(name: str, socket_type: str, bind: str, extra: str = "") -> str:
    """A builtin's service block on port 0 of ``bind``."""
    wait = "yes" if socket_type == "dgram" else "no"
    return (f"service {name}\n{{\n\ttype = INTERNAL UNLISTED\n\tsocket_type = {socket_type}\n"
            f"\twait = {wait}\n\tport = 0\n\tbind = {bind}\n{extra}}}\n")


#: Builtins on IPv4 and IPv6, and a sensor: five sockets.
PLAIN = (block("echo", "stream", "127.0.0.1 ::1") + block("daytime", "dgram", "127.0.0.1 ::1")
         + block("trap", "stream", "127.0.0.1", "\tflags = SENSOR\n\tdeny_time = 1\n"))


def started_daemon(conf: Path, state: Path) -> dict[str, object]:
    """Build and start (bind) the daemon for ``conf`` in a new interpreter;
    which of ``OPTIONAL`` it loaded, its thread count, and its sockets."""
    code = textwrap.dedent(f"""
        import json, os, sys, threading
        from superd.core import lazytls
        lazytls.hold()
        from twisted.internet import epollreactor
        epollreactor.install()
        from superd.daemon.tap import Options, makeService
        options = Options()
        options.parseOptions(["-c", {str(conf)!r}, "--state-dir", {str(state)!r}])
        top = makeService(options)
        top.privilegedStartService()
        top.startService()
        loaded = sorted(name for name in {OPTIONAL!r}
                        if name in sys.modules or any(
                            m.startswith(name + ".") for m in sys.modules))
        print(json.dumps({{"loaded": loaded, "threads": threading.active_count(),
                           "sockets": top.socket_count()}}), flush=True)
        top.stopService()
        os._exit(0)  # a thread left running must not hold the answer up
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_a_plain_configuration_loads_no_optional_part(tmp_path: Path) -> None:
    """Builtins on IPv4 and IPv6 and a sensor, listening: none of the
    optional modules is loaded, and no thread runs besides the main one."""
    conf = tmp_path / "superd.conf"
    conf.write_text(PLAIN)
    result = started_daemon(conf, tmp_path / "state")
    assert result == {"loaded": [], "threads": 1, "sockets": 5}
    assert not (tmp_path / "state" / "bans.sqlite3").exists()
