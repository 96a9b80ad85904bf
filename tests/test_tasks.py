"""Per-task evaluation through the whole `evaluate`: regression and multi-class quality against
scikit-learn / numpy, the probabilistic family, the prediction-drift column each task uses, and target
drift of a numerical (regression) and a multi-class target, calibrated like the features."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as sk

from log_processor.evaluate.evaluation import evaluate
from log_processor.evaluate.reference import prepare_reference
from log_processor.monitors import load_monitors
from log_processor.evaluate.reference import drift_thresholds_key, load_drift_thresholds
from tests import task_data as data


def prepared(tmp_path_factory, yaml_text: str, frame: pd.DataFrame):
    tmp = tmp_path_factory.mktemp("task")
    (monitor,) = load_monitors(data.write_monitor(tmp, yaml_text, frame))
    reference = prepare_reference(frame, monitor, model_name="m", model_version="1", version="1", sha256="r" * 64)
    return monitor, dataclasses.replace(reference, drift_thresholds=load_drift_thresholds(monitor, reference, None))


@pytest.fixture(scope="module")
def regression(tmp_path_factory):
    return prepared(tmp_path_factory, data.REGRESSION_YAML, data.regression_rows(3000, seed=1))


@pytest.fixture(scope="module")
def multiclass(tmp_path_factory):
    return prepared(tmp_path_factory, data.MULTICLASS_YAML, data.multiclass_rows(3000, seed=1))


def test_regression_quality_is_evidentlys_and_matches_numpy(regression):
    monitor, reference = regression
    window = data.regression_rows(1000, seed=7, error_scale=2.0)
    ev = evaluate(reference, window, monitor)
    y, p = window["target"].to_numpy(), window["prediction"].to_numpy()
    error = p - y
    expected = {"mae": np.mean(np.abs(error)), "rmse": np.sqrt(np.mean(error ** 2)),
                "mape": np.mean(np.abs(error / y)), "r2": sk.r2_score(y, p), "mean_error": np.mean(error),
                "abs_error_p50": np.quantile(np.abs(error), 0.5), "abs_error_p90": np.quantile(np.abs(error), 0.9)}
    assert ev.task == "regression" and set(ev.quality) == set(expected)
    for name, value in expected.items():
        assert ev.quality[name] == pytest.approx(value, rel=1e-9), name
    # the reference's own quality, computed once: errors of sd 3 there, of sd 6 in this window
    ref = reference.quality_values.metrics
    assert set(ref) == set(expected) and ev.quality["mae"] > 1.5 * ref["mae"]
    assert ev.class_share == {} and ev.confusion == {} and ev.probabilistic == {}


def test_regression_prediction_drift_is_the_predicted_value(regression):
    monitor, reference = regression
    quiet = evaluate(reference, data.regression_rows(1000, seed=8), monitor)
    assert quiet.prediction_drift.column == "prediction.value" and quiet.prediction_drift.method == "wasserstein"
    assert not quiet.prediction_drift.detected and not quiet.dataset_drift
    shifted = data.regression_rows(1000, seed=9)
    shifted["prediction"] += 4.0
    assert evaluate(reference, shifted, monitor).prediction_drift.detected
    assert "prediction" in reference.drift_thresholds.__dict__ and "task:regression" in drift_thresholds_key(monitor, reference)


def test_regression_target_drift_is_numerical_and_calibrated(regression):
    monitor, reference = regression
    sd = float(reference.frame["target"].std())
    quiet = evaluate(reference, data.regression_rows(1000, seed=10), monitor).target_drift
    loud = evaluate(reference, data.regression_rows(1000, seed=11, target_shift=0.5 * sd), monitor).target_drift
    assert quiet.column == loud.column == "target.duration_minutes" and quiet.method == "wasserstein"
    assert not quiet.detected and quiet.p_value > 0.01
    assert loud.detected and loud.p_value <= 0.01
    null = reference.drift_thresholds.target
    assert quiet.threshold == pytest.approx(null.threshold(1000, 0.01))
    # labelled rows below the calibration's smallest size (50): quality, but no target verdict
    few = data.regression_rows(300, seed=12)
    few.loc[45:, "target"] = np.nan
    ev = evaluate(reference, few, monitor)
    assert ev.evaluated_labelled_rows == 45 and ev.quality and ev.target_drift is None


def test_multiclass_quality_matches_sklearn_macro_and_per_class(multiclass):
    monitor, reference = multiclass
    window = data.multiclass_rows(1200, seed=20)
    ev = evaluate(reference, window, monitor)
    y, p = window["target"], window["prediction"]
    assert ev.quality == pytest.approx({"accuracy": sk.accuracy_score(y, p),
                                        "precision_macro": sk.precision_score(y, p, average="macro"),
                                        "recall_macro": sk.recall_score(y, p, average="macro"),
                                        "f1_macro": sk.f1_score(y, p, average="macro")})
    f1 = sk.f1_score(y, p, average=None, labels=list(data.CLASSES))
    assert {c: ev.class_quality[(c, "f1")] for c in data.CLASSES} == pytest.approx(dict(zip(data.CLASSES, f1)))
    assert {k for k, _ in ev.class_quality} == set(data.CLASSES)
    assert sum(v for (source, _), v in ev.class_share.items() if source == "prediction") == pytest.approx(1)
    assert ev.confusion[("long", "short")] == int(((y == "long") & (p == "short")).sum())
    assert set(reference.quality_values.metrics) == set(ev.quality)


def test_multiclass_probabilistic_quality(multiclass):
    monitor, reference = multiclass
    window = data.multiclass_rows(1200, seed=21)
    ev = evaluate(reference, window, monitor)
    scores = window[[f"score__{c}" for c in data.CLASSES]].to_numpy()
    onehot = (window["target"].to_numpy()[:, None] == np.array(data.CLASSES)).astype(float)
    order = np.argsort(data.CLASSES)        # sklearn's label order: sorted
    labels = sorted(data.CLASSES)
    assert ev.probabilistic["roc_auc"] == pytest.approx(
        sk.roc_auc_score(window["target"], scores[:, order], multi_class="ovr", labels=labels))
    assert ev.probabilistic["log_loss"] == pytest.approx(sk.log_loss(window["target"], scores[:, order], labels=labels))
    assert ev.probabilistic["brier"] == pytest.approx(np.mean(np.sum((scores - onehot) ** 2, axis=1)))
    top, hit = scores.max(axis=1), onehot[np.arange(len(scores)), scores.argmax(axis=1)]
    b = np.minimum((top * 10).astype(int), 9) == 5
    assert ev.calibration_curve["5"] == pytest.approx((top[b].mean(), hit[b].mean()))
    assert 0 <= ev.probabilistic["calibration_error"] < 0.1     # scores drawn as the true probabilities
    assert set(reference.quality_values.probabilistic) == {"roc_auc", "log_loss", "brier", "calibration_error"}


def test_multiclass_prediction_and_target_drift_are_categorical(multiclass):
    monitor, reference = multiclass
    quiet = evaluate(reference, data.multiclass_rows(1000, seed=22), monitor)
    assert quiet.prediction_drift.column == "prediction.class" and quiet.prediction_drift.method == "jensenshannon"
    assert not quiet.prediction_drift.detected and not quiet.target_drift.detected
    assert quiet.target_drift.method == "jensenshannon" and quiet.target_drift.column == "target.class"
    shares = reference.frame["target"].value_counts(normalize=True).reindex(data.CLASSES).to_numpy()
    moved = tuple(np.array(shares) + np.array([0.10, -0.05, -0.05]))
    loud = evaluate(reference, data.multiclass_rows(1000, seed=23, class_probs=moved), monitor).target_drift
    assert loud.detected and loud.p_value <= 0.01


def test_multiclass_without_scores_has_no_probabilistic_family(tmp_path_factory):
    text = data.MULTICLASS_YAML.replace(", scores: prediction.class_scores", "")
    frame = data.multiclass_rows(1500, seed=3).drop(columns=[f"score__{c}" for c in data.CLASSES])
    monitor, reference = prepared(tmp_path_factory, text, frame)
    ev = evaluate(reference, data.multiclass_rows(600, seed=24), monitor)
    assert ev.quality["f1_macro"] > 0 and ev.probabilistic == {} and ev.calibration_curve == {}


def test_a_multiclass_reference_with_a_class_outside_classes_is_refused(tmp_path_factory):
    frame = data.multiclass_rows(500, seed=4)
    frame.loc[3, "target"] = "huge"
    with pytest.raises(ValueError, match=r"reference column 'target' has classes \['huge'\]"):
        prepared(tmp_path_factory, data.MULTICLASS_YAML, frame)


BINARY_YAML = data.REGRESSION_YAML.replace("    task: regression\n", "").replace(
    "{value: prediction.value}", "{label: prediction.label, score: prediction.score}").replace(
    "target.duration_minutes", "target.trip_completed").replace("    quality: {alert_ratio: 1.5}\n", "")


def binary_rows(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = data.features(n, rng)
    score = 1 / (1 + np.exp(-(4 * x["conv_rate"].to_numpy() - 2.5)))
    return x.assign(prediction=(score >= 0.5).astype(int), prediction_score=score,
                    target=(rng.random(n) < score).astype(int))


def test_binary_quality_is_unchanged_and_gains_the_probabilistic_family(tmp_path_factory):
    monitor, reference = prepared(tmp_path_factory, BINARY_YAML, binary_rows(3000, seed=5))
    window = binary_rows(1000, seed=40)
    ev = evaluate(reference, window, monitor)
    y, p, s = window["target"], window["prediction"], window["prediction_score"].to_numpy()
    assert ev.task == "binary_classification" and ev.prediction_drift.column == "prediction.score"
    assert ev.quality == pytest.approx({"accuracy": sk.accuracy_score(y, p), "precision": sk.precision_score(y, p),
                                        "recall": sk.recall_score(y, p), "f1": sk.f1_score(y, p)})
    assert ev.probabilistic == pytest.approx({"roc_auc": sk.roc_auc_score(y, s), "log_loss": sk.log_loss(y, s),
                                              "brier": sk.brier_score_loss(y, s),
                                              "calibration_error": ev.probabilistic["calibration_error"]})
    assert ev.probabilistic["calibration_error"] < 0.08 and len(ev.calibration_curve) >= 5
    assert ev.class_quality == {} and set(ev.class_share) == {(src, c) for src in ("prediction", "target") for c in "01"}
    one_class = window[window["target"] == 1]
    assert "roc_auc" not in evaluate(reference, one_class, monitor).probabilistic     # undefined: absent, no error


def test_a_window_without_verdict_removes_the_tasks_series_and_keeps_the_references(regression):
    from collections import Counter

    from log_processor.export.metrics import Exporter
    from log_processor.read.window import DELAY, Window
    from tests.test_log_processor_store import samples

    monitor, reference = regression
    frame = data.regression_rows(600, seed=50).assign(**{DELAY: 1.0})
    window = Window(start=0.0, end=900.0, frame=frame, rejected=Counter())
    exporter = Exporter([monitor.name])
    exporter.reference(monitor, reference)
    exporter.window(monitor, window, reference.rows, evaluate(reference, frame, monitor))
    assert len(samples(exporter, "mlmon_regression_quality")) == 7
    assert samples(exporter, "mlmon_target_drift_score")
    exporter.window(monitor, window, reference.rows, None)
    assert samples(exporter, "mlmon_regression_quality") == {} and samples(exporter, "mlmon_target_drift_score") == {}
    assert len(samples(exporter, "mlmon_reference_regression_quality")) == 7
    assert samples(exporter, "mlmon_monitor_task") == {(("task", "regression"),): 1.0}


WINDOW_FACTS = {"mlmon_window_duplicated_ids", "mlmon_window_start_timestamp_seconds", "mlmon_label_coverage_ratio",
                "mlmon_window_end_timestamp_seconds", "mlmon_verdict_available", "mlmon_window_rows",
                "mlmon_label_delay_seconds", "mlmon_missing_values_share", "mlmon_window_sampling_rate"}


@pytest.mark.parametrize("kind", ["regression", "multiclass"])
def test_every_series_of_a_verdict_goes_with_it_without_a_list_to_clear(kind, request):
    """The exporter renders each monitor's latest samples: once a window has no verdict, only its
    facts and the reference's series remain, whichever gauges the task declared."""
    from collections import Counter

    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from log_processor.export.metrics import Exporter, families
    from log_processor.read.window import DELAY, Window
    from log_processor.tasks import task_for

    monitor, reference = request.getfixturevalue(kind)
    rows = data.regression_rows(600, seed=51) if kind == "regression" else data.multiclass_rows(600, seed=51)
    frame = rows.assign(**{DELAY: 1.0})
    window = Window(start=0.0, end=900.0, frame=frame, rejected=Counter())
    exporter = Exporter([monitor.name])

    def shown() -> set[str]:
        text = generate_latest(exporter.registry).decode()
        return {f.name for f in text_string_to_metric_families(text)
                if any(s.labels.get("monitor") == monitor.name for s in f.samples)}

    exporter.reference(monitor, reference)
    exporter.window(monitor, window, reference.rows, evaluate(reference, frame, monitor))
    with_verdict = shown()
    own = {f.name for f in task_for(monitor).families}
    assert own <= with_verdict            # every gauge the task declares is filled by a window and its reference
    assert {f.name for f in families()} >= own
    exporter.window(monitor, window, reference.rows, None)
    reference_only = {"mlmon_info", "mlmon_monitor_task", "mlmon_reference_probabilistic_quality",
                      *(f for f in own if "reference" in f or "alert_ratio" in f)}
    counters = ("mlmon_evaluations", "mlmon_store_errors", "mlmon_rejected_documents")
    assert {f for f in shown() if not f.startswith(counters)} == (WINDOW_FACTS | reference_only) & with_verdict


def test_every_exported_family_is_in_the_metric_contract():
    from log_processor.export.metrics import families
    from tests.conftest import REPO_ROOT

    contract = (REPO_ROOT / "docs" / "metrics.md").read_text()
    missing = [f.name for f in families() if f"`{f.name}`" not in contract]
    assert missing == []
