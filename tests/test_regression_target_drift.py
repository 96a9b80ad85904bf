"""benchmarks/regression_target_drift.py: its verdict is the calibrated one (the reference's numerical
null at the window's size), it finds the shift it measures and stays quiet on unshifted windows, and
its by-reference interval treats the references as the units."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from benchmarks import regression_target_drift as bench
from benchmarks import synthetic


@pytest.fixture(scope="module")
def reference():
    return bench.Reference(synthetic.regression_reference_frame(bench.REFERENCE_ROWS, 700_000))


@pytest.fixture(scope="module")
def fresh_targets():
    return synthetic.regression_rows("normal", synthetic.TRAFFIC_BASE, 990_001)["target"].to_numpy()


def test_the_verdict_is_the_normed_wasserstein_against_the_calibrated_threshold(reference, fresh_targets):
    outcomes = []
    for n in (100, 1_000, 3_000):
        for shift in (0.0, 0.1, 0.2):
            window = fresh_targets[:n] + shift * reference.sigma
            score = stats.wasserstein_distance(reference.target, window) / reference.norm
            expected = score >= reference.null.threshold(n, 0.01)
            assert reference.flagged(window, 0.01) == expected, (n, shift)
            outcomes.append(expected)
    assert True in outcomes and False in outcomes      # both sides of the threshold were exercised
    assert reference.null.threshold(100, 0.01) > reference.null.threshold(3_000, 0.01)   # by the window's size


def test_unshifted_windows_pass_and_a_half_sigma_shift_is_found(reference, fresh_targets):
    rng = np.random.default_rng(3)
    windows = [fresh_targets[rng.integers(0, len(fresh_targets), 1_000)] for _ in range(100)]
    assert sum(reference.flagged(w, 0.01) for w in windows) <= 5
    assert all(reference.flagged(w + 0.5 * reference.sigma, 0.01) for w in windows)


def test_the_reference_s_mae_is_its_own():
    frame = synthetic.regression_reference_frame(500, 5)
    ref = bench.Reference(frame)
    assert ref.mae == pytest.approx(float(np.abs(frame["prediction"] - frame["target"]).mean()))


def test_by_reference_interval_uses_the_references_as_units():
    # 1 reference of 40 flags every window: pooled 2.5 %, and the interval reaches far above 1 %
    rates = np.array([1.0] + [0.0] * 39)
    text = bench.by_reference(rates)
    assert text.startswith("2.5 % [0.0-")
    assert float(text.split("-")[1].rstrip(" %]")) > 7
    assert bench.by_reference(np.full(10, 0.01)) == "1.0 % [1.0-1.0]"
