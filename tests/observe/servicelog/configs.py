"""Small builders of configuration values for the service-log tests."""

from __future__ import annotations

from superd.config.model import (
    Configuration,
    Location,
    LogTarget,
    ServiceConfig,
    SocketType,
)


def service(service_id: str, log_type: LogTarget | None,
            success: frozenset[str] = frozenset({"HOST", "PID"}),
            failure: frozenset[str] = frozenset({"HOST"})) -> ServiceConfig:
    """A stream service named ``service_id`` logging to ``log_type``."""
    return ServiceConfig(
        name=service_id, id=service_id, location=Location("test.conf", 1),
        socket_type=SocketType.STREAM, protocol="tcp", wait=False, port=0,
        type=frozenset({"INTERNAL", "UNLISTED"}), log_type=log_type,
        log_on_success=success, log_on_failure=failure)


def configuration(*services: ServiceConfig) -> Configuration:
    """A configuration of ``services``."""
    return Configuration(services=tuple(services))
