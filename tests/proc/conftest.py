"""Fixtures shared by the process and spawn handler tests."""

from __future__ import annotations

from typing import Any, Dict, Iterator, List

import pytest


@pytest.fixture
def events(log_events: List[Dict[str, Any]]) -> Iterator[List[Dict[str, Any]]]:
    """Every twisted.logger event emitted during the test, in order, the
    per-connection START/EXIT included (as the JSON log has them)."""
    yield log_events
