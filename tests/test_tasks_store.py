"""The regression and multi-class monitors end to end on a real store (osmem-server and OpenSearch):
events in the store, a reference Parquet built here, one cycle of the runner, the gauges the exporter
serves and the summary document; wrong documents are counted by reason and never fail the cycle."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from elasticsearch import helpers

from common.store import StoreSettings
from log_processor.export.metrics import Exporter
from log_processor.monitors import load_monitors
from log_processor.runner import MonitorRunner
from log_processor.read.store import EventStore
from tests import task_data as data
from tests.test_log_processor_store import one, samples


def load(es, docs):
    ok, errors = helpers.bulk(es, data.bulk_actions(docs), refresh=True, raise_on_error=False)
    assert errors == []
    return ok


def runner_for(url, monitor):
    exporter = Exporter([monitor.name])
    store = EventStore(StoreSettings(url=url, request_timeout=5), page_size=500)
    return MonitorRunner(monitor, store, exporter, backoff_max=1.0), exporter


def span(minutes=(10, 1)):
    at = datetime.now(timezone.utc)
    return at - timedelta(minutes=minutes[0]), at - timedelta(minutes=minutes[1])


def monitor_over(tmp_path_factory, yaml_text, reference):
    """The monitor of `yaml_text` with `reference` written as its Parquet (calibrated on its first cycle)."""
    path = data.write_monitor(tmp_path_factory.mktemp("monitor"), yaml_text, reference)
    return load_monitors(path, interval_override=0.5)[0]


@pytest.fixture(scope="module")
def regression_monitor(tmp_path_factory):
    return monitor_over(tmp_path_factory, data.REGRESSION_YAML, data.regression_rows(3000, seed=1))


@pytest.fixture(scope="module")
def multiclass_monitor(tmp_path_factory):
    return monitor_over(tmp_path_factory, data.MULTICLASS_YAML, data.multiclass_rows(3000, seed=1))


def test_regression_cycle_exports_quality_target_drift_and_a_summary(es, store_url, regression_monitor):
    sd = float(data.regression_rows(3000, seed=1)["target"].std())
    rows = data.regression_rows(800, seed=30, target_shift=0.6 * sd, error_scale=2.0)
    load(es, data.regression_events(rows, *span(), feedback_share=0.75, seed=30))
    runner, exporter = runner_for(store_url, regression_monitor)
    assert runner.run_once() == "ok", runner.state.last_error
    assert one(exporter, "mlmon_monitor_task", task="regression") == 1
    labelled = one(exporter, "mlmon_window_rows", kind="labelled")
    assert one(exporter, "mlmon_window_rows", kind="current") == 800 and 540 < labelled < 660
    quality = {dict(k)["metric"]: v for k, v in samples(exporter, "mlmon_regression_quality").items()}
    reference = {dict(k)["metric"]: v for k, v in samples(exporter, "mlmon_reference_regression_quality").items()}
    metrics = {"mae", "rmse", "mape", "r2", "mean_error", "abs_error_p50", "abs_error_p90"}
    assert set(quality) == set(reference) == metrics
    assert quality["mae"] > 1.5 * reference["mae"] and quality["mean_error"] < -0.4 * sd   # realized ran long
    assert one(exporter, "mlmon_regression_quality_alert_ratio") == 1.5
    assert samples(exporter, "mlmon_classification_quality") == {}
    target = dict(column="target.duration_minutes", method="wasserstein")
    assert one(exporter, "mlmon_target_drift_detected", **target) == 1
    assert one(exporter, "mlmon_target_drift_p_value", **target) <= 0.01
    assert one(exporter, "mlmon_prediction_drift_detected", column="prediction.value", method="wasserstein") == 0
    assert one(exporter, "mlmon_dataset_drift") == 0
    es.indices.refresh(index="ml-monitoring-*")
    (hit,) = es.search(index="ml-monitoring-*")["hits"]["hits"]
    doc = hit["_source"]
    assert doc["task"] == "regression" and doc["quality"]["mae"] == pytest.approx(quality["mae"])
    assert doc["reference_quality"]["mae"] == pytest.approx(reference["mae"])
    assert doc["target_drift"]["detected"] is True and doc["predicted_positive_share"] is None


def test_wrong_regression_documents_are_counted_by_reason(es, store_url, regression_monitor):
    docs = list(data.regression_events(data.regression_rows(400, seed=31), *span(), seed=31))
    feedback = [i for i, d in enumerate(docs) if d["event"]["dataset"] == "ml.feedback"]
    for i in feedback[:6]:      # a numeric string passes the float mapping (coerced) and stays a string in _source
        docs[i]["target"]["duration_minutes"] = "12.5"
    for i in feedback[6:9]:
        del docs[i]["target"]["duration_minutes"]
    predictions = [i for i, d in enumerate(docs) if d["event"]["dataset"] == "ml.prediction"]
    for i in predictions[:4]:
        docs[i]["prediction"]["value"] = "7"
    load(es, docs)
    runner, exporter = runner_for(store_url, regression_monitor)
    assert runner.run_once() == "ok", runner.state.last_error
    assert one(exporter, "mlmon_rejected_documents_total", reason="target_not_finite") == 6
    assert one(exporter, "mlmon_rejected_documents_total", reason="missing_field") == 3
    assert one(exporter, "mlmon_rejected_documents_total", reason="not_a_number") == 4
    assert one(exporter, "mlmon_window_rows", kind="current") == 396


def test_multiclass_cycle_and_its_wrong_documents(es, store_url, multiclass_monitor):
    docs = list(data.multiclass_events(data.multiclass_rows(600, seed=32), *span(), seed=32))
    predictions = [d for d in docs if d["event"]["dataset"] == "ml.prediction"]
    feedback = [d for d in docs if d["event"]["dataset"] == "ml.feedback"]
    for d in predictions[:5]:
        d["prediction"]["class"] = "huge"
    for d in predictions[5:8]:
        d["prediction"]["class_scores"] = d["prediction"]["class_scores"][:2]
    for d in feedback[100:104]:
        d["target"]["class"] = "tiny"
    load(es, docs)
    runner, exporter = runner_for(store_url, multiclass_monitor)
    assert runner.run_once() == "ok", runner.state.last_error
    assert one(exporter, "mlmon_rejected_documents_total", reason="class_unknown") == 5 + 4
    assert one(exporter, "mlmon_rejected_documents_total", reason="scores_length") == 3
    assert one(exporter, "mlmon_window_rows", kind="current") == 592
    assert one(exporter, "mlmon_monitor_task", task="multiclass_classification") == 1
    quality = {dict(k)["metric"]: v for k, v in samples(exporter, "mlmon_classification_quality").items()}
    assert set(quality) == {"accuracy", "precision_macro", "recall_macro", "f1_macro"}
    per_class = samples(exporter, "mlmon_class_quality")
    assert {dict(k)["class"] for k in per_class} == set(data.CLASSES)
    probabilistic = {dict(k)["metric"] for k in samples(exporter, "mlmon_probabilistic_quality")}
    assert probabilistic == {"roc_auc", "log_loss", "brier", "calibration_error"}
    assert {dict(k)["metric"] for k in samples(exporter, "mlmon_reference_probabilistic_quality")} == probabilistic
    curve = samples(exporter, "mlmon_calibration_curve")
    assert {dict(k)["kind"] for k in curve} == {"predicted", "observed"} and len(curve) % 2 == 0
    assert one(exporter, "mlmon_class_share", source="prediction", **{"class": "short"}) is not None
    assert one(exporter, "mlmon_target_drift_detected", column="target.class", method="jensenshannon") == 0
    assert one(exporter, "mlmon_prediction_drift_detected", column="prediction.class", method="jensenshannon") == 0


def test_report_shows_the_regression_section_beside_the_reference(es, store_url, regression_monitor):
    from log_processor.app import create_app
    from log_processor.processor import Processor
    from log_processor.settings import ProcessorSettings

    load(es, data.regression_events(data.regression_rows(500, seed=33), *span(), seed=33))
    processor = Processor(ProcessorSettings(store=StoreSettings(url=store_url), write_summaries=False),
                          (regression_monitor,))
    try:
        assert processor.runners["trip_duration"].run_once() == "ok"
        client = create_app(processor=processor, start=False).test_client()
        page = client.get("/report?monitor=trip_duration").get_data(as_text=True)
        assert "<h2>Regression quality (labelled rows)</h2>" in page
        assert "<b>Regression quality</b>: mae " in page and "(reference " in page
        quality = client.get("/report?monitor=trip_duration&part=quality")
        assert quality.status_code == 200 and "MAE" in quality.get_data(as_text=True)
        target = client.get("/report?monitor=trip_duration&part=target")
        assert "<h2>Target drift (labelled rows)</h2>" in page
        assert target.status_code == 200 and "Drift in column 'target'" in target.get_data(as_text=True)
        summary = client.get("/report.json?monitor=trip_duration").json["latest"]
        assert summary["task"] == "regression" and set(summary["quality"]) >= {"mae", "rmse", "r2"}
    finally:
        processor.stop()
