"""Pure parts: malformed documents counted by reason, the label join, latest-N, sampling, and Evidently's verdicts."""
import dataclasses
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from evidently import DataDefinition, Dataset, Report
from evidently.metrics import DriftedColumnsCount

from common.schema import feedback_event, format_timestamp, prediction_event
from benchmarks import synthetic
from log_processor.evaluate.drift_thresholds import fit_thresholds
from log_processor.evaluate.estimation import fit_calibration
from log_processor.evaluate.evaluation import evaluate
from log_processor.evaluate.reference import prepare_reference
from log_processor.monitors import load_monitors
from log_processor.export.reports import Reports
from log_processor.columns import KEY_HASH, RANK, SCORE, numbers
from log_processor.read.parse import _timestamps, combine, key_hashes, parse_page, parse_page_for, sample_ranks
from log_processor.read.window import assemble, sample
from serving.data import DRIFT_SPEC
from tests.conftest import REPO_ROOT

MONITOR = dataclasses.replace(load_monitors(REPO_ROOT / "log_processor/monitors.yaml")[0], window_last=None,
                              min_labelled_rows=50)
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def pred(rid, *, at=0.0, model="driver_ranker", **features):
    values = {"conv_rate": 0.5, "acc_rate": 0.7, "avg_daily_trips": 300, **features}
    doc = prediction_event(model_name=model, model_version="1", request_id=rid,
                           features={k: 0 for k in ("conv_rate", "acc_rate", "avg_daily_trips")},
                           driver_id=1, score=0.8, label=1, latency_ms=1, timestamp=T0 + timedelta(seconds=at))
    doc["features"] = {k: v for k, v in values.items() if v is not ...}
    return doc


def fb(rid, *, at, completed=1):
    return feedback_event(model_name="driver_ranker", model_version="1", request_id=rid, trip_completed=completed,
                          timestamp=T0 + timedelta(seconds=at))


def rids(*names):
    """Window frames hold the join key as its 64-bit hash (validate.KEY_HASH)."""
    return list(key_hashes(np.array(names, dtype=object)))


def window_of(docs, monitor=MONITOR, start=-1.0, end=3600.0):
    chunk = combine([parse_page(docs, monitor)], monitor)
    return assemble(chunk, monitor, T0.timestamp() + start, T0.timestamp() + end)


def test_malformed_documents_are_counted_by_reason_and_the_rest_of_the_page_survives():
    no_key = pred("x")
    del no_key["request_id"]
    unknown = pred("u")
    unknown["event"]["dataset"] = "ml.mystery"
    no_score = pred("s")
    del no_score["prediction"]["score"]
    bad_target = fb("a", at=3)
    bad_target["target"]["trip_completed"] = "yes"
    docs = [pred("a"), pred("b", conv_rate="0.5"), pred("c", acc_rate=float("nan")), pred("d", conv_rate=float("inf")),
            no_key, unknown, no_score, pred("e", avg_daily_trips=...), pred("f", model="other_model"),
            bad_target, {"not": "an event"}]
    w = window_of(docs)
    # "e" lacks a feature: measured as a missing value, then skipped as missing_field
    assert dict(w.rejected) == {"not_a_number": 2, "non_finite": 2, "missing_field": 3, "unknown_dataset": 2}
    assert list(w.frame[KEY_HASH]) == rids("a")              # other model: not in the window, not "rejected"
    assert w.missing_share == {"conv_rate": 0.0, "acc_rate": 0.0, "avg_daily_trips": 0.5}
    assert w.labelled == 0                                      # the malformed feedback did not label "a"


def test_a_page_parsed_for_several_monitors_gives_each_what_parsing_for_it_alone_gives():
    """A shared read computes the common columns once (validate.parse_page_for): monitors differing in
    model, features and join key still get exactly their own chunk, malformed documents included."""
    no_key = pred("x")
    del no_key["request_id"]
    odd = pred("o")
    odd["prediction"] = "a string where an object belongs"
    docs = [pred("a"), pred("b", conv_rate="0.5"), pred("f", model="other_model"), fb("a", at=3), fb("f", at=4),
            no_key, odd, {"not": "an event"}, pred("e", avg_daily_trips=...)]
    others = dataclasses.replace(MONITOR, name="other", model_name="other_model", features=MONITOR.features[:1])
    any_model = dataclasses.replace(MONITOR, name="any", model_name=None, join_key="event.id")
    monitors = [MONITOR, others, any_model, MONITOR]
    shared = parse_page_for(docs, monitors)
    for monitor, chunk in zip(monitors, shared):
        alone = parse_page(docs, monitor)
        pd.testing.assert_frame_equal(chunk.predictions, alone.predictions)
        pd.testing.assert_frame_equal(chunk.feedback, alone.feedback)
        # a document without event.id gets a random id (validate.event_hashes): compared without it
        pd.testing.assert_frame_equal(chunk.rejects.drop(columns="_eid"), alone.rejects.drop(columns="_eid"))
        assert (chunk.ingested, chunk.unstamped) == (alone.ingested, alone.unstamped)
    # driver_ranker: a and e (b's string feature, no_key, odd's string prediction rejected); other_model: f;
    # any model keyed by event.id: no_key too, and f
    assert [len(c.predictions) for c in shared] == [2, 1, 4, 2]
    assert [len(c.feedback) for c in shared] == [2, 0, 2, 2]
    assert dict(shared[0].rejected) == {"missing_field": 2, "not_a_number": 1, "unknown_dataset": 1}


def test_times_and_numbers_parse_alike_on_the_fast_path_and_the_checked_one():
    """The stack's own timestamps go through numpy, anything else through pandas: the same instant is
    the same float either way (a page with one odd value takes the checked path). Numbers likewise."""
    stamps = [format_timestamp(T0 + timedelta(milliseconds=7919 * i)) for i in range(2000)]
    fast, checked = _timestamps(stamps), _timestamps([*stamps, "not a time"])
    assert (fast == checked[:-1]).all() and np.isnan(checked[-1])
    other_form = _timestamps(["2026-03-01T12:00:00.250+00:00", "2026-02-30T00:00:00.000Z", None])
    assert other_form[0] == _timestamps(["2026-03-01T12:00:00.250Z"])[0] == pytest.approx(T0.timestamp() + 0.25)
    assert np.isnan(other_form[1:]).all()
    assert np.isnan(_timestamps(["2026-02-30T00:00:00.000Z"])).all()          # 24 characters, not a date
    values = [0.25, 3, float("inf"), float("nan")]
    plain, odd = numbers(values), numbers([*values, True])
    np.testing.assert_array_equal(plain[0], odd[0][:-1])
    assert list(plain[3]) == list(odd[3][:-1]) == [False, False, True, True]    # non-finite either way
    assert list(odd[2]) == [False] * 4 + [True]                                  # a boolean is not a number


def test_delayed_labels_are_joined_and_coverage_and_delay_are_right():
    docs = [pred(f"r{i}", at=i) for i in range(10)]
    docs += [fb(f"r{i}", at=i + 30 + i, completed=i % 2) for i in range(6)]   # delays 30..35 s
    docs += [fb("r7", at=7 + 7200)]                                          # beyond the 30 m horizon
    docs += [fb("r0", at=500, completed=1)]                                  # a second feedback: duplicate
    docs += [fb("elsewhere", at=20)]                                         # no prediction in the window
    w = window_of(docs, end=10_000)
    assert w.rows == 10 and w.labelled == 6 and w.label_coverage == pytest.approx(0.6)
    by_key = w.frame.set_index(KEY_HASH)
    assert by_key.loc[rids("r1")[0], "target"] == 1
    assert by_key.loc[rids("r0")[0], "target"] == 0                          # the first feedback wins
    assert np.isnan(by_key.loc[rids("r7")[0], "target"])
    assert w.rejected["duplicate"] == 1
    delays = w.label_delay_quantiles()
    assert delays["0.5"] == pytest.approx(32.5) and 34 < delays["0.95"] <= 35


def test_window_bounds_latest_n_and_duplicate_predictions():
    docs = [pred(f"r{i}", at=i) for i in range(20)] + [pred("r3", at=50)]
    w = window_of(docs, start=5, end=15)
    assert list(w.frame[KEY_HASH]) == rids(*(f"r{i}" for i in range(5, 16)))
    last5 = dataclasses.replace(MONITOR, window_last=5)
    w = window_of(docs, monitor=last5, start=0, end=100)
    assert list(w.frame[KEY_HASH]) == rids("r15", "r16", "r17", "r18", "r19")
    assert w.rejected["duplicate"] == 1


def test_sampling_caps_rows_uniformly_and_depends_on_the_rows_alone():
    keys = np.array([f"req-{i}" for i in range(100_000)], dtype=object)
    frame = pd.DataFrame({"x": np.arange(100_000), RANK: sample_ranks(keys, seed=1)})
    assert sample(frame, 200_000) is frame
    small = sample(frame, 10_000)
    assert len(small) == 10_000 and small["x"].is_unique
    assert small["x"].mean() == pytest.approx(49_999.5, rel=0.02)            # no part of the window favoured
    assert abs((small["x"] < 50_000).mean() - 0.5) < 0.02
    shuffled = frame.sample(frac=1.0, random_state=3)                        # the rows in another order
    assert set(sample(shuffled, 10_000)["x"]) == set(small["x"])
    other_seed = frame.assign(**{RANK: sample_ranks(keys, seed=2)})
    assert len(set(sample(other_seed, 10_000)["x"]) & set(small["x"])) < 2_000   # ~1 000 expected by chance


@pytest.fixture(scope="module")
def reference():
    """The shipped monitor's drift is calibrated on its reference (drift.alpha), and its scores
    (estimation), as the loader does."""
    frame = synthetic.reference_frame(2000, seed=101)
    prepared = prepare_reference(frame, MONITOR, model_name="driver_ranker", model_version="1", version="1",
                                 sha256="x")
    kinds = {f.name: f.type for f in MONITOR.features}
    scores = fit_calibration(frame[SCORE].to_numpy(), frame["target"].to_numpy(), frame["prediction"].to_numpy(),
                             MONITOR.estimation.calibration)
    return dataclasses.replace(prepared, drift_thresholds=fit_thresholds(frame, kinds, SCORE, MONITOR.drift.alpha),
                               score_calibration=scores)


def current(variant, n=3000, seed=7):
    rows = synthetic.chosen_rows(variant, n, seed)
    rows["target"] = rows["target"].astype(float)
    return rows


def test_normal_window_has_no_drift(reference):
    ev = evaluate(reference, current("normal"), MONITOR)
    assert not ev.dataset_drift and ev.drifted_features == ()
    assert not ev.prediction_drift.detected
    assert all(0 <= f.score < f.threshold for f in ev.feature_drift)
    assert all(f.p_value is not None and f.p_value > MONITOR.drift.alpha / 3 for f in ev.feature_drift)


def test_the_evaluation_estimates_quality_from_every_row_and_checks_it_on_the_labelled_ones(reference):
    cur = current("normal")
    cur.loc[:1999, "target"] = np.nan                                  # a third of the labels landed
    ev = evaluate(reference, cur, MONITOR)
    accuracy = ev.estimation.estimates["accuracy"]
    assert ev.estimation.rows == 3000 and accuracy.lower < accuracy.value < accuracy.upper
    assert set(ev.estimation.error) == {"accuracy", "precision", "recall", "f1", "roc_auc"}
    assert abs(ev.estimation.error["accuracy"]) < 0.05                 # the oracle's scores are calibrated
    assert ev.estimation.realized["accuracy"] == pytest.approx(ev.quality["accuracy"])   # Evidently agrees
    unmonitored = evaluate(reference, cur, dataclasses.replace(MONITOR, estimation=None))
    assert unmonitored.estimation is None


def test_drift_window_flags_exactly_the_shifted_features(reference):
    ev = evaluate(reference, current("drift"), MONITOR)
    shifted = {name for name, spec in DRIFT_SPEC.items() if name in MONITOR.feature_names and spec["drifts"]}
    assert set(ev.drifted_features) == shifted == {"conv_rate", "acc_rate"}
    assert ev.dataset_drift and ev.drifted_share == pytest.approx(2 / 3)
    assert ev.prediction_drift.detected


@pytest.mark.parametrize("drift_share", [0.3, 0.5, 0.67, 1.0])
def test_the_dataset_verdict_is_evidentlys_drifted_columns_count(reference, drift_share):
    """The verdict comes from the per-feature verdicts: Evidently's own DriftedColumnsCount, with the same
    methods and thresholds, must count the same share and fail its test exactly when the verdict is drift."""
    monitor = dataclasses.replace(MONITOR, drift=dataclasses.replace(MONITOR.drift, drift_share=drift_share))
    mixed = pd.concat([current("normal", 1500, seed=8), current("drift", 1500, seed=9)], ignore_index=True)
    verdicts = []
    for frame in (current("normal"), current("drift"), mixed):
        ev = evaluate(reference, frame, monitor)
        count = DriftedColumnsCount(columns=list(monitor.feature_names), drift_share=drift_share,
                                    per_column_method={f.column: f.method for f in ev.feature_drift},
                                    per_column_threshold={f.column: f.threshold for f in ev.feature_drift})
        snapshot = Report([count], include_tests=True).run(
            Dataset.from_pandas(frame[list(monitor.feature_names)], data_definition=DataDefinition(
                numerical_columns=list(monitor.feature_names))), reference.drift)
        data = snapshot.dict()
        (value,) = [m["value"] for m in data["metrics"]]
        (test,) = data["tests"]
        assert ev.drifted_share == pytest.approx(value["share"])
        assert ev.dataset_drift == str(test["status"]).upper().endswith("FAIL")
        verdicts.append(ev.dataset_drift)
    # two of three features drift in the drift window: drift_share decides, and 0.67 is just above 2/3
    assert verdicts[:2] == [False, drift_share <= 2 / 3]


def test_quality_uses_the_logged_labels_on_labelled_rows_only(reference):
    cur = current("normal")
    cur.loc[:999, "target"] = np.nan
    cur["prediction"] = 1 - cur["prediction"]      # labels that disagree with score >= 0.5
    ev = evaluate(reference, cur, MONITOR)
    labelled = cur[cur["target"].notna()]
    assert ev.evaluated_labelled_rows == 2000
    assert ev.quality["accuracy"] == pytest.approx((labelled["target"] == labelled["prediction"]).mean())
    tp = ((labelled["target"] == 1) & (labelled["prediction"] == 1)).sum()
    assert ev.quality["precision"] == pytest.approx(tp / (labelled["prediction"] == 1).sum())
    assert ev.confusion[("1", "1")] == tp and sum(ev.confusion.values()) == 2000
    assert ev.class_share[("prediction", "1")] == pytest.approx((cur["prediction"] == 1).mean())
    reports = Reports(ev.snapshots)
    assert "<html" in reports.html("drift").lower() and "<html" in reports.html("quality").lower()


def test_the_reports_are_rendered_on_the_first_request_only(reference):
    ev = evaluate(reference, current("normal"), MONITOR)
    reports = Reports(ev.snapshots)
    page = reports.html("quality")
    assert "<html" in page.lower() and reports.html("quality") is page     # the same string: cached
    with pytest.raises(ValueError, match="everything"):
        Reports({"everything": None})


def test_too_few_labels_gives_no_quality(reference):
    cur = current("normal")
    cur["target"] = np.nan
    cur.loc[:29, "target"] = 1.0
    ev = evaluate(reference, cur, MONITOR)
    reports = Reports(ev.snapshots)
    assert ev.quality == {} and not reports.has("quality") and reports.html("quality") is None


def test_rows_missing_a_feature_are_measured_then_kept_out_of_the_evaluation():
    docs = [pred(f"r{i}", at=i, **({"acc_rate": None} if i % 10 == 0 else {})) for i in range(200)]
    w = window_of(docs)
    assert w.missing_share["acc_rate"] == pytest.approx(0.1) and w.missing_share["conv_rate"] == 0
    assert w.rejected["missing_field"] == 20 and w.rows == 180
    assert not w.frame[list(MONITOR.feature_names)].isna().any().any()
