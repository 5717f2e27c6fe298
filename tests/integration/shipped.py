"""
The files shipped under ``conf/`` (examples, units, integrations), read and
adapted for tests: ports become 0 on loopback, production paths become
temporary ones.  What is not rewritten is tested as shipped.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

__all__ = [
    "CONF",
    "ECHO",
    "EXAMPLES",
    "INSTALL_ROOT",
    "echo",
    "example_names",
    "installed_here",
    "listening_port",
    "replace_all",
    "rewrite_service",
    "shipped",
    "stop",
]

#: The repository's conf/ directory.
CONF = Path(__file__).resolve().parents[2] / "conf"
#: Ready-made service files.
EXAMPLES = CONF / "examples"
#: Where the shipped files expect superd's virtualenv.
INSTALL_ROOT = "/opt/superd"


def shipped(relative: str) -> str:
    """The text of ``conf/RELATIVE``."""
    return (CONF / relative).read_text()


def example_names() -> list[str]:
    """Every service file in conf/examples (names without a dot, as superd reads)."""
    return sorted(p.name for p in EXAMPLES.iterdir() if p.is_file() and "." not in p.name)


def replace_all(text: str, replacements: Mapping[str, str]) -> str:
    """``text`` with each key replaced by its value; every key must occur."""
    for old, new in replacements.items():
        if old not in text:
            raise AssertionError(f"{old!r} is no longer in the shipped text")
        text = text.replace(old, new)
    return text


def rewrite_service(text: str, replacements: Mapping[str, str] | None = None,
                    **attributes: str) -> str:
    """
    A one-block service file with ``replacements`` made and each attribute
    in ``attributes`` set to its value (lines setting it removed, one added
    at the end of the block).
    """
    text = replace_all(text, replacements or {})
    names = "|".join(map(re.escape, attributes))
    setting = re.compile(rf"^\s*(?:{names})\s*[-+]?=") if attributes else None
    lines = [line for line in text.splitlines()
             if setting is None or not setting.match(line)]
    closing = max(i for i, line in enumerate(lines) if line.strip() == "}")
    lines[closing:closing] = [f"\t{name} = {value}" for name, value in attributes.items()]
    return "\n".join(lines) + "\n"


#: Overrides that make a shipped service listen on an ephemeral loopback port.
LOOPBACK = {"type": "UNLISTED", "port": "0", "bind": "127.0.0.1"}


def installed_here(text: str) -> str:
    """``text`` with the install path replaced by this environment's
    (the test's virtualenv, where ``bin/superd`` and ``bin/twistd`` are)."""
    prefix = sys.prefix
    for script in ("superd", "twistd"):
        if not os.access(os.path.join(prefix, "bin", script), os.X_OK):
            pytest.fail(f"{prefix}/bin/{script} is missing: run the tests from superd's venv")
    return replace_all(text, {INSTALL_ROOT: prefix})


# -- a daemon started by a supervisor's files, logging readable text --------

#: A configuration with one echo service on an ephemeral loopback port.
ECHO = ("service echo\n{\n\ttype = INTERNAL UNLISTED\n\tsocket_type = stream\n"
        "\twait = no\n\tport = 0\n\tbind = 127.0.0.1\n}\n")


def listening_port(text_log: str) -> int | None:
    """The port of ``ECHO`` in the latest start's text log, if it is listening."""
    found = re.findall(r"service echo listening on tcp 127\.0\.0\.1:(\d+)", text_log)
    return int(found[-1]) if found else None


def echo(port: int, data: bytes) -> bytes:
    """What the echo service on ``port`` sends back for ``data``."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(data)
        client.shutdown(socket.SHUT_WR)
        return client.recv(len(data) + 100)


def stop(process: subprocess.Popen[str] | subprocess.Popen[bytes]) -> None:
    """SIGTERM to a supervisor we started (it stops superd first), by pid."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
    process.wait(60)
