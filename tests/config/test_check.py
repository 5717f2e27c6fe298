"""Tests for ``superd.config.check``: what ``superd check`` prints."""

from __future__ import annotations

import json

from superd.config.check import render_json, render_table
from tests.config.fakes import load_text

TEXT = """\
service echo
{
    type = INTERNAL UNLISTED
    port = 0
    socket_type = stream
    wait = no
    bind = 127.0.0.1 ::1
    instances = 10
}
service ssh
{
    socket_type = stream
    wait = no
    user = root
    server = /usr/sbin/sshd
    server_args = -i
    only_from = 10.0.0.0
    cps = 30 10
    mdns = yes
}
"""


def test_table_lists_services() -> None:
    """The table has one aligned row per service, then a count (warnings go elsewhere)."""
    assert render_table(load_text(TEXT)) == (
        "id    name  proto  socket  listen               kind      wait  limits\n"
        "echo  echo  tcp    stream  127.0.0.1:0 [::1]:0  builtin   no    "
        "inst=10 per_src=- cps=50/10\n"
        "ssh   ssh   tcp    stream  *:22                 external  no    "
        "inst=- per_src=- cps=30/10\n"
        "2 service(s) from 1 file(s)\n"
    )


def test_table_lists_failed_and_disabled_services() -> None:
    """What would not run is listed after the count: failed (with how many errors)
    and disabled (with why)."""
    text = TEXT.replace("    mdns = yes\n", "    bnid = 127.0.0.1\n") + (
        "service daytime\n{\n    disable = yes\n    id = daytime-stream\n}\n"
        "defaults\n{\n    disabled = echo\n}\n"
    )
    assert render_table(load_text(text, isolate=True)) == (
        "id  name  proto  socket  listen  kind  wait  limits\n"
        "0 service(s) from 1 file(s); 1 failed; 2 disabled\n"
        "failed (not started):\n"
        "  ssh  ssh  /etc/superd/test.conf:10  1 error\n"
        "disabled:\n"
        "  echo            echo     /etc/superd/test.conf:1   listed in defaults disabled\n"
        "  daytime-stream  daytime  /etc/superd/test.conf:21  disable = yes\n"
    )


def test_json_has_services_and_warnings() -> None:
    """The JSON document carries each service's listen facts and the warnings."""
    document = json.loads(render_json(load_text(TEXT)))
    echo, ssh = document["services"]
    assert (echo["id"], echo["port"], echo["bind"], echo["kind"]) == (
        "echo", 0, ["127.0.0.1", "::1"], "builtin",
    )  # fmt: skip
    assert (ssh["user"], ssh["cps"], ssh["instances"]) == ("root", [30, 10], None)
    assert [w["attribute"] for w in document["warnings"]] == ["only_from", "mdns"]
    assert document["sources"] == ["/etc/superd/test.conf"]
    assert (document["ok"], document["errors"], document["failed"]) == (True, [], [])


def test_ban_store_is_shown_without_its_password() -> None:
    """The file's ban_store is listed (table line, JSON key) with the password left out."""
    config = load_text("defaults\n{\n    ban_store = redis://:pw@127.0.0.1:6390/2\n}\n" + TEXT)
    assert "\nban store: redis://127.0.0.1:6390/2\n" in render_table(config)
    assert json.loads(render_json(config))["ban_store"] == "redis://127.0.0.1:6390/2"
    assert "pw" not in render_table(config) + render_json(config)
    assert json.loads(render_json(load_text(TEXT)))["ban_store"] is None
