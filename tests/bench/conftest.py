"""Make ``bench/benchlib`` importable: the benchmark is scripts, not a package."""

from __future__ import annotations

import os
import sys

BENCH_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "bench")
if BENCH_DIR not in sys.path:
    sys.path.insert(0, BENCH_DIR)
