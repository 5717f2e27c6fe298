"""
A mutation fuzzer over real-looking configuration trees: the Debian-like
corpus (``corpus/``), superd's sample ``conf/`` and the seed article.

Whatever the damage, loading with ``isolate=True`` ends (no hang: every
example has a deadline), raises nothing, and its outcome is a set of running
services and per-service errors in which

* every running service's block, read again from the text independently of
  the parser, has no line that was dropped: from its header to whatever
  starts next, there is ``{``, attribute lines that the service holds (or
  keeps as unknown) and ``}``, and nothing else;
* when anything runs, no line of any ``defaults`` section was dropped;
* every ``service`` header of every file read is running, failed or
  disabled, or its file is listed as failed as a whole;
* every failed service says why, and every message and both renderings of
  ``superd check`` can be written as UTF-8.

The number of examples is ``SUPERD_FUZZ_EXAMPLES`` (500 by default, so the
suite stays quick; the issue's 10,000 run is
``SUPERD_FUZZ_EXAMPLES=10000 pytest tests/config/test_fuzz.py``).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from superd.config.attributes import ATTRIBUTES
from superd.config.check import render_json, render_table
from superd.config.environment import decode
from superd.config.load import load_configuration
from superd.config.model import Configuration, ServiceConfig
from tests.config.fakes import SERVICES, fake_environment

HERE = Path(__file__).parent
REPO = HERE.parent.parent

_FUZZ = settings(
    max_examples=int(os.environ.get("SUPERD_FUZZ_EXAMPLES", "500")),
    deadline=5000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _tree(root: Path, under: str, names: Optional[List[str]] = None) -> Dict[str, bytes]:
    paths = [root / n for n in names] if names else sorted(root.rglob("*"))
    return {f"{under}/{p.relative_to(root)}": p.read_bytes() for p in paths if p.is_file()}


#: Each tree: its files and the path given to ``-c``.
TREES: List[Tuple[Dict[str, bytes], str]] = [
    ({**_tree(HERE / "corpus", "/etc", ["xinetd.conf"]),
      **_tree(HERE / "corpus" / "xinetd.d", "/etc/xinetd.d")}, "/etc/xinetd.conf"),
    ({**_tree(HERE / "corpus", "/etc", ["xinetd.conf"]),
      **{name: re.sub(rb"(disable\s*=\s*)yes", rb"\1no", text)
         for name, text in _tree(HERE / "corpus" / "xinetd.d", "/etc/xinetd.d").items()}},
     "/etc/xinetd.conf"),
    (_tree(REPO / "conf", "/conf", sorted(p.name for p in (REPO / "conf").iterdir()
                                          if p.is_file())), "/conf"),
    ({"/seed.conf": (HERE / "fixtures" / "seed.conf").read_bytes()}, "/seed.conf"),
]

_SERVER = re.compile(rb"^\s*server\s*=\s*(\S+)", re.MULTILINE)
EXECUTABLES = sorted({m.group(1).decode() for files, _ in TREES for text in files.values()
                      for m in _SERVER.finditer(text)})
PORTS = {**SERVICES, ("rsync", "tcp"): 873, ("tftp", "udp"): 69, ("amanda", "udp"): 10080,
         ("amandaidx", "tcp"): 10082, ("amidxtape", "tcp"): 10083,
         ("cvspserver", "tcp"): 2401, ("swat", "tcp"): 901, ("sftp", "tcp"): 115,
         ("irc", "tcp"): 194, ("rootexternalssh", "tcp"): 33333}  # fmt: skip

_TOKENS = st.sampled_from([
    *ATTRIBUTES, "service", "defaults", "include", "includedir", "{", "}", "=", "+=", "-=",
    "yes", "no", "stream", "dgram", "INTERNAL", "UNLISTED", "SENSOR", "10.0.0.0/8", "::1",
    "127.0.0.1", "# comment", "only_form", "bnid", "wiat", "mdns", "/etc/xinetd.d",
    "/dev/zero", "echo", "root", "nobody", "\t", "\r", "é", "\x00", "\x1b[31m", "x" * 70,
])
_LINE = st.lists(_TOKENS, min_size=1, max_size=6).map(" ".join).map(str.encode)


@st.composite
def _mutated(draw: st.DrawFn) -> Tuple[Dict[str, bytes], str]:
    """One tree with a few of its files damaged: lines deleted, repeated, swapped,
    cut or replaced, attribute names misspelt, bytes inserted (also into service
    names), comments after values, files truncated."""
    files, path = draw(st.sampled_from(TREES))
    files = dict(files)
    for _ in range(draw(st.integers(1, 8))):
        name = draw(st.sampled_from(sorted(files)))
        files[name] = _damage(draw, files[name])
    return files, path


def _damage(draw: st.DrawFn, text: bytes) -> bytes:
    lines = text.split(b"\n")
    index = draw(st.integers(0, len(lines) - 1))
    line = lines[index]
    action = draw(st.sampled_from(["delete", "repeat", "swap", "cut", "replace", "typo",
                                   "bytes", "comment", "truncate", "name"]))
    headers = [i for i, text in enumerate(lines) if text.lstrip().startswith(b"service ")]
    if action == "name" and headers:
        # Bytes in a service name: what reaches /etc/services and the logs.
        index = draw(st.sampled_from(headers))
        at = draw(st.integers(len(lines[index]) - 2, len(lines[index])))
        line = lines[index]
        lines[index] = line[:at] + draw(st.binary(min_size=1, max_size=4)) + line[at:]
    elif action == "delete":
        del lines[index]
    elif action == "repeat":
        lines.insert(index, line)
    elif action == "swap":
        other = draw(st.integers(0, len(lines) - 1))
        lines[index], lines[other] = lines[other], lines[index]
    elif action == "cut":
        lines[index] = line[: draw(st.integers(0, len(line)))]
    elif action == "replace":
        lines[index] = draw(_LINE)
    elif action == "typo" and len(line.strip()) > 1:
        at = draw(st.integers(0, len(line) - 2))
        lines[index] = line[:at] + line[at + 1 : at + 2] + line[at : at + 1] + line[at + 2 :]
    elif action == "bytes":
        at = draw(st.integers(0, len(line)))
        lines[index] = line[:at] + draw(st.binary(min_size=1, max_size=4)) + line[at:]
    elif action == "comment":
        lines[index] = line + b" # " + draw(_LINE)
    elif action == "truncate":
        lines = lines[:index]
    return b"\n".join(lines)


# -- the oracle: reading the text again, without the parser ------------------------

_ATTRIBUTE_LINE = re.compile(r"^[ \t]*([A-Za-z_][A-Za-z0-9_]*)[ \t]*(?:\+=|-=|=)")
_HEADER_LINE = re.compile(r"^[ \t]*service[ \t]+\S")
_DEFAULTS_LINE = re.compile(r"^[ \t]*defaults[ \t]*\{?[ \t]*$")
_STARTER = re.compile(r"^[ \t]*(?:service|defaults|include|includedir)(?:[ \t{]|$)")


def _is_blank(line: str) -> bool:
    stripped = line.strip(" \t\r")
    return not stripped or stripped.startswith("#")


def _region(lines: List[str], header: int) -> List[str]:
    """The non-blank lines after line ``header`` (1-based) up to the next line that
    starts something at top level: everything the block may have owned."""
    found = []
    for line in lines[header:]:
        if _STARTER.match(line) and not _ATTRIBUTE_LINE.match(line):
            break
        if not _is_blank(line):
            found.append(line.strip(" \t\r"))
    return found


def _block_names(lines: List[str], header: int) -> Optional[List[str]]:
    """
    The attribute names of the block whose header is line ``header``, if its
    region is ``{``, attribute lines, ``}`` (the ``{`` may end the header),
    then nothing that may have been meant for it; None if anything else is
    there: a line the block may have lost.
    """
    region = _region(lines, header)
    if not lines[header - 1].rstrip(" \t\r").endswith("{"):
        if not region or region[0] != "{":
            return None
        region = region[1:]
    if "}" not in region:
        return None
    end = region.index("}")
    names = []
    for line in region[:end]:
        match = _ATTRIBUTE_LINE.match(line)
        if match is None:
            return None
        names.append(match.group(1))
    return names if _only_other_blocks(region[end + 1 :]) else None


def _only_other_blocks(rest: List[str]) -> bool:
    """
    True if no line of ``rest`` can have been meant for the block above: an
    attribute line or a ``{`` only below a line that is no attribute and no
    brace (another block's header, however misspelt), inside braces anything.
    """
    inside, owned = False, False
    for line in rest:
        if inside:
            inside = line != "}"
            owned = inside
        elif line == "{":
            if not owned:
                return False
            inside = True
        elif line == "}":
            owned = False
        elif not _ATTRIBUTE_LINE.match(line):
            owned = True
        elif not owned:
            return False
    return True


def _key(name: str) -> str:
    spec = ATTRIBUTES.get(name)
    return spec.key if spec is not None else name


def _check_nothing_dropped(service: ServiceConfig, text: str) -> None:
    names = _block_names(text.split("\n"), service.location.line)
    assert names is not None, f"{service.location}: ran beside a line its block may have lost"
    held = set(service.lines) | set(service.extra)
    missing = [n for n in names if _key(n) not in held]
    assert not missing, f"{service.location}: ran without {missing}"


def _check_defaults_kept(texts: Mapping[str, str]) -> None:
    for file, text in texts.items():
        lines = text.split("\n")
        for number, line in enumerate(lines, start=1):
            if _DEFAULTS_LINE.match(line):
                assert _block_names(lines, number) is not None, (
                    f"{file}:{number}: services ran beside a broken defaults section")


def _check_every_header_accounted(config: Configuration, texts: Mapping[str, str]) -> None:
    known = {(f.location.file, f.location.line) for f in config.failed}
    known |= {(s.location.file, s.location.line) for s in config.services}
    known |= {(d.location.file, d.location.line) for d in config.disabled}
    for file, text in texts.items():
        if file in config.failed_files:
            continue
        for number, line in enumerate(text.split("\n"), start=1):
            if _HEADER_LINE.match(line) and not _ATTRIBUTE_LINE.match(line):
                assert (file, number) in known, f"{file}:{number}: service neither ran nor failed"


def _check(config: Configuration, files: Mapping[str, bytes]) -> None:
    texts = {source: decode(files[source]) for source in config.sources if source in files}
    for service in config.services:
        _check_nothing_dropped(service, texts[service.location.file])
    if config.services:
        _check_defaults_kept(texts)
    _check_every_header_accounted(config, texts)
    assert config.ok == (not config.problems)
    if config.ok:
        assert (config.failed, config.failed_files) == ((), ())
    for failed in config.failed:
        assert failed.problems, f"{failed.location}: failed without a reason"
    for finding in (*config.problems, *config.warnings, *config.notes):
        str(finding).encode("utf-8")
    json.loads(render_json(config))
    render_table(config).encode("utf-8")


def _load(files: Mapping[str, bytes], path: str) -> Configuration:
    env = fake_environment(files, services=PORTS, executables=EXECUTABLES,
                           hosts={"localhost": ("127.0.0.1", "::1")})
    return load_configuration(path, environment=env, isolate=True)


def test_the_unmutated_trees_run_their_services() -> None:
    """The mutation bases load with services running, so the oracle has work to do."""
    running = [len(_load(files, path).services) for files, path in TREES]
    failed = [len(_load(files, path).failed) for files, path in TREES]
    assert running == [8, 18, 14, 8]
    assert failed == [0, 0, 0, 0]


@_FUZZ
@given(_mutated())
def test_damaged_trees_run_only_intact_services(tree: Tuple[Dict[str, bytes], str]) -> None:
    """Any damage gives running services and per-service errors: no traceback, no
    hang, no service running with a line of its block (or of the defaults) dropped,
    no service silently gone."""
    files, path = tree
    _check(_load(files, path), files)
