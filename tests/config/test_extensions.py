"""
``superd.config.extensions`` through the real loader: the TLS, redirect and
user-protocol attributes become ``ServiceConfig.extensions`` at load, and
every problem is a configuration error naming the file, line, service and
attribute.  Two tests check what the assembly then builds from them.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from twisted.internet.protocol import Factory, Protocol

from superd.config.errors import ConfigError
from superd.config.load import load_configuration
from superd.config.model import Configuration, Extensions
from superd.config.userproto import UserAttribute
from superd.daemon.assembly import Assembly, Unavailable
from superd.handlers.builtins.registry import stream_handler as builtin_stream_handler
from tests.certs import PKI
from tests.config.fakes import errors_under
from tests.fakes import make_parts

HEAD = ("service {name}\n{{\n\ttype = {type}\n\tsocket_type = stream\n\twait = {wait}\n"
        "\tport = 0\n")


def load(tmp_path: Path, body: str, name: str = "echo", type: str = "INTERNAL UNLISTED",
         wait: str = "no") -> object:
    conf = tmp_path / "svc"
    conf.write_text(HEAD.format(name=name, type=type, wait=wait) + body + "}\n")
    return load_configuration(str(conf))


def problems(tmp_path: Path, body: str, **kw: str) -> list[str]:
    return errors_under(tmp_path, lambda: load(tmp_path, body, **kw))


def tls(pki: PKI) -> str:
    return f"\ttls_cert = {pki.server.cert_path}\n\ttls_key = {pki.server.key_path}\n"


def test_tls_settings_loaded(tmp_path: Path, pki: PKI) -> None:
    """tls_* attributes load the PEM texts and options into the service."""
    config = load(tmp_path, tls(pki) + "\ttls_min_version = 1.3\n"
                                       "\ttls_handshake_timeout = 4\n")
    settings = config.services[0].extensions.tls  # type: ignore[attr-defined]
    assert settings.cert_pem == pki.server.cert_pem
    assert (settings.min_version, settings.handshake_timeout) == ("1.3", 4.0)


def test_tls_problems_have_file_and_line(tmp_path: Path, pki: PKI) -> None:
    """Syntax and PEM problems point at the line of the attribute to fix."""
    assert problems(tmp_path, tls(pki) + "\ttls_verify_client = maybe\n"
                                         "\ttls_client_ca = /nonexistent/ca.pem\n") == [
        "svc:9: service echo: tls_verify_client: expected none or optional or require, "
        "got 'maybe'",
        "svc:10: service echo: tls_client_ca: cannot read /nonexistent/ca.pem: "
        "No such file or directory",
    ]


def test_tls_needs_stream_wait_no_and_no_banner(tmp_path: Path, pki: PKI) -> None:
    """TLS on wait = yes, or with a banner sent before the handshake, is refused."""
    banner = tmp_path / "banner.txt"
    banner.write_text("hello\n")
    found = problems(tmp_path, tls(pki) + f"\tbanner = {banner}\n\tserver = /bin/cat\n"
                                          "\tuser = root\n", type="UNLISTED", wait="yes")
    assert found == [
        "svc:7: service echo: tls_cert: TLS needs socket_type = stream and wait = no",
        "svc:9: service echo: banner: banner cannot be sent on a TLS service "
        "(it would precede the handshake in clear text)",
    ]


def test_redirect_settings(tmp_path: Path, pki: PKI) -> None:
    """redirect_timeout and redirect_tls load; a stray redirect_tls_name is an error."""
    config = load(tmp_path, "\tuser = root\n\tredirect = 127.0.0.1 7\n\tredirect_timeout = 2.5\n"
                            f"\tredirect_tls = yes\n\tredirect_tls_name = localhost\n"
                            f"\tredirect_tls_ca = {pki.ca_path}\n",
                  name="relay", type="UNLISTED")
    ext = config.services[0].extensions  # type: ignore[attr-defined]
    assert ext.redirect_timeout == 2.5 and ext.redirect_tls.name == "localhost"
    assert problems(tmp_path, "\tuser = root\n\tredirect = 127.0.0.1 7\n"
                              "\tredirect_tls_name = localhost\n",
                    name="relay", type="UNLISTED") == [
        "svc:9: service relay: redirect_tls_name: redirect_tls_name needs redirect_tls = yes"]


def test_user_factory_errors(tmp_path: Path) -> None:
    """A factory that cannot be imported, or written wrong, is an error on its line."""
    assert problems(tmp_path, "\tfactory = no_such_module_abc:make\n", name="mine") == [
        "svc:7: service mine: factory: cannot load no_such_module_abc:make: "
        "ModuleNotFoundError: No module named 'no_such_module_abc'"]
    assert problems(tmp_path, "\tfactory = not a path\n", name="mine") == [
        "svc:7: service mine: factory: expected 1 value, got 3"]
    assert "svc:7: service mine: factory: a user protocol needs type = INTERNAL" in problems(
        tmp_path, "\tfactory = superd.handlers.tcpmux:TcpmuxHandler\n", name="mine",
        type="UNLISTED")


def test_user_protocol_must_be_stream_wait_no(tmp_path: Path) -> None:
    """A user protocol on wait = yes is refused at assembly, naming the factory attribute."""
    relay = load(tmp_path, "\tredirect = 127.0.0.1 7\n\tuser = root\n", name="relay",
                 type="UNLISTED").services[0]  # type: ignore[attr-defined]
    mine = attrs.evolve(relay, redirect=None, wait=True, type=frozenset({"INTERNAL"}),
                        extensions=Extensions(factory="x.y:z"))
    with pytest.raises(Unavailable) as caught:
        Assembly(make_parts(), Configuration((mine,))).handler(mine)
    assert (caught.value.attribute, caught.value.message) == (
        "factory", "user protocols are stream services with wait = no")


@pytest.fixture
def counted_module() -> Iterator[None]:
    """An importable ``extensions_sample`` whose factory declares ``hello_count``."""
    sample = types.ModuleType("extensions_sample")

    def make(context: Any) -> Factory:
        return Factory.forProtocol(Protocol)

    make.superd_attributes = {  # type: ignore[attr-defined]
        "hello_count": UserAttribute(parse=lambda words: int(words[0]), required=True)}
    sample.make = make  # type: ignore[attr-defined]
    sys.modules["extensions_sample"] = sample
    yield
    del sys.modules["extensions_sample"]


def warnings_of(config: Any, tmp_path: Path) -> list[str]:
    return [str(w).replace(str(tmp_path) + "/", "") for w in config.warnings]


def test_user_protocol_attributes_are_not_unknown(tmp_path: Path, counted_module: None) -> None:
    """A factory's declared attribute is no 'unknown attribute'; an undeclared one is,
    on its own line (and an error under --strict)."""
    body = "\thello_count = 3\n\tfrobnicate = yes\n\tfactory = extensions_sample:make\n"
    config = load(tmp_path, body, name="mine")
    assert warnings_of(config, tmp_path) == [
        "svc:8: service mine: frobnicate: unknown attribute, ignored"]
    (service,) = config.services  # type: ignore[attr-defined]
    assert service.extensions.settings == {"hello_count": 3}
    with pytest.raises(ConfigError) as caught:
        load_configuration(str(tmp_path / "svc"), strict=True)
    assert [str(p).replace(str(tmp_path) + "/", "") for p in caught.value.problems] == [
        "svc:8: service mine: frobnicate: unknown attribute (refused with --strict)"]


def test_a_slip_for_a_declared_attribute_is_an_error(tmp_path: Path,
                                                    counted_module: None) -> None:
    """A user protocol's attribute misspelt (or superd's) is an error with the name meant."""
    body = ("\thello_count = 3\n\thelo_count = 4\n\tonly_form = 10.0.0.1\n"
            "\tfactory = extensions_sample:make\n")
    assert problems(tmp_path, body, name="mine") == [
        "svc:8: service mine: helo_count: unknown attribute; did you mean 'hello_count'?",
        "svc:9: service mine: only_form: unknown attribute; did you mean 'only_from'?",
    ]


def test_user_protocol_attribute_problems_point_at_their_line(tmp_path: Path,
                                                               counted_module: None) -> None:
    """A declared attribute that does not parse is an error on its own line, not the header."""
    assert problems(tmp_path, "\tfactory = extensions_sample:make\n\thello_count = many\n",
                    name="mine") == [
        "svc:8: service mine: hello_count: invalid literal for int() with base 10: 'many'"]


def test_unloadable_factory_leaves_its_attributes_unjudged(tmp_path: Path) -> None:
    """When the factory cannot be loaded, only that is reported: its attributes are not
    called unknown as well."""
    assert problems(tmp_path, "\tfactory = no_such_module_abc:make\n\thello_count = 3\n",
                    name="mine") == [
        "svc:7: service mine: factory: cannot load no_such_module_abc:make: "
        "ModuleNotFoundError: No module named 'no_such_module_abc'"]


def test_tls_hides_the_bare_descriptor_path(tmp_path: Path, pki: PKI) -> None:
    """daytime under TLS is served through the TLS transport: the wrapped
    handler offers no ``answer_fd``, so the port never gives its socket to
    the plain reply handler."""
    (service,) = load(tmp_path, tls(pki), name="daytime").services  # type: ignore[attr-defined]
    parts = make_parts()
    plain = builtin_stream_handler(service, parts.runtime)
    assert hasattr(plain, "answer_fd")
    assert not hasattr(Assembly(parts, Configuration((service,))).handler(service), "answer_fd")
