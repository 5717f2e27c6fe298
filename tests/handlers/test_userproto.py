"""
Unit tests of ``superd.config.userproto`` and ``superd.handlers.userproto``: finding a
user's protocol by dotted path
or plugin, its own attributes parsed by its schema, and the handler that
serves it like a builtin (START, session end, failures that refuse).
"""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path
from typing import Any, Iterator

import pytest
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer

from superd.config.model import Extensions, Location, ServiceConfig, SocketType
from superd.config.userproto import (
    ISuperdProtocol,
    UserAttribute,
    UserProtocolError,
    find_plugin,
    parse_settings,
    resolve,
)
from superd.core.runtime import Runtime
from superd.core.session import Peer, Session
from superd.handlers.userproto import UserProtocolHandler


class Hello(Protocol):
    def connectionMade(self) -> None:
        self.transport.write(b"hi\r\n")  # type: ignore[union-attr]


def make_hello(context: Any) -> Factory:
    return Factory.forProtocol(Hello)


make_hello.superd_attributes = {  # type: ignore[attr-defined]
    "hello_count": UserAttribute(parse=lambda w: int(w[0]), required=True),
    "hello_name": UserAttribute(default="world"),
}


@implementer(ISuperdProtocol)
class Provider:
    name = "hello"
    attributes: dict[str, Any] = {}

    def build_factory(self, context: Any) -> Factory:
        return Factory.forProtocol(Hello)


@pytest.fixture
def module() -> Iterator[types.ModuleType]:
    """A throwaway importable module ``userproto_sample``."""
    sample = types.ModuleType("userproto_sample")
    sample.make_hello = make_hello  # type: ignore[attr-defined]
    sample.provider = Provider()  # type: ignore[attr-defined]
    sample.number = 3  # type: ignore[attr-defined]
    sys.modules["userproto_sample"] = sample
    yield sample
    del sys.modules["userproto_sample"]


def errors() -> tuple[list[tuple[str, str]], Any]:
    found: list[tuple[str, str]] = []
    return found, lambda attribute, message: found.append((attribute, message))


def test_resolve_callable_and_provider(module: types.ModuleType) -> None:
    """A plain callable is adapted with its superd_attributes; a provider is used as is."""
    adapted = resolve("userproto_sample:make_hello")
    assert ISuperdProtocol.providedBy(adapted)
    assert set(adapted.attributes) == {"hello_count", "hello_name"}
    assert resolve("userproto_sample:provider") is module.provider


@pytest.mark.parametrize(("text", "message"), [
    ("no_such_module_xyz:f", "cannot load no_such_module_xyz:f: ModuleNotFoundError: "
                             "No module named 'no_such_module_xyz'"),
    ("userproto_sample:missing", "cannot load userproto_sample:missing: AttributeError: "
                                 "module 'userproto_sample' has no attribute 'missing'"),
    ("userproto_sample:number", "userproto_sample:number is neither callable nor an "
                                "ISuperdProtocol"),
])
def test_resolve_errors(module: types.ModuleType, text: str, message: str) -> None:
    """What cannot be loaded is a UserProtocolError on the factory attribute."""
    with pytest.raises(UserProtocolError) as caught:
        resolve(text)
    assert (caught.value.attribute, str(caught.value)) == ("factory", message)


def test_settings_schema(module: types.ModuleType) -> None:
    """Declared attributes are parsed, defaults filled, missing/bad ones reported."""
    protocol = resolve("userproto_sample:make_hello")
    found, report = errors()
    assert parse_settings(protocol, {"hello_count": ("4",)}, report) == {
        "hello_count": 4, "hello_name": "world"}
    parse_settings(protocol, {}, report)
    parse_settings(protocol, {"hello_count": ("x",)}, report)
    assert found == [("hello_count", "missing: userproto_sample:make_hello needs hello_count"),
                     ("hello_count", "invalid literal for int() with base 10: 'x'")]


def test_plugin_discovery(tmp_path: Path) -> None:
    """plugin = NAME finds an ISuperdProtocol plugin by its name with twisted.plugin."""
    package = tmp_path / "superd_test_plugins"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "hello_plugin.py").write_text(
        "from twisted.plugin import IPlugin\n"
        "from zope.interface import implementer\n"
        "from superd.api import ISuperdProtocol\n"
        "@implementer(IPlugin, ISuperdProtocol)\n"
        "class P:\n"
        "    name = 'hello'\n"
        "    attributes = {}\n"
        "    def build_factory(self, context): return None\n"
        "plugin = P()\n")
    sys.path.insert(0, str(tmp_path))
    try:
        plugins = importlib.import_module("superd_test_plugins")
        assert find_plugin("hello", plugins).name == "hello"
        with pytest.raises(UserProtocolError, match="no ISuperdProtocol plugin named 'other'"):
            find_plugin("other", plugins)
    finally:
        sys.path.remove(str(tmp_path))
        for name in [n for n in sys.modules if n.startswith("superd_test_plugins")]:
            del sys.modules[name]


def service() -> ServiceConfig:
    return ServiceConfig(name="hello", id="hello", location=Location("conf/hello", 1),
                         socket_type=SocketType.STREAM, protocol="tcp", wait=False, port=9,
                         type=frozenset({"INTERNAL"}), log_on_success=frozenset({"HOST"}),
                         extensions=Extensions(factory="userproto_sample:make_hello"))


def handler_for(factory: Any) -> UserProtocolHandler:
    @implementer(ISuperdProtocol)
    class Fixed:
        name = "fixed"
        attributes: dict[str, Any] = {}

        def build_factory(self, context: Any) -> Any:
            return factory

    return UserProtocolHandler(service(), Runtime(reactor=MemoryReactorClock()), Fixed())


def test_handler_logs_start_and_ends_session(log_events: list[dict[str, Any]]) -> None:
    """START when connected, the user's protocol runs unwrapped, session ends on loss."""
    handler = handler_for(Factory.forProtocol(Hello))
    session = Session("hello", Peer("10.0.0.9", 1234), None, 0.0)
    protocol = handler.protocol_for(session)
    assert type(protocol) is Hello
    transport = StringTransport()
    protocol.makeConnection(transport)
    assert transport.value() == b"hi\r\n"
    assert [e["xinetd_line"] for e in log_events if e.get("event") == "start"] == [
        "START: hello from=10.0.0.9"]
    protocol.connectionLost(Failure(Exception("bye")))
    assert session.ended


def test_build_factory_failure_is_a_setup_error() -> None:
    """A build_factory that raises, or returns no factory, is a UserProtocolError."""
    @implementer(ISuperdProtocol)
    class Broken:
        name = "broken"
        attributes: dict[str, Any] = {}

        def build_factory(self, context: Any) -> Any:
            raise RuntimeError("no database")

    with pytest.raises(UserProtocolError, match="broken: build_factory failed: "
                                                "RuntimeError: no database"):
        UserProtocolHandler(service(), Runtime(reactor=MemoryReactorClock()), Broken())
    with pytest.raises(UserProtocolError, match="not a protocol factory"):
        handler_for(object())


def test_per_connection_failure_raises_for_the_access_layer() -> None:
    """A buildProtocol that raises propagates (the access factory logs and refuses)."""
    class Failing(Factory):
        def buildProtocol(self, addr: Any) -> Protocol:
            raise ValueError("bad peer")

    handler = handler_for(Failing())
    with pytest.raises(ValueError):
        handler.protocol_for(Session("hello", Peer("10.0.0.9", 1), None, 0.0))


def test_a_session_superd_ends_logs_exit_with_the_reason(
        main_log: list[dict[str, Any]]) -> None:
    """A user protocol's session logs no EXIT of its own, except when superd
    ended it (a ban, a reload): then EXIT says why."""
    from twisted.internet.error import ConnectionAborted

    handler = handler_for(Factory.forProtocol(Hello))
    ended, closed = (Session("hello", Peer("10.0.0.9", n), None, 0.0) for n in (1, 2))
    protocols = []
    for session in (ended, closed):
        protocol = handler.protocol_for(session)
        protocol.makeConnection(StringTransport())
        protocols.append(protocol)
    ended.serve_with(lambda: protocols[0].connectionLost(Failure(ConnectionAborted())))
    assert ended.terminate("banned")
    protocols[1].connectionLost(Failure(Exception("client left")))
    assert ended.ended and closed.ended
    exits = [e for e in main_log if e.get("event") == "exit"]
    assert [(e["service_id"], e["reason"]) for e in exits] == [("hello", "banned")]
