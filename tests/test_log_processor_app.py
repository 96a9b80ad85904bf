"""/metrics, /healthz, /report and /report.json through Flask's test client, with a real store behind."""
import dataclasses
import time
from datetime import timedelta

import pytest
from elasticsearch import helpers
from prometheus_client.parser import text_string_to_metric_families

from benchmarks import synthetic
from log_processor.app import create_app
from log_processor.monitors import load_monitors
from log_processor.processor import Processor
from log_processor.settings import ProcessorSettings
from common.store import StoreSettings
from tests.conftest import REPO_ROOT, free_port, record_reads
from tests.test_log_processor_store import now


@pytest.fixture
def processor(es, store_url, tmp_path):
    reference = tmp_path / "reference.parquet"
    synthetic.reference_frame(2000, seed=101).to_parquet(reference)
    base = load_monitors(REPO_ROOT / "log_processor/monitors.yaml", interval_override=0.3)[0]
    monitors = tuple(dataclasses.replace(base, name=name, min_labelled_rows=50, min_rows=200,
                                         reference=dataclasses.replace(base.reference, parquet=reference, manifest=None))
                     for name in ("driver_ranker", "shadow"))
    rows = synthetic.chosen_rows("drift", 600, 21)
    helpers.bulk(es, synthetic.bulk_actions(synthetic.events(rows, now() - timedelta(minutes=5), now() - timedelta(minutes=1),
                                                             feedback_share=0.5)), refresh=True)
    settings = ProcessorSettings(store=StoreSettings(url=store_url), write_summaries=False, stale_after=5.0)
    proc = Processor(settings, monitors)
    yield proc
    proc.stop()


def wait_for(predicate, timeout=60.0):   # the first cycle calibrates drift on a new reference (seconds)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached")


def test_endpoints_serve_the_scheduler_results(processor):
    client = create_app(processor=processor).test_client()
    wait_for(lambda: all(r.snapshot().status == "ok" for r in processor.runners.values()))
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and metrics.mimetype == "text/plain"
    text = metrics.get_data(as_text=True)
    assert 'mlmon_dataset_drift{monitor="driver_ranker"} 1.0' in text
    assert 'mlmon_feature_drift_detected{feature="avg_daily_trips",method="wasserstein",monitor="shadow"} 0.0' in text
    process = {s.name: s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name.startswith("process_")}
    assert process["process_resident_memory_bytes"] > 10e6 and process["process_open_fds"] > 0
    assert process["process_cpu_seconds_total"] > 0 and "python_info{" in text
    series = {(s.name, s.labels.get("metric"), s.labels.get("scores")): s.value
              for family in text_string_to_metric_families(text) for s in family.samples
              if s.labels.get("monitor") == "driver_ranker"}
    for metric in ("accuracy", "precision", "recall", "f1", "roc_auc"):
        low, value, high = (series[(f"mlmon_estimated_classification_quality{edge}", metric, None)]
                            for edge in ("_lower", "", "_upper"))
        assert 0 <= low <= value <= high <= 1 and high - low > 0
        assert 0 < series[("mlmon_reference_classification_quality", metric, None)] <= 1
    # the drifted traffic's labels follow another relation (concept drift): the scores cannot see it,
    # the labelled rows can
    realized = series[("mlmon_classification_quality", "accuracy", None)]
    assert series[("mlmon_estimation_error", "accuracy", None)] > 0.2
    assert series[("mlmon_estimated_classification_quality_upper", "accuracy", None)] > realized
    assert 0 <= series[("mlmon_score_calibration_error", None, "calibrated")] < 0.1
    assert series[("mlmon_estimation_alert_margin", None, None)] == 0.05

    health = client.get("/healthz")
    assert health.status_code == 200 and health.json["status"] == "ok"
    assert health.json["monitors"]["shadow"]["stale"] is False
    assert health.json["monitors"]["driver_ranker"]["last_success_age_seconds"] < 5

    index = client.get("/report")
    assert index.status_code == 200 and b"?monitor=shadow" in index.data
    page = client.get("/report?monitor=driver_ranker")
    assert page.status_code == 200 and b"dataset drift: <b>YES</b> (2 of 3 features, share 0.67, drift at 0.5)" \
        in page.data and b"part=quality" in page.data
    drift = client.get("/report?monitor=driver_ranker&part=drift")
    assert drift.status_code == 200 and drift.mimetype == "text/html" and len(drift.data) > 100_000
    assert client.get("/report?monitor=driver_ranker&part=quality").status_code == 200
    target = client.get("/report?monitor=driver_ranker&part=target")     # the labels' own drift report
    assert target.status_code == 200 and b"part=target" in page.data and b"Drift in column 'target'" in target.data
    assert b"estimated quality (all 600 rows" in page.data and b"estimated \xe2\x88\x92 realized" in page.data

    summary = client.get("/report.json?monitor=driver_ranker").json
    assert summary["status"] == "ok" and summary["latest"]["drifted_features"] == ["conv_rate", "acc_rate"]
    estimated = summary["latest"]["estimated_quality"]["accuracy"]
    assert estimated["lower"] <= estimated["value"] <= estimated["upper"]
    assert summary["latest"]["estimation_error"]["accuracy"] > 0.2
    assert set(client.get("/report.json").json) == {"driver_ranker", "shadow"}


def test_bad_requests_get_json_naming_the_field(processor):
    client = create_app(processor=processor, start=False).test_client()
    unknown = client.get("/report?monitor=nope")
    assert unknown.status_code == 404 and unknown.json["field"] == "monitor" and "nope" in unknown.json["error"]
    assert client.get("/report.json?monitor=nope").status_code == 404
    bad_part = client.get("/report?monitor=shadow&part=everything")
    assert bad_part.status_code == 400 and bad_part.json["field"] == "part"
    not_yet = client.get("/report?monitor=shadow")
    assert not_yet.status_code == 503 and b"has not finished yet" in not_yet.data


def test_healthz_turns_503_when_every_monitor_is_stale(es, tmp_path):
    reference = tmp_path / "reference.parquet"
    synthetic.reference_frame(500, seed=1).to_parquet(reference)
    base = load_monitors(REPO_ROOT / "log_processor/monitors.yaml", interval_override=0.2)[0]
    monitor = dataclasses.replace(base, reference=dataclasses.replace(base.reference, parquet=reference, manifest=None))
    settings = ProcessorSettings(store=StoreSettings(url=f"http://127.0.0.1:{free_port()}", request_timeout=1),
                                 stale_after=0.5, backoff_max=0.2)
    proc = Processor(settings, (monitor,))
    try:
        client = create_app(processor=proc).test_client()
        wait_for(lambda: client.get("/healthz").status_code == 503
                 and client.get("/healthz").json["monitors"]["driver_ranker"]["status"] == "error",
                 timeout=40)   # the first cycle calibrates drift on the new reference first
        body = client.get("/healthz").json
        assert body["status"] == "stale" and body["monitors"]["driver_ranker"]["status"] == "error"
        assert "connect" in body["monitors"]["driver_ranker"]["last_error"]
        assert 'mlmon_store_errors_total{monitor="driver_ranker",operation="connect"}' in \
            client.get("/metrics").get_data(as_text=True)
    finally:
        proc.stop()


def test_a_blind_monitor_is_no_data_and_not_stale_in_healthz(es, tmp_path):
    """Nothing new for blind_after (the events stop a minute ago): the cycles are no_data, not successes,
    yet /healthz does not call the processor stale: it runs its cycles, the pipeline is what stopped."""
    reference = tmp_path / "reference.parquet"
    synthetic.reference_frame(500, seed=1).to_parquet(reference)
    base = load_monitors(REPO_ROOT / "log_processor/monitors.yaml", interval_override=0.2)[0]
    monitor = dataclasses.replace(base, min_rows=200, min_labelled_rows=50,
                                  reference=dataclasses.replace(base.reference, parquet=reference, manifest=None))
    rows = synthetic.chosen_rows("normal", 300, 22)
    helpers.bulk(es, synthetic.bulk_actions(synthetic.events(rows, now() - timedelta(minutes=5), now() - timedelta(minutes=1),
                                                             feedback_share=0.5)), refresh=True)
    settings = ProcessorSettings(store=StoreSettings(url=es.transport.node_pool.get().base_url), write_summaries=False,
                                 stale_after=3.0, blind_after=30.0)
    proc = Processor(settings, (monitor,))
    try:
        client = create_app(processor=proc).test_client()
        wait_for(lambda: proc.runners["driver_ranker"].snapshot().status == "no_data", timeout=40)
        time.sleep(3.5)                            # longer than stale_after, counted from the start
        health = client.get("/healthz")
        assert health.status_code == 200, health.json
        assert health.json["monitors"]["driver_ranker"]["status"] == "no_data"
        assert health.json["monitors"]["driver_ranker"]["stale"] is False
        assert health.json["monitors"]["driver_ranker"]["last_success_age_seconds"] is None   # never a success
        text = client.get("/metrics").get_data(as_text=True)
        assert 'mlmon_no_data{monitor="driver_ranker"} 1.0' in text
        assert 'mlmon_blind_after_seconds{monitor="driver_ranker"} 30.0' in text
    finally:
        proc.stop()


def test_monitors_over_one_index_run_in_one_thread_with_one_read_per_cycle(processor):
    """driver_ranker and shadow watch the same index at the same interval: each cycle reads it once."""
    scans, cycles = record_reads(processor.store), {name: 0 for name in processor.runners}
    for name, runner in processor.runners.items():
        def counted(cycle=None, name=name, run_once=runner.run_once):
            cycles[name] += 1
            return run_once(cycle)
        runner.run_once = counted
    processor.start()
    wait_for(lambda: min(cycles.values()) >= 4)
    processor.stop()
    assert len(processor.threads) == 1 and len(processor.threads[0].runners) == 2
    assert cycles == {"driver_ranker": len(scans), "shadow": len(scans)}, scans
    assert all(r.snapshot().status == "ok" for r in processor.runners.values())
