"""
Tests that superd's modules import each other without a cycle.

The layers contract of ``.importlinter`` (``make lint``) keeps each layer
from importing the layers above it; it cannot see a cycle between two
modules of one layer, nor one hidden in an import written inside a
function.  This test sees every import grimp finds, wherever it is written.
"""

from __future__ import annotations

import graphlib

import grimp


def test_no_module_imports_itself_through_others() -> None:
    """A topological order of superd's modules exists (stdlib graphlib names
    the first cycle it meets, if any)."""
    graph = grimp.build_graph("superd")
    imports = {module: graph.find_modules_directly_imported_by(module)
               for module in graph.modules}
    # The whole package was read, imports inside functions included.
    assert len(imports) > 100
    assert "superd.handlers.redirect" in imports["superd.daemon.assembly"]
    try:
        order = list(graphlib.TopologicalSorter(imports).static_order())
    except graphlib.CycleError as e:
        raise AssertionError(f"import cycle: {' -> '.join(e.args[1])}") from None
    assert set(order) == set(imports)

