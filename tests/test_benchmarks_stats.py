"""benchmarks/stats.py: the Wilson interval the benchmark tables print, against textbook values."""
from __future__ import annotations

import math

import pytest

from benchmarks.stats import percent, wilson, wilson_error_bars


def test_wilson_matches_the_textbook_interval():
    # 10 successes in 100 trials: 95 % Wilson score interval 0.0552-0.1744 (Newcombe 1998, method 3)
    assert wilson(10, 100) == pytest.approx((0.0552, 0.1744), abs=5e-5)


def test_wilson_stays_inside_zero_and_one_at_the_edges():
    lo, hi = wilson(0, 50)
    assert lo == 0.0 and 0 < hi < 0.1
    lo, hi = wilson(50, 50)
    assert 0.9 < lo < 1 and hi == 1.0
    assert all(math.isnan(v) for v in wilson(0, 0))


def test_percent_prints_the_share_with_its_interval():
    assert percent(1, 100) == "1.0 % [0.2-5.4]"
    assert percent(0, 50) == "0.0 % [0.0-7.1]"


def test_error_bars_are_the_distances_to_the_interval_in_points():
    bars = wilson_error_bars([(10, 100), (0, 50)])
    assert bars.shape == (2, 2)
    assert bars[:, 0] == pytest.approx((100 * (0.10 - 0.0552), 100 * (0.1744 - 0.10)), abs=5e-3)
    assert bars[0, 1] == 0.0
