"""The scale figures' generated configurations load in superd."""

from __future__ import annotations

import os
from pathlib import Path

from benchlib import confgen, scale_figures

from superd.config.load import load_configuration


def _load(text: str, tmp_path: Path) -> list[object]:
    path = os.path.join(str(tmp_path), "svc")
    with open(path, "w") as f:
        f.write(text)
    return list(load_configuration(path, strict=True).services)


def test_lists_services_are_a_plain_and_a_listed_daytime(tmp_path: Path) -> None:
    """Offsets 1 and 2 of one base; only the second carries the lists, of the size asked."""
    plain, listed = scale_figures.lists_services(500)
    assert (plain.offset, listed.offset) == (1, 2) and not plain.extra
    loaded = _load(confgen.render([plain, listed], 26420, str(tmp_path)), tmp_path)
    by_port = {s.port: s for s in loaded}  # type: ignore[attr-defined]
    assert set(by_port) == {26421, 26422}
    assert by_port[26421].only_from is None
    assert len(by_port[26422].only_from) == 500 and len(by_port[26422].no_access) == 500


def test_the_idle_figure_runs_one_discard_service(tmp_path: Path) -> None:
    (svc,) = _load(scale_figures._discard_config(26420, str(tmp_path)), tmp_path)
    assert (svc.name, svc.port) == ("discard", 26420)  # type: ignore[attr-defined]


def test_the_idle_figure_asks_for_more_descriptors_than_it_holds() -> None:
    assert scale_figures.NOFILE_WANTED > scale_figures.IDLE_CONNECTIONS
