"""
What the configuration says is wrong or switched off, in the main log.

At start (``log_start``): every error (``FILE:LINE: service NAME: ATTRIBUTE:
problem``) and each service that does not run because of errors, at error
level; warnings; the entries ``includedir`` skipped and the disabled
services, at info level.  At a reload the reloader logs the errors, failed
services and warnings of the new configuration with the same functions.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from twisted.logger import Logger

from superd.config.errors import MAX_FILE_ERRORS, ConfigWarning, Problem, error_count
from superd.config.model import Configuration, FailedService
from superd.daemon.isolation import Kept, shown
from superd.observe import events

__all__ = ["log_failed", "log_problems", "log_start", "log_warnings"]

_log = Logger(namespace="superd.config")


def _errors(count: int) -> str:
    return f"{count} error{'' if count == 1 else 's'}"


def log_problems(problems: Iterable[Problem]) -> None:
    """One ``config_error`` event per problem, with its file and line."""
    for problem in problems:
        _log.error("{problem}", event=events.EV_CONFIG_ERROR, problem=str(problem),
                   file=problem.file, line=problem.line, service_id=problem.service,
                   attribute=problem.attribute)


def log_failed(failed: Iterable[FailedService], kept: Sequence[Kept] = (), *,
               phase: str = "start") -> None:
    """One ``service_failed`` event per service block that does not run with
    its new definition (``kept``: those whose previous one still runs), for
    those ``shown`` lists; one more counts the others."""
    listed, omitted = shown(tuple(failed))
    for service in listed:
        previous = [str(k.service.location) for k in kept if k.failed == service]
        text = ("service {service_id} ({where}): new definition refused ({errors});"
                " the previous definition keeps running") if previous else \
            "service {service_id} ({where}) not started: {errors}"
        _log.error(text, event=events.EV_SERVICE_FAILED, service_id=service.id,
                   service=service.name, where=str(service.location),
                   file=service.location.file, line=service.location.line,
                   errors=_errors(error_count(service.problems)),
                   problems=[str(p) for p in service.problems],
                   previous=previous, phase=phase)
    if omitted:
        _log.error("{count} more services failed, not listed one by one (their files hold"
                   " more than {most} each)", event=events.EV_SERVICE_FAILED, count=omitted,
                   most=MAX_FILE_ERRORS, phase=phase)


def log_warnings(warnings: Iterable[ConfigWarning]) -> None:
    """One ``config_warning`` event per warning."""
    for warning in warnings:
        _log.warn("{warning}", event=events.EV_CONFIG_WARNING, warning=str(warning),
                  file=warning.location.file, line=warning.location.line)


def log_start(config: Configuration) -> None:
    """Everything the daemon's start log says about ``config``."""
    log_problems(config.problems)
    log_failed(config.failed)
    log_warnings(config.warnings)
    for note in config.notes:
        _log.info("{note}", event=events.EV_CONFIG_NOTE, note=str(note), path=note.path)
    for disabled in config.disabled:
        _log.info("service {service_id} ({where}) disabled: {reason}",
                  event=events.EV_SERVICE_DISABLED, service_id=disabled.id,
                  service=disabled.name, where=str(disabled.location),
                  reason=disabled.reason.value)
