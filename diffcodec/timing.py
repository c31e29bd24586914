"""Where a process's coding time goes: named wall-clock totals that the codec's stages add to and a
benchmark reads (``eval/bench_codec.py``). Stages: "network" (p_theta evaluations), "codebook"
(generating rcc's shared candidates), "scoring" (rcc's candidate scores and selection), "sampling"
(rebuilding the chosen candidates), "entropy" (range coding). Nesting is not allowed: each second
belongs to one stage.
"""
from __future__ import annotations

import contextlib
import time
from collections import defaultdict

_TOTALS: dict[str, float] = defaultdict(float)


@contextlib.contextmanager
def stage(name: str):
    """Add the wall time of the block to stage ``name``."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        _TOTALS[name] += time.perf_counter() - t0


def totals(reset: bool = False) -> dict[str, float]:
    """The seconds per stage so far (and start again from zero when ``reset``)."""
    out = dict(_TOTALS)
    if reset:
        _TOTALS.clear()
    return out
