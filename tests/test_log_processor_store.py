"""Against a real osmem-server loaded through the bulk API: windows, labels, bad documents, empty windows,
summary documents, and recovery when the store dies and comes back on the same port."""
import dataclasses
import time
from datetime import datetime, timedelta, timezone

import pytest
from elasticsearch import helpers
from osmem_server import OsmemServer
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client import generate_latest

from common.schema import prediction_event
from common.store import StoreSettings, apply_index_templates, connect
from benchmarks import synthetic
from log_processor.export.metrics import Exporter
from log_processor.monitors import load_monitors
from log_processor.runner import MonitorRunner
from log_processor.schedule import IndexThread
from log_processor.read.window_reader import WindowReader
from log_processor.read.store import EventStore
from tests.conftest import REPO_ROOT, free_port, record_reads



def now() -> datetime:
    """Taken when a test builds its data: a module-level "now" goes stale in a long suite and the data
    drifts out of the 15-minute window (it did once the suite passed 7 minutes)."""
    return datetime.now(timezone.utc)


@pytest.fixture(scope="module")
def reference_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("ref") / "reference.parquet"
    synthetic.reference_frame(2000, seed=101).to_parquet(path)
    return path


def monitor_for(reference_file, **changes):
    base = load_monitors(REPO_ROOT / "log_processor/monitors.yaml", interval_override=0.2)[0]
    reference = dataclasses.replace(base.reference, parquet=reference_file, manifest=None)
    return dataclasses.replace(base, **{"reference": reference, "min_labelled_rows": 50, "min_rows": 200, **changes})


def load(es, docs):
    ok, errors = helpers.bulk(es, synthetic.bulk_actions(docs), refresh=True, raise_on_error=False)
    assert errors == []
    return ok


def runner_for(url, monitor, clock=time.time):
    exporter = Exporter([monitor.name])
    return MonitorRunner(monitor, EventStore(StoreSettings(url=url, request_timeout=3), page_size=500),
                         exporter, backoff_max=1.0, clock=clock), exporter


def samples(exporter, name):
    out = {}
    for family in text_string_to_metric_families(generate_latest(exporter.registry).decode()):
        for s in family.samples:
            if s.name == name:
                out[tuple(sorted((k, v) for k, v in s.labels.items() if k != "monitor"))] = s.value
    return out


def one(exporter, name, **labels):
    return samples(exporter, name).get(tuple(sorted(labels.items())))


def traffic(variant, n, rows_seed, minutes=(10, 1), **kw):
    rows = synthetic.chosen_rows(variant, n, rows_seed)
    at = now()
    return synthetic.events(rows, at - timedelta(minutes=minutes[0]), at - timedelta(minutes=minutes[1]), **kw)


def test_normal_window_no_drift_and_a_summary_document(es, store_url, reference_file):
    load(es, traffic("normal", 1500, 3, feedback_share=0.5, seed=1))
    runner, exporter = runner_for(store_url, monitor_for(reference_file))
    assert runner.run_once() == "ok", runner.state.last_error
    assert one(exporter, "mlmon_verdict_available") == 1
    assert one(exporter, "mlmon_dataset_drift") == 0
    assert sum(samples(exporter, "mlmon_feature_drift_detected").values()) == 0
    assert one(exporter, "mlmon_window_rows", kind="current") == 1500
    # the window's time range, for the alert messages' links: the monitor's 15-minute span, ending now
    start, end = one(exporter, "mlmon_window_start_timestamp_seconds"), one(exporter, "mlmon_window_end_timestamp_seconds")
    assert end - start == pytest.approx(15 * 60, abs=1) and abs(end - time.time()) < 60
    es.indices.refresh(index="ml-monitoring-*")
    (hit,) = es.search(index="ml-monitoring-*")["hits"]["hits"]
    doc = hit["_source"]
    assert doc["monitor"] == "driver_ranker" and doc["status"] == "ok" and doc["dataset_drift"] is False
    assert doc["rows"]["current"] == 1500 and {f["feature"] for f in doc["feature_drift"]} == {
        "conv_rate", "acc_rate", "avg_daily_trips"}
    # where the cycle went: its phases, in the order they ran, add up to no more than the whole
    phases = doc["phase_seconds"]
    # the shipped driver_ranker slices by context.city (segments:), so its cycle has a segments phase
    assert list(phases) == ["window", "evaluate", "segments", "export"] and min(phases.values()) >= 0
    assert phases["evaluate"] > 0 and sum(phases.values()) <= doc["duration_seconds"] + 0.01


def test_drift_window_flags_exactly_the_shifted_features(es, store_url, reference_file):
    load(es, traffic("drift", 1500, 4, feedback_share=0.0))
    runner, exporter = runner_for(store_url, monitor_for(reference_file))
    assert runner.run_once() == "ok", runner.state.last_error
    detected = {dict(k)["feature"]: v for k, v in samples(exporter, "mlmon_feature_drift_detected").items()}
    assert detected == {"conv_rate": 1, "acc_rate": 1, "avg_daily_trips": 0}
    assert one(exporter, "mlmon_dataset_drift") == 1
    assert samples(exporter, "mlmon_classification_quality") == {}     # no labels: no quality series


def test_delayed_labels_joined_with_right_coverage(es, store_url, reference_file):
    load(es, traffic("normal", 1000, 5, feedback_share=0.4, delay_seconds=45, seed=2))
    runner, exporter = runner_for(store_url, monitor_for(reference_file))
    assert runner.run_once() == "ok", runner.state.last_error
    labelled = one(exporter, "mlmon_window_rows", kind="labelled")
    assert 300 < labelled < 500
    assert one(exporter, "mlmon_label_coverage_ratio") == pytest.approx(labelled / 1000)
    assert one(exporter, "mlmon_label_delay_seconds", quantile="0.5") == pytest.approx(45, abs=0.01)
    accuracy = one(exporter, "mlmon_classification_quality", metric="accuracy")
    cells = samples(exporter, "mlmon_confusion_matrix")
    correct = cells[(("actual", "0"), ("predicted", "0"))] + cells[(("actual", "1"), ("predicted", "1"))]
    assert sum(cells.values()) == labelled and accuracy == pytest.approx(correct / labelled)


def test_latest_n_window_keeps_the_newest_n(es, store_url, reference_file):
    load(es, traffic("normal", 2000, 6, feedback_share=0.0))
    runner, exporter = runner_for(store_url, monitor_for(reference_file, window_last=700))
    assert runner.run_once() == "ok", runner.state.last_error
    assert one(exporter, "mlmon_window_rows", kind="current") == 700


def test_malformed_documents_are_counted_not_fatal(es, store_url, reference_file):
    docs = list(traffic("normal", 400, 8, feedback_share=0.0))
    # a numeric string passes the float mapping (coerced) but is kept as a string in _source
    bad = [dict(docs[i], features=dict(docs[i]["features"], conv_rate="0.73")) for i in range(5)]
    bad += [dict(docs[i], request_id=None) for i in range(5, 8)]
    bad += [dict(docs[i], event=dict(docs[i]["event"], dataset="ml.unheard_of")) for i in range(8, 10)]
    bad += [dict(docs[i], features={k: v for k, v in docs[i]["features"].items() if k != "acc_rate"})
            for i in range(10, 14)]
    load(es, bad + docs[14:])
    runner, exporter = runner_for(store_url, monitor_for(reference_file, min_rows=100))
    assert runner.run_once() == "ok", runner.state.last_error
    assert one(exporter, "mlmon_rejected_documents_total", reason="not_a_number") == 5
    assert one(exporter, "mlmon_rejected_documents_total", reason="missing_field") == 3 + 4
    assert one(exporter, "mlmon_rejected_documents_total", reason="unknown_dataset") == 2
    assert one(exporter, "mlmon_window_rows", kind="current") == 386
    # the four without acc_rate are measured as missing values before they are skipped
    assert one(exporter, "mlmon_missing_values_share", column="acc_rate") == pytest.approx(4 / 390)
    assert one(exporter, "mlmon_missing_values_share", column="conv_rate") == 0


def test_empty_and_too_small_windows_give_no_verdict_and_clear_old_series(es, store_url, reference_file):
    load(es, traffic("drift", 600, 9, feedback_share=0.5))
    clock = [time.time()]
    runner, exporter = runner_for(store_url, monitor_for(reference_file), clock=lambda: clock[0])
    assert runner.run_once() == "ok"
    assert one(exporter, "mlmon_dataset_drift") == 1
    # A window that empties while the runner has seen predictions is `no_data` (the next test); one that
    # was empty from the start is too small for a verdict, and clears what an earlier runner exported.
    clock[0] += 3600                                    # an hour later: the window is empty
    runner, exporter = runner_for(store_url, monitor_for(reference_file), clock=lambda: clock[0])
    assert runner.run_once() == "insufficient_data"
    assert one(exporter, "mlmon_verdict_available") == 0
    assert one(exporter, "mlmon_window_rows", kind="current") == 0
    for name in ("mlmon_dataset_drift", "mlmon_feature_drift_detected", "mlmon_feature_drift_score",
                 "mlmon_classification_quality", "mlmon_prediction_drift_detected", "mlmon_missing_values_share",
                 "mlmon_newest_event_timestamp_seconds", "mlmon_ingest_lag_seconds"):
        assert samples(exporter, name) == {}, name
    assert one(exporter, "mlmon_last_success_timestamp_seconds") == pytest.approx(clock[0])
    assert one(exporter, "mlmon_no_data") == 0
    small = monitor_for(reference_file, min_rows=10_000)
    runner, exporter = runner_for(store_url, small)
    assert runner.run_once() == "insufficient_data"
    assert one(exporter, "mlmon_window_rows", kind="current") == 600 and samples(exporter, "mlmon_dataset_drift") == {}


def test_no_new_predictions_for_blind_after_is_no_data_and_keeps_the_last_verdict(es, store_url, reference_file):
    """The pipeline stalls: nothing new reaches the store. After blind_after the cycle is `no_data`, not a
    success, and the last verdict stays exported (no alert resolves on data nobody saw); the newest
    event's time, the ingest lag and the count of stored predictions describe the delivery. When
    events flow again, verdicts resume and only the new predictions are counted."""
    load(es, traffic("drift", 600, 9, feedback_share=0.5))
    loaded_at = time.time()
    clock = [time.time()]
    runner, exporter = runner_for(store_url, monitor_for(reference_file, blind_after_seconds=300),
                                  clock=lambda: clock[0])
    assert runner.blind_after == 300
    assert runner.run_once() == "ok", runner.state.last_error
    newest = one(exporter, "mlmon_newest_event_timestamp_seconds")
    assert clock[0] - 70 < newest < clock[0] - 50            # traffic(): the last prediction ~1 minute ago
    # event.ingested was stamped at load time: the lag spreads over the 9 minutes the events cover
    p50, p95 = (one(exporter, "mlmon_ingest_lag_seconds", quantile=q) for q in ("0.5", "0.95"))
    assert 5.5 * 60 - 15 < p50 - (time.time() - loaded_at) < 5.5 * 60 + 15 and p50 < p95 < 10 * 60 + 15
    assert one(exporter, "mlmon_stored_predictions_total") == 0      # the first read is the baseline
    assert one(exporter, "mlmon_blind_after_seconds") == 300 and one(exporter, "mlmon_no_data") == 0
    succeeded = one(exporter, "mlmon_last_success_timestamp_seconds")

    clock[0] += 200                                      # newest now ~4 minutes old: not yet blind
    assert runner.run_once() == "ok"
    clock[0] += 200                                      # ~7 minutes: blind, and the window still holds most
    assert runner.run_once() == "no_data"               # rows: evaluated as usual (late labels count), not a success
    assert one(exporter, "mlmon_no_data") == 1 and one(exporter, "mlmon_dataset_drift") == 1
    assert 400 < one(exporter, "mlmon_window_rows", kind="evaluated") < 600
    assert one(exporter, "mlmon_last_success_timestamp_seconds") == pytest.approx(succeeded + 200)
    clock[0] += 3600                                     # an hour later: the window is empty
    assert runner.run_once() == "no_data"
    assert runner.state.status == "no_data" and runner.state.last_success == pytest.approx(clock[0] - 3800)
    assert one(exporter, "mlmon_no_data") == 1
    assert one(exporter, "mlmon_last_success_timestamp_seconds") == pytest.approx(succeeded + 200)
    assert one(exporter, "mlmon_evaluations_total", outcome="no_data") == 2
    assert one(exporter, "mlmon_verdict_available") == 1 and one(exporter, "mlmon_dataset_drift") == 1
    assert 400 < one(exporter, "mlmon_window_rows", kind="current") < 600     # the last verdict's window
    assert one(exporter, "mlmon_newest_event_timestamp_seconds") == newest      # outlives the window
    assert runner.state.summary["status"] == "no_data" and runner.state.summary["dataset_drift"] is True

    # events flow again (normal traffic, in the shifted clock's last 10 minutes): a verdict, counted once
    at = datetime.fromtimestamp(clock[0], timezone.utc)
    load(es, synthetic.events(synthetic.chosen_rows("normal", 600, 10), at - timedelta(minutes=10),
                              at - timedelta(minutes=1), feedback_share=0.5))
    assert runner.run_once() == "ok", runner.state.last_error
    assert one(exporter, "mlmon_no_data") == 0 and one(exporter, "mlmon_dataset_drift") == 0
    assert one(exporter, "mlmon_stored_predictions_total") == 600
    assert one(exporter, "mlmon_newest_event_timestamp_seconds") == pytest.approx(clock[0] - 60, abs=2)
    assert runner.run_once() == "ok" and one(exporter, "mlmon_stored_predictions_total") == 600


def test_store_killed_mid_run_and_restarted_on_the_same_port_recovers(reference_file):
    port = free_port()
    server = OsmemServer.start(japanese=False, addr=f"127.0.0.1:{port}")

    def fill(srv):
        es = connect(StoreSettings(url=srv.url))
        apply_index_templates(es)
        load(es, traffic("normal", 400, 10, feedback_share=0.5))
        es.close()

    try:
        fill(server)
        runner, exporter = runner_for(server.url, monitor_for(reference_file))
        assert runner.run_once() == "ok"
        first_success = one(exporter, "mlmon_last_success_timestamp_seconds")
        server.close()
        server = None
        assert runner.run_once() == "error"
        assert runner.run_once() == "error"
        errors = sum(samples(exporter, "mlmon_store_errors_total").values())
        assert errors == 2
        assert one(exporter, "mlmon_evaluations_total", outcome="error") == 2
        assert one(exporter, "mlmon_dataset_drift") == 0                    # the last verdict is kept ...
        assert one(exporter, "mlmon_last_success_timestamp_seconds") == first_success   # ... and visibly ages
        assert runner.next_delay() > runner.monitor.interval_seconds        # backing off
        server = OsmemServer.start(japanese=False, addr=f"127.0.0.1:{port}")
        fill(server)
        assert runner.run_once() == "ok", runner.state.last_error
        assert one(exporter, "mlmon_last_success_timestamp_seconds") > first_success
        assert runner.state.consecutive_errors == 0 and runner.next_delay() == runner.monitor.interval_seconds
    finally:
        if server is not None:
            server.close()


def test_reference_from_a_time_range_in_the_store(es, store_url, reference_file):
    old = [now() - timedelta(hours=3), now() - timedelta(hours=2)]
    load(es, synthetic.events(synthetic.chosen_rows("normal", 800, 11), *old, feedback_share=1.0))
    load(es, traffic("drift", 800, 12, feedback_share=0.0))
    base = monitor_for(reference_file)
    monitor = dataclasses.replace(base, reference=dataclasses.replace(
        base.reference, parquet=None, store_start=old[0] - timedelta(seconds=1), store_end=old[1]))
    runner, exporter = runner_for(store_url, monitor)
    assert runner.run_once() == "ok", runner.state.last_error
    assert one(exporter, "mlmon_window_rows", kind="reference") == 800
    assert one(exporter, "mlmon_dataset_drift") == 1
    (info,) = samples(exporter, "mlmon_info")
    assert dict(info)["reference_version"].startswith("store:")
    # labels that arrived after the range's end (within the horizon) label the reference too
    assert runner.reference().frame["target"].notna().sum() == 800


def test_the_runner_thread_freezes_start_up_objects_after_its_first_cycle(es, store_url, reference_file):
    """Long-lived start-up objects leave the collector's full passes, and young collections come
    every GC_YOUNG_THRESHOLD allocations (memory.settle_memory)."""
    import gc
    import threading
    from log_processor.memory import GC_YOUNG_THRESHOLD
    load(es, traffic("normal", 300, 12, feedback_share=0.0))
    runner, _ = runner_for(store_url, monitor_for(reference_file))
    gc.unfreeze()
    thresholds = gc.get_threshold()
    gc.set_threshold(700, *thresholds[1:])
    stop = threading.Event()
    thread = IndexThread([runner], runner.reader)
    thread.start(stop)
    try:
        deadline = time.monotonic() + 30
        while gc.get_freeze_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert runner.state.status == "ok", runner.state.last_error
        assert gc.get_freeze_count() > 10_000       # modules, Evidently, the reference ...
        assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD
    finally:
        stop.set()
        thread.join(10)
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def test_a_shared_read_that_fails_fails_each_monitor_once_and_the_next_reads_whole(es, store_url, reference_file):
    """Two monitors over one index, one reader: a store error is one failed read, counted as an error of
    each monitor; the next cycle reads whole for both."""
    load(es, traffic("normal", 400, 14, feedback_share=0.5))
    monitors = [monitor_for(reference_file, name=name) for name in ("driver_ranker", "shadow")]
    exporter = Exporter([m.name for m in monitors])
    dead = EventStore(StoreSettings(url=f"http://127.0.0.1:{free_port()}", request_timeout=2))
    reader = WindowReader(dead, monitors[0].index)
    runners = [MonitorRunner(m, dead, exporter, write_summaries=False, reader=reader) for m in monitors]
    failed = record_reads(dead)
    thread = IndexThread(runners, reader)
    thread.run_due(runners)
    assert [r.state.status for r in runners] == ["error", "error"] and len(failed) == 1
    text = generate_latest(exporter.registry).decode()
    for name in ("driver_ranker", "shadow"):
        assert f'mlmon_store_errors_total{{monitor="{name}",operation="connect"}} 1.0' in text
    assert all(r.held is None for r in runners)
    assert all("connect" in r.state.last_error for r in runners)
    reader.store = EventStore(StoreSettings(url=store_url), page_size=500)
    reads = record_reads(reader.store)
    thread.run_due(runners)
    assert [r.state.status for r in runners] == ["ok", "ok"], [r.state.last_error for r in runners]
    assert reads == [False]                             # one read, and a whole one
    thread.run_due(runners)
    assert reads == [False, True]                       # then incremental, still one for both
