"""The shared fakes in tests/fakes.py provide the interfaces they claim."""

from __future__ import annotations

from twisted.internet.interfaces import IReactorProcess, IReactorTime
from twisted.internet.protocol import ProcessProtocol
from zope.interface.verify import verifyObject

from superd.proc.credentials import Identity, SpawningThread
from superd.proc.spawner import (
    ExitStatus,
    IBackgroundSpawner,
    ISpawner,
    PosixSpawner,
    SpawnRequest,
)
from tests.fakes import FakeBackgroundSpawner, FakeProcessReactor, FakeSpawner


def test_fake_spawner_provides_ispawner() -> None:
    """FakeSpawner and the real PosixSpawner both provide ISpawner."""
    assert verifyObject(ISpawner, FakeSpawner())
    assert verifyObject(ISpawner, PosixSpawner(SpawningThread(Identity(1, 1), None)))
    assert verifyObject(IBackgroundSpawner, FakeBackgroundSpawner())
    assert verifyObject(IBackgroundSpawner,
                        PosixSpawner(SpawningThread(Identity(1, 1), None)))


def test_fake_spawner_records_and_ends() -> None:
    """FakeSpawner records requests and reports exits it is told about."""
    spawner = FakeSpawner()
    statuses: list[ExitStatus] = []
    request = SpawnRequest("/bin/true", ("true",), {}, {})
    pid = spawner.spawn(request, statuses.append)
    assert spawner.requests == [request] and spawner.running() == [pid]
    spawner.exit(pid, 1)
    assert statuses[0].code == 1 and spawner.running() == []


def test_fake_process_reactor() -> None:
    """FakeProcessReactor provides IReactorProcess and IReactorTime and
    records spawnProcess calls, connecting the process protocol."""
    reactor = FakeProcessReactor()
    assert verifyObject(IReactorProcess, reactor)
    assert verifyObject(IReactorTime, reactor)
    protocol = ProcessProtocol()
    process = reactor.spawnProcess(protocol, "/bin/cat", ["cat"], env={},
                                   childFDs={0: 5, 1: 5, 2: 5})
    assert reactor.spawned == [process] and protocol.transport is process
    assert process.kwargs["childFDs"] == {0: 5, 1: 5, 2: 5}
