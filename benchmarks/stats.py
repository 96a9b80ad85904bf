"""Rates with their uncertainty, as the benchmark tables print them and the plots draw them.

A leaf module: every suite may import it, and it imports no suite (tests/test_benchmarks_suites.py).
"""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np

Z95 = 1.96


def wilson(hits: int, total: int) -> tuple[float, float]:
    """95 % Wilson score interval of the share hits / total (NaNs for no trials).

    Wilson rather than the normal approximation: the rates measured here sit near 0 % (false alarms)
    and near 100 % (power), where the normal interval leaves [0, 1] or shrinks to nothing.
    """
    if total == 0:
        return math.nan, math.nan
    p = hits / total
    centre = (p + Z95 * Z95 / (2 * total)) / (1 + Z95 * Z95 / total)
    half = Z95 * math.sqrt(p * (1 - p) / total + Z95 * Z95 / (4 * total * total)) / (1 + Z95 * Z95 / total)
    return max(0.0, centre - half), min(1.0, centre + half)


def percent(hits: int, total: int) -> str:
    """The share in percent with its Wilson interval, as the tables print it: "1.2 % [0.8-1.9]"."""
    lo, hi = wilson(hits, total)
    return f"{100 * hits / total:.1f} % [{100 * lo:.1f}-{100 * hi:.1f}]"


def wilson_error_bars(counts: Iterable[tuple[int, int]]) -> np.ndarray:
    """matplotlib `yerr` (2 x n, in percentage points) of the Wilson intervals of (hits, total) pairs."""
    bars = []
    for hits, total in counts:
        lo, hi = wilson(hits, total)
        bars.append((100 * (hits / total - lo), 100 * (hi - hits / total)))
    return np.array(bars).T
