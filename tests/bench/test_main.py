"""bench/run's options: unpinned by default, --pin a secondary view, figure names."""

from __future__ import annotations

import os
import shutil

import pytest
from benchlib import figures, main


def test_nothing_is_pinned_unless_asked() -> None:
    args = main.parse_args([])
    assert args.pin is False
    assert main.pinning(args.pin) == (None, None, main.UNPINNED)
    assert "targets are judged" in main.UNPINNED


def test_pin_puts_servers_and_load_on_two_cpus() -> None:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2 or shutil.which("taskset") is None:
        pytest.skip("needs taskset and two CPUs")
    server, load, text = main.pinning(main.parse_args(["--pin"]).pin)
    assert (server, load) == (cpus[0], cpus[1])
    assert "secondary view" in text


def test_every_new_figure_has_an_only_name() -> None:
    """Issue 13's latency, the pinned spawn view and the scale figures can be run alone."""
    for name in ("latency", "spawn-pinned", "idle-10k", "lists-100k", "reload", "echo"):
        assert main.parse_args(["--only", name]).only == [name]
    assert set(main.parse_args([]).only) == set(figures.FIGURES)

