"""Segments end to end through a real store (osmem-server; OpenSearch with -m opensearch): events with a
segment field are read, one city whose conv_rate moved is flagged while the whole window is not, the
gauges carry only the worst K segments, the summary document (every segment, the root cause) is
accepted by the store, and /report shows the segment table."""
from __future__ import annotations

import dataclasses

import numpy as np
from prometheus_client import generate_latest

from benchmarks import synthetic
from log_processor.export.metrics import Exporter
from log_processor.export.pages import monitor_page
from log_processor.monitors import SegmentsConfig
from log_processor.runner import MonitorRunner
from log_processor.read.store import EventStore
from common.store import StoreSettings
from tests.test_log_processor_store import load, monitor_for, now, one, reference_file, samples  # noqa: F401
from datetime import timedelta

CITIES = ["Lyon", "Paris", "Nice", "Lille", "Brest", "Metz"]


def city_traffic(n: int, seed: int, moved: str, sigmas: float):
    rows = synthetic.chosen_rows("normal", n, seed)
    rng = np.random.default_rng(seed)
    city = np.array(CITIES)[rng.choice(len(CITIES), n, p=[0.12, 0.3, 0.2, 0.18, 0.1, 0.1])]
    rows.loc[city == moved, "conv_rate"] += sigmas * float(rows["conv_rate"].std())
    at = now()
    docs = list(synthetic.events(rows, at - timedelta(minutes=10), at - timedelta(minutes=1), feedback_share=0.5, seed=seed))
    predictions = [d for d in docs if d["event"]["dataset"] == "ml.prediction"]
    for doc, c in zip(predictions, city):
        doc["context"] = {"city": str(c)}
    predictions[0]["context"] = {"city": 7}          # not a string: unknown
    predictions[1].pop("context")                    # absent: unknown
    return docs


def test_one_city_drifting_is_flagged_named_and_exported_while_the_whole_window_stays_quiet(es, store_url, reference_file):
    load(es, city_traffic(3000, 5, "Lyon", 1.0))
    monitor = monitor_for(reference_file, segments=SegmentsConfig(("context.city",), max_segments=10, min_rows=100))
    exporter = Exporter([monitor.name], segment_gauges=3)
    runner = MonitorRunner(monitor, EventStore(StoreSettings(url=store_url, request_timeout=5), page_size=500),
                           exporter, backoff_max=1.0)
    assert runner.run_once() == "ok", runner.state.last_error
    summary = runner.state.summary
    assert summary["dataset_drift"] is False
    items = summary["segments"]["items"]
    assert {i["segment"] for i in items} == {*CITIES, "unknown"}
    assert [i["segment"] for i in items if i["drift_detected"]] == ["Lyon"] and "conv_rate" in items[0]["drifted"]
    assert summary["root_cause"]["features"][0]["feature"] == "conv_rate"
    assert "context.city=Lyon" in summary["root_cause"]["features"][0]["where"]
    assert summary["root_cause"]["worst_segments"][0]["value"] == "Lyon"
    assert "segments" in summary["phase_seconds"]
    assert one(exporter, "mlmon_segment_drift_detected", field="context.city", segment="Lyon") == 1
    assert len(samples(exporter, "mlmon_segment_rows")) == 3           # the worst K only
    assert one(exporter, "mlmon_segments", state="evaluated") == 6     # `unknown` has 2 rows: listed, not tested
    assert one(exporter, "mlmon_segments", state="skipped") == 1
    assert one(exporter, "mlmon_root_cause", rank="1", feature="conv_rate") > 1
    assert 'mlmon_store_errors_total{monitor="driver_ranker",operation="write_summary"} 0.0' in \
        generate_latest(exporter.registry).decode()
    es.indices.refresh(index="ml-monitoring-*")
    (hit,) = es.search(index="ml-monitoring-*")["hits"]["hits"]
    assert hit["_source"]["segments"]["flagged"] == 1
    page = monitor_page(monitor, summary, has_quality=True, has_target=True)
    assert "<h2>Segments</h2>" in page and "<td>Lyon</td>" in page and "<h2>Root cause</h2>" in page
