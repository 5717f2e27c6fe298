"""Tests for superd.cli.migrate: per-service differences from xinetd, only where they apply."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from superd.cli.main import main
from superd.cli.migrate import file_notes, render_text, service_notes
from superd.config.load import load_configuration

BUILTIN = """service echo
{
\ttype        = INTERNAL UNLISTED
\tid          = %(id)s
\tsocket_type = %(kind)s
\twait        = %(wait)s
\tport        = %(port)s
\tbind        = 127.0.0.1
\tcps         = 0 0
}
"""

EXTERNAL = """service cat
{
\ttype           = UNLISTED
\tsocket_type    = stream
\twait           = no
\tport           = 4000
\tserver         = /bin/cat
\tuser           = nobody
\tlog_on_success = HOST
\tonly_from      = 192.168.0.0 10.0.0.0/8
\tno_access      = 192.168.1.0/24
\tv6only         = no
}
"""


def load(tmp_path: Path, **files: str) -> object:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return load_configuration(str(tmp_path))


def test_external_service_gets_server_access_and_log_notes(tmp_path: Path) -> None:
    """An external server with both lists, a wildcard entry and v6only=no hears about each."""
    config = load(tmp_path, cat=EXTERNAL)
    texts = [n.text for n in service_notes(config.services[0], config)]  # type: ignore
    joined = "\n".join(texts)
    assert "most specific matching entry wins" in joined
    assert "192.168.0.0: trailing zeros are a wildcard" in joined
    assert "v6only = no is honoured" in joined
    assert "::ffff:10.1.2.3" in joined  # no bind: the dual-stack wildcard
    assert "START is logged only for a client that passed" in joined
    assert "EXIT status=127" in joined and "process group" in joined
    assert "in-process" not in joined and "reflection" not in joined


def test_builtin_notes_depend_on_socket_type(tmp_path: Path) -> None:
    """A UDP builtin hears about reflection; a TCP one on 127.0.0.1 about nothing mapped."""
    config = load(tmp_path,
                  tcp=BUILTIN % dict(id="e-tcp", kind="stream", wait="no", port=7000),
                  udp=BUILTIN % dict(id="e-udp", kind="dgram", wait="yes", port=7000))
    tcp, udp = (service_notes(s, config) for s in config.services)  # type: ignore
    assert [n.topic for n in tcp] == ["builtins"]
    assert "reflection" in udp[0].text and "reflection" not in tcp[0].text
    assert not any("::ffff" in n.text for n in (*tcp, *udp))


def test_userid_and_idonly_notes(tmp_path: Path) -> None:
    """USERID hears that lookups never delay the connection; IDONLY that its wait is bounded."""
    userid = EXTERNAL.replace("log_on_success = HOST", "log_on_success = HOST USERID")
    idonly = userid.replace("service cat", "service idcat").replace(
        "port           = 4000", "port = 4001\n\tflags = IDONLY")
    config = load(tmp_path, cat=userid, idcat=idonly)
    notes = {s.id: "\n".join(n.text for n in service_notes(s, config))  # type: ignore
             for s in config.services}  # type: ignore
    assert "never delaying it" in notes["cat"] and "IDONLY" not in notes["cat"]
    assert "at most 30 s" in notes["idcat"] and "NOID timeout" in notes["idcat"]


def test_file_notes_find_glued_values_and_relative_includes(tmp_path: Path) -> None:
    """name=value and a relative include are pointed at by file and line."""
    text = "defaults\n{\n\tinstances=5\n}\ninclude more\nincludedir /etc/xinetd.d\n"
    found = file_notes(["x.conf"], lambda path: text)
    assert [(where, note.text.split(" ")[0]) for where, note in found] == \
        [("x.conf:3", "name=value"), ("x.conf:5", "include")]


def test_render_text_says_nothing_changes_when_nothing_does(tmp_path: Path) -> None:
    """A service no rule applies to is listed with 'nothing changes'."""
    config = load(tmp_path, trap="""service trap
{
\ttype        = INTERNAL UNLISTED
\tsocket_type = stream
\twait        = no
\tport        = 7001
\tbind        = 127.0.0.1
\tflags       = SENSOR
\tcps         = 0 0
}
""")
    text = render_text(config)  # type: ignore[arg-type]
    assert "service trap (sensor" in text and "[same] nothing changes." in text


def test_cli_migrate_and_check_explain(tmp_path: Path) -> None:
    """``superd migrate`` and ``superd check --explain`` print the same report; --json too."""
    (tmp_path / "cat").write_text(EXTERNAL)
    outputs = []
    for argv in (["migrate", "-c", str(tmp_path)], ["check", "--explain", "-c", str(tmp_path)]):
        out = io.StringIO()
        assert main(argv, out, io.StringIO()) == 0
        outputs.append(out.getvalue())
    assert outputs[0] == outputs[1] and "service cat (external" in outputs[0]
    out = io.StringIO()
    assert main(["migrate", "--json", "-c", str(tmp_path)], out, io.StringIO()) == 0
    assert json.loads(out.getvalue())["services"][0]["id"] == "cat"


@pytest.mark.parametrize("bad", ["\tinstances = 5\n\tinstances = 6\n", "\tport = banana\n"])
def test_cli_migrate_lists_what_superd_refuses(tmp_path: Path, bad: str) -> None:
    """A tree with errors is reported problem by problem, exit 78."""
    (tmp_path / "cat").write_text(EXTERNAL.replace("}\n", bad + "}\n"))
    err = io.StringIO()
    assert main(["migrate", "-c", str(tmp_path)], io.StringIO(), err) == 78
    assert err.getvalue().startswith("superd would not start the services these errors"
                                     " concern")
    assert f"{tmp_path / 'cat'}:1" in err.getvalue()
