"""Target drift: the realized labels' class shares against the reference's, calibrated by the number
of labelled rows (the features' calibration, same alpha contract), through the whole `evaluate`.

Fresh labelled rows come from serving's generator with seeds the reference never saw. The false-alarm
check computes the Jensen-Shannon distance with scipy exactly as Evidently does (the whole-`evaluate`
tests below check that they agree), so hundreds of windows cost milliseconds; the figures from 100 to
100 000 labelled rows are `make bench ARGS=drift_calibration`'s.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from scipy.spatial import distance

from benchmarks import synthetic
from log_processor.evaluate.drift_thresholds import fit_thresholds
from log_processor.evaluate.evaluation import evaluate
from log_processor.evaluate.reference import prepare_reference
from log_processor.evaluate.reference import drift_thresholds_key, load_drift_thresholds
from log_processor.tasks import binary
from log_processor.columns import SCORE, TARGET
from tests.test_drift_calibration import MONITOR, fresh, reference_frame  # noqa: F401 (fixtures)

ALPHA = MONITOR.drift.alpha


@pytest.fixture(scope="module")
def reference(reference_frame):  # noqa: F811
    prepared = prepare_reference(reference_frame, MONITOR, model_name="m", model_version="1", version="1",
                                 sha256="t" * 64)
    kinds = {f.name: f.type for f in MONITOR.features}
    return dataclasses.replace(prepared, drift_thresholds=fit_thresholds(reference_frame, kinds, SCORE, ALPHA,
                                                               target=(TARGET, binary.TASK.target_kind)))


def labelled(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(target=frame["target"].astype(float))


def with_positive_share(frame: pd.DataFrame, share: float, rows: int, seed: int) -> pd.DataFrame:
    """`rows` rows of `frame` whose realized labels are positive in exactly `share` of them."""
    rng = np.random.default_rng(seed)
    pos, neg = frame[frame["target"] == 1], frame[frame["target"] == 0]
    k = round(share * rows)
    picked = pd.concat([pos.iloc[rng.choice(len(pos), k)], neg.iloc[rng.choice(len(neg), rows - k)]])
    return labelled(picked.sample(frac=1.0, random_state=seed).reset_index(drop=True))


def test_unshifted_labels_give_no_target_drift_and_a_moved_share_does(reference, reference_frame, fresh):  # noqa: F811
    quiet = evaluate(reference, labelled(fresh.iloc[:1000]), MONITOR).target_drift
    share = float(reference_frame["target"].mean())
    loud = evaluate(reference, with_positive_share(fresh, share - 0.10, 1000, 5), MONITOR).target_drift
    assert quiet.column == loud.column == MONITOR.target == "target.trip_completed"
    assert quiet.method == "jensenshannon" and not quiet.detected and quiet.p_value > ALPHA
    assert loud.detected and loud.score >= loud.threshold and loud.p_value <= ALPHA
    # the threshold is the calibrated one for 1 000 labelled rows, and shrinks with more
    target_null = reference.drift_thresholds.target
    assert quiet.threshold == target_null.threshold(1000, ALPHA) > target_null.threshold(10_000, ALPHA) > 0


def test_the_score_is_evidentlys_jensen_shannon_distance_of_the_class_shares(reference, reference_frame, fresh):  # noqa: F811
    window = with_positive_share(fresh, 0.6, 500, 11)
    ev = evaluate(reference, window, MONITOR).target_drift
    ref_share = float(reference_frame["target"].mean())
    expected = distance.jensenshannon([1 - ref_share, ref_share], [0.4, 0.6])
    assert ev.score == pytest.approx(expected, rel=1e-6)


def test_only_labelled_rows_count_and_too_few_give_no_verdict(reference, fresh):  # noqa: F811
    window = labelled(fresh.iloc[:1000])
    window.loc[:959, "target"] = np.nan                         # 40 labelled < min_labelled_rows (50 here)
    ev = evaluate(reference, window, MONITOR)
    assert ev.target_drift is None and ev.quality == {}
    window = labelled(fresh.iloc[:1000])
    window.loc[:799, "target"] = np.nan                         # 200 labelled: the threshold is for 200 rows
    ev = evaluate(reference, window, MONITOR)
    assert ev.target_drift.threshold == reference.drift_thresholds.target.threshold(200, ALPHA)


def test_unshifted_100_row_label_windows_almost_never_alarm(reference, reference_frame, fresh):  # noqa: F811
    """300 windows of 100 labelled rows: at alpha 0.01, 3 expected; more than 9 would be p < 0.001."""
    ref_share = float(reference_frame["target"].mean())
    threshold = reference.drift_thresholds.target.threshold(100, ALPHA)
    rng = np.random.default_rng(17)
    targets = fresh["target"].to_numpy()
    alarms = 0
    for _ in range(300):
        share = targets[rng.choice(len(targets), 100, replace=False)].mean()
        alarms += distance.jensenshannon([1 - ref_share, ref_share], [1 - share, share]) >= threshold
    assert alarms <= 9, alarms


def test_the_target_null_is_cached_with_the_features(tmp_path, reference):
    cache = tmp_path / "reference.parquet.drift_thresholds.npz"
    first = load_drift_thresholds(MONITOR, reference, cache)
    again = load_drift_thresholds(MONITOR, reference, cache)
    assert first.target is not None and np.array_equal(again.target.draws, first.target.draws)
    assert "target:jensenshannon" in drift_thresholds_key(MONITOR, reference)
    unlabelled = dataclasses.replace(reference, frame=reference.frame.assign(target=np.nan), sha256="u" * 64)
    assert load_drift_thresholds(MONITOR, unlabelled, tmp_path / "other.npz").target is None


def test_below_the_calibrations_smallest_size_there_is_quality_but_no_target_verdict(reference, fresh):  # noqa: F811
    monitor = dataclasses.replace(MONITOR, min_labelled_rows=30)
    window = labelled(fresh.iloc[:1000])
    window.loc[:959, "target"] = np.nan                         # 40 labelled: below the 50 the null starts at
    ev = evaluate(reference, window, monitor)
    assert ev.quality and ev.target_drift is None
