"""Fixtures for the TLS unit tests: one generated PKI per test session."""

from __future__ import annotations

import pytest

from tests.tls.certs import PKI, make_pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    """A CA, a localhost server certificate, a good and a wrong client certificate."""
    return make_pki(tmp_path_factory.mktemp("pki"))
