"""Fixtures shared by the spawn unit tests."""

from __future__ import annotations

from typing import Any, Dict, Iterator, List, cast

import pytest
from twisted.logger import ILogObserver, globalLogPublisher


@pytest.fixture
def events() -> Iterator[List[Dict[str, Any]]]:
    """Every twisted.logger event emitted during the test, in order."""
    seen: List[Dict[str, Any]] = []
    observer = cast(ILogObserver, seen.append)
    globalLogPublisher.addObserver(observer)
    yield seen
    globalLogPublisher.removeObserver(observer)
