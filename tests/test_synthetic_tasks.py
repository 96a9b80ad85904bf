"""benchmarks/synthetic.py's regression (trip_duration) and multi-class (trip_type) generators: the
contract's event and reference shapes (/work/notes/issue20_contract.md, docs/events.md), pure functions
of the seed, and a shifted variant that the new alerts see while the unshifted one stays quiet."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from sklearn.metrics import f1_score

from benchmarks import synthetic
from serving import data

START = datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc)
END = START + timedelta(minutes=10)
FEATURES = list(data.FEATURE_COLUMNS)


def test_reference_frames_have_the_contract_s_columns():
    regression = synthetic.regression_reference_frame(500)
    assert list(regression.columns) == [*FEATURES, "prediction", "target"]
    assert regression[["prediction", "target"]].dtypes.map(lambda t: t.kind).tolist() == ["f", "f"]
    multiclass = synthetic.multiclass_reference_frame(500)
    assert list(multiclass.columns) == [*FEATURES, "prediction", "score__short", "score__medium",
                                        "score__long", "target"]
    assert set(multiclass["prediction"]) | set(multiclass["target"]) <= set(synthetic.CLASSES)
    assert len(regression) == len(multiclass) == 500


@pytest.mark.parametrize("make", [synthetic.regression_rows, synthetic.multiclass_rows])
def test_rows_are_a_pure_function_of_the_seed(make):
    same = make("normal", 700, 5), make("normal", 700, 5)
    assert same[0].equals(same[1])
    assert not make("normal", 700, 6)["target"].equals(same[0]["target"])


@pytest.mark.parametrize("task, make", [("regression", synthetic.regression_rows),
                                        ("multiclass_classification", synthetic.multiclass_rows)])
def test_events_are_a_pure_function_of_the_seed_ids_included(task, make):
    rows = make("normal", 50, 1)
    first = list(synthetic.task_events(rows, task, START, END, feedback_share=0.5, seed=3))
    again = list(synthetic.task_events(rows, task, START, END, feedback_share=0.5, seed=3))
    assert first == again
    ids = [e["event"]["id"] for e in first]
    assert len(set(ids)) == len(ids)
    other = list(synthetic.task_events(rows, task, START, END, feedback_share=0.5, seed=4))
    assert not {e["event"]["id"] for e in other} & set(ids)


def test_regression_events_carry_prediction_value_and_target_duration_minutes():
    rows = synthetic.regression_rows("normal", 40, 2)
    events = list(synthetic.task_events(rows, "regression", START, END, feedback_share=1.0, seed=0))
    predictions = [e for e in events if e["event"]["dataset"] == "ml.prediction"]
    feedback = [e for e in events if e["event"]["dataset"] == "ml.feedback"]
    assert len(predictions) == len(feedback) == 40
    assert {e["model"]["name"] for e in events} == {"trip_duration"}
    for event, row in zip(predictions, rows.itertuples()):
        assert event["prediction"] == {"driver_id": row.driver_id, "value": pytest.approx(row.prediction)}
        assert set(event["features"]) == set(FEATURES)
        assert START <= datetime.fromisoformat(event["@timestamp"].replace("Z", "+00:00")) < END
    by_request = {e["request_id"]: e for e in predictions}
    for event, row in zip(feedback, rows.itertuples()):
        assert event["target"] == {"duration_minutes": pytest.approx(row.target)}
        assert event["request_id"] in by_request
    assert all(np.isfinite(rows[["prediction", "target"]]).all()) and (rows["target"] > 0).all()


@pytest.mark.parametrize("with_scores", [True, False])
def test_multiclass_events_carry_class_scores_in_the_classes_order(with_scores):
    rows = synthetic.multiclass_rows("normal", 60, 2)
    events = list(synthetic.task_events(rows, "multiclass_classification", START, END, seed=0,
                                        with_scores=with_scores))
    predictions = [e for e in events if e["event"]["dataset"] == "ml.prediction"]
    assert {e["model"]["name"] for e in events} == {"trip_type"}
    for event, row in zip(predictions, rows.to_dict("records")):
        assert event["prediction"]["class"] == row["prediction"]
        if with_scores:
            scores = event["prediction"]["class_scores"]
            assert scores == pytest.approx([row[f"score__{c}"] for c in synthetic.CLASSES])
            assert synthetic.CLASSES[int(np.argmax(scores))] == row["prediction"]
        else:
            assert "class_scores" not in event["prediction"]
    targets = [e["target"] for e in events if e["event"]["dataset"] == "ml.feedback"]
    assert [t["class"] for t in targets] == rows["target"].tolist()


def test_feedback_share_labels_that_share_of_the_predictions():
    rows = synthetic.regression_rows("normal", 2000, 3)
    events = list(synthetic.task_events(rows, "regression", START, END, feedback_share=0.3, seed=1))
    labelled = sum(e["event"]["dataset"] == "ml.feedback" for e in events)
    assert 0.26 < labelled / 2000 < 0.34


def test_an_unknown_task_is_refused():
    with pytest.raises(ValueError, match="binary_classification"):
        list(synthetic.task_events(synthetic.regression_rows("normal", 5, 0), "binary_classification", START, END))


def test_class_scores_are_calibrated_probabilities_of_the_realized_class():
    rows = synthetic.multiclass_rows("normal", 20_000, 8)
    scores = rows[[f"score__{c}" for c in synthetic.CLASSES]].to_numpy()
    assert np.allclose(scores.sum(axis=1), 1.0) and (scores >= 0).all()
    for i, name in enumerate(synthetic.CLASSES):
        assert scores[:, i].mean() == pytest.approx((rows["target"] == name).mean(), abs=0.02), name
        assert 0.15 < (rows["target"] == name).mean() < 0.6, name       # every class is common


def test_the_shifted_regression_fires_the_mae_ratio_and_the_unshifted_one_does_not():
    reference = synthetic.regression_reference_frame()
    mae = lambda f: float(np.abs(f["prediction"] - f["target"]).mean())  # noqa: E731
    normal, drift = synthetic.regression_rows("normal", 2000, 41), synthetic.regression_rows("drift", 2000, 41)
    assert mae(normal) / mae(reference) < 1.15
    assert mae(drift) / mae(reference) > 1.5                        # RegressionQualityDegraded's ratio
    assert drift["target"].mean() > normal["target"].mean() + 0.5 * reference["target"].std()   # target drift
    assert (drift["prediction"] - drift["target"]).mean() < -1.0    # the concept change: predictions too short
    for feature in ("conv_rate", "acc_rate"):
        assert drift[feature].mean() < normal[feature].mean() - 0.1


def test_the_shifted_multiclass_drops_macro_f1_under_the_alert_and_the_unshifted_one_stays_above():
    f1 = lambda f: f1_score(f["target"], f["prediction"], average="macro")  # noqa: E731
    assert f1(synthetic.multiclass_reference_frame()) > 0.78
    assert f1(synthetic.multiclass_rows("normal", 2000, 42)) > 0.78       # ModelQualityDegraded: 0.75
    drift = synthetic.multiclass_rows("drift", 2000, 42)
    assert f1(drift) < 0.7
    assert (drift["target"] == "long").mean() > 0.6                        # the class shares moved
