"""Confidence-based performance estimation (log_processor/evaluate/estimation.py) on synthetic data whose
calibration is known: probabilities drawn first, labels drawn from them, scores a known distortion."""
import dataclasses

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

from benchmarks import synthetic
from log_processor.evaluate import estimation as est
from log_processor.monitors import load_monitors
from log_processor.evaluate.reference import load_reference
from tests.conftest import REPO_ROOT


def world(n, seed, distort=lambda p: p):
    """n rows: true probability p, label y ~ Bernoulli(p), score = distort(p), predicted = score >= 0.5."""
    rng = np.random.default_rng(seed)
    p = rng.beta(2, 1.2, n)
    y = (rng.random(n) < p).astype(int)
    score = distort(p)
    return p, y, score, (score >= 0.5).astype(int)


def squashed(p):
    """A monotone but badly calibrated score (too confident at both ends)."""
    return 1 / (1 + np.exp(-3 * np.log(p / (1 - p))))


def test_realized_quality_is_sklearns():
    _, y, score, yhat = world(3000, 1, squashed)
    score = np.round(score, 2)                                    # ties, as a model with few drivers has
    got = est.realized_quality(y, yhat, score)
    assert got == pytest.approx({"accuracy": accuracy_score(y, yhat), "precision": precision_score(y, yhat),
                                 "recall": recall_score(y, yhat), "f1": f1_score(y, yhat),
                                 "roc_auc": roc_auc_score(y, score)})
    assert "precision" not in est.realized_quality(y, np.zeros_like(y), score)    # no predicted positive
    assert "roc_auc" not in est.realized_quality(np.ones(10), np.ones(10), np.arange(10))


@pytest.mark.parametrize("method", est.CALIBRATION_METHODS)
def test_calibration_repairs_a_miscalibrated_score_and_reports_both_errors(method):
    _, y, score, yhat = world(4000, 2, squashed)
    calibration = est.fit_calibration(score, y, yhat, method)
    assert calibration.raw_calibration_error > 0.08
    assert calibration.calibration_error < 0.03
    assert calibration.reference_quality["accuracy"] == pytest.approx(np.mean(y == yhat))
    p, _, s, _ = world(20000, 3, squashed)
    assert np.mean(np.abs(calibration.probabilities(s) - p)) < 0.04


def test_the_band_covers_the_realized_quality_at_its_confidence_and_narrows_with_the_window():
    """Known calibration (score = probability): over fresh windows, each metric's 90 % band holds
    the realized value in ~90 % of them; ten times the rows, about a third of the width."""
    covered = {m: 0 for m in est.METRICS}
    widths = {100: [], 1000: []}
    windows = 300
    for i in range(windows):
        p, y, score, yhat = world(500, 100 + i)
        estimates = est.estimate_quality(p, yhat, score, confidence=0.9, draws=400, seed=i)
        realized = est.realized_quality(y, yhat, score)
        for metric, e in estimates.items():
            covered[metric] += e.lower <= realized[metric] <= e.upper
    for metric, hits in covered.items():
        assert 0.85 <= hits / windows <= 0.95, (metric, hits / windows)
    for n in widths:
        p, _, score, yhat = world(n * 10, 7)
        e = est.estimate_quality(p, yhat, score)
        widths[n] = [e[m].upper - e[m].lower for m in est.METRICS]
    assert all(0.2 < wide / narrow < 0.45 for narrow, wide in zip(widths[100], widths[1000]))


def test_the_band_carries_the_calibrations_own_error_from_a_small_reference():
    """Over fresh references of 1 000 rows, a window of 20 000 rows: the labels alone would give a
    band a fifth as wide as the calibration's own error, which then decides coverage. With the
    bootstrap refits' spread the band covers the realized accuracy at its confidence; without, far
    less often. A reference twenty times larger leaves a spread about a fifth as large."""
    covered = {"with": 0, "without": 0}
    references = 40
    for i in range(references):
        _, y, score, yhat = world(1000, 500 + i, squashed)
        calibration = est.fit_calibration(score, y, yhat, "platt", seed=i)
        _, y, score, yhat = world(20000, 900 + i, squashed)
        realized = est.realized_quality(y, yhat, score)["accuracy"]
        for case, c in (("with", calibration), ("without", dataclasses.replace(calibration, replicates=np.empty((0, 2))))):
            e = est.estimate(c, score, yhat, draws=200, seed=i).estimates["accuracy"]
            covered[case] += e.lower <= realized <= e.upper
    assert covered["with"] / references >= 0.85, covered
    assert covered["without"] / references <= 0.6, covered
    _, y, score, yhat = world(20000, 7, squashed)
    small = est.calibration_spread(est.fit_calibration(score[:1000], y[:1000], yhat[:1000], "platt"), score, yhat)
    large = est.calibration_spread(est.fit_calibration(score, y, yhat, "platt"), score, yhat)
    assert 0.1 < large["accuracy"] / small["accuracy"] < 0.4, (small, large)


def test_drawn_labels_and_the_normal_approximation_of_their_sums_agree():
    p, _, score, yhat = world(2000, 4, squashed)
    exact = est.estimate_quality(p, yhat, score, label_draw_cells=10**9)
    normal = est.estimate_quality(p, yhat, score, label_draw_cells=0)
    for metric in est.METRICS:
        assert exact[metric].value == normal[metric].value
        assert exact[metric].lower == pytest.approx(normal[metric].lower, abs=0.004)
        assert exact[metric].upper == pytest.approx(normal[metric].upper, abs=0.004)
    assert exact["recall"].upper - exact["recall"].lower > 0.01       # a band, not a point


def test_estimate_checks_itself_on_the_labelled_rows_and_misses_concept_drift():
    _, y, score, yhat = world(2000, 5)
    calibration = est.fit_calibration(score, y, yhat, "isotonic")
    _, y, score, yhat = world(3000, 6)
    targets = np.where(np.arange(3000) % 2 == 0, y, np.nan)          # half of the labels landed
    fine = est.estimate(calibration, score, yhat, targets, min_labelled_rows=100)
    assert fine.rows == 3000 and set(fine.estimates) == set(est.METRICS)
    assert set(fine.error) == set(est.METRICS) and max(abs(v) for v in fine.error.values()) < 0.05
    assert fine.realized["accuracy"] == pytest.approx(np.mean((y == yhat)[::2]))
    # P(y | score) changed: the scores (and so the estimate) are as before, the labels are not
    flipped = np.where(np.isnan(targets), np.nan, 1 - targets)
    drifted = est.estimate(calibration, score, yhat, flipped, min_labelled_rows=100)
    assert drifted.estimates == fine.estimates
    assert drifted.error["accuracy"] > 0.3
    assert est.estimate(calibration, score, yhat, targets, min_labelled_rows=2000).error == {}
    assert est.estimate(calibration, score, yhat).error == {}


def test_fit_refuses_a_reference_without_both_classes():
    with pytest.raises(ValueError, match="both classes"):
        est.fit_calibration(np.linspace(0, 1, 50), np.ones(50), np.ones(50))


def test_the_score_calibration_is_cached_beside_the_reference_and_refitted_when_its_key_changes(tmp_path):
    parquet = tmp_path / "reference.parquet"
    synthetic.reference_frame(2000, seed=101).to_parquet(parquet)
    base = load_monitors(REPO_ROOT / "log_processor/monitors.yaml")[0]
    monitor = dataclasses.replace(base, reference=dataclasses.replace(base.reference, parquet=parquet, manifest=None),
                                  drift=dataclasses.replace(base.drift, alpha=None))
    first = load_reference(monitor, None).score_calibration
    cache = tmp_path / "reference.parquet.score_calibration.npz"
    assert cache.is_file() and first.method == "platt"
    mtime = cache.stat().st_mtime_ns
    again = load_reference(monitor, None).score_calibration
    assert cache.stat().st_mtime_ns == mtime
    assert np.array_equal(again.x, first.x) and again.reference_quality == first.reference_quality
    assert again.calibration_error == first.calibration_error
    assert again.replicates.shape == (est.CALIBRATION_REPLICATES, 2)
    assert np.array_equal(again.replicates, first.replicates)
    isotonic = dataclasses.replace(monitor, estimation=dataclasses.replace(monitor.estimation, calibration="isotonic"))
    refitted = load_reference(isotonic, None).score_calibration
    assert refitted.method == "isotonic" and cache.stat().st_mtime_ns != mtime
