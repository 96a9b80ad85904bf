"""End to end: drifted events in osmem-server → real log_processor → real Prometheus → real
Alertmanager → SMTP sink. The DataDriftDetected e-mail names the drifted features; after normal
events push the drifted ones out of the window, the resolved e-mail arrives.

Event data comes from serving.data (the drift population shifts conv_rate and acc_rate only) and is
built with common.schema. The "model" that picks the driver and scores it is the normal world's
true completion probability, so the reference and the normal traffic share one generating process.
"""
from __future__ import annotations

import os
import sys
import time
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest
from elasticsearch import helpers

from common.schema import EVENTS_INDEX_PREFIX, daily_index, feedback_event, prediction_event
from common.supervisor import Child, http_ok
from demo.alerting_stack import FAST, AlertingStack, missing_binaries
from demo.mail_sink import MailSink
from tests.conftest import REPO_ROOT, free_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bool(missing_binaries()),
                       reason=f"not installed: {', '.join(missing_binaries())} (make system-deps)"),
    pytest.mark.skipif(not (REPO_ROOT / "log_processor" / "__main__.py").exists(),
                       reason="log_processor/ has not landed yet"),
]

MONITOR = "e2e_ranker"
WINDOW_ROWS = 500
# Distance thresholds well above the sampling noise of 500 rows (normed Wasserstein ≤ ~0.11 between
# two normal samples) and far below the shift of the drift population (≈ 2 for both shifted features).
MONITORS_YAML = """\
monitors:
  - name: {name}
    index: ml-events-*
    model_name: driver_ranker
    datasets: {{prediction: ml.prediction, feedback: ml.feedback}}
    features:
      conv_rate: {{field: features.conv_rate, type: numerical}}
      acc_rate: {{field: features.acc_rate, type: numerical}}
      avg_daily_trips: {{field: features.avg_daily_trips, type: numerical}}
    prediction: {{label: prediction.label, score: prediction.score}}
    target: target.trip_completed
    join_key: request_id
    window: {{span: 30m, last: {rows}}}
    min_rows: 200
    min_labelled_rows: 100
    interval: 1s
    label_horizon: 5m
    max_rows: 10000
    reference: {{parquet: {reference}}}
    drift:
      method: wasserstein
      threshold: 0.3
      drift_share: 0.5
      prediction: {{method: wasserstein, threshold: 0.3}}
"""


def chosen_rows(variant: str, n_requests: int, seed: int) -> pd.DataFrame:
    """One row per request: the best candidate's features, score, label and true outcome."""
    from serving.data import explode_traffic, generate_driver_stats, generate_traffic, true_completion_probability
    stats = generate_driver_stats()
    rows = explode_traffic(generate_traffic(variant, n_requests, seed, driver_stats=stats), stats)
    rows["prediction_score"] = true_completion_probability(rows, "normal")
    chosen = rows.loc[rows.groupby("request_index")["prediction_score"].idxmax()].reset_index(drop=True)
    chosen["prediction"] = (chosen["prediction_score"] >= 0.5).astype(int)
    return chosen.rename(columns={"trip_completed": "target"})


def events(rows: pd.DataFrame, tag: str, first: datetime, step: timedelta) -> list[dict]:
    out = []
    for i, row in enumerate(rows.itertuples(index=False)):
        ts, request_id = first + i * step, f"{tag}-{i}"
        common = {"model_name": "driver_ranker", "model_version": "e2e", "request_id": request_id}
        out.append(prediction_event(**common, driver_id=row.driver_id, score=row.prediction_score,
                                    label=row.prediction, latency_ms=3.0, timestamp=ts,
                                    features={"conv_rate": row.conv_rate, "acc_rate": row.acc_rate,
                                              "avg_daily_trips": row.avg_daily_trips}))
        out.append(feedback_event(**common, trip_completed=row.target, timestamp=ts + timedelta(seconds=2)))
    return out


def load(es, docs: list[dict]) -> None:
    """`docs` become visible to the processor at once: one bulk request (osmem-server shows each
    request's documents as soon as it is applied) and, on OpenSearch, no periodic refresh before the
    explicit one. A half-loaded window, half drift and half normal, clears the incident's alerts one
    cycle apart, which the FAST 2 s group interval reports as partial updates."""
    actions = [{"_index": daily_index(EVENTS_INDEX_PREFIX, d["@timestamp"]), "_id": d["event"]["id"], "_source": d}
               for d in docs]
    for index in sorted({a["_index"] for a in actions}):
        if es.indices.exists(index=index):
            es.indices.put_settings(index=index, settings={"index": {"refresh_interval": "-1"}})
    ok, errors = helpers.bulk(es, actions, raise_on_error=False, chunk_size=max(1, len(actions)),
                              max_chunk_bytes=1 << 30)
    assert ok == len(docs), errors[:3]
    es.indices.refresh(index=f"{EVENTS_INDEX_PREFIX}*")


@pytest.fixture
def log_processor(tmp_path, store_url):
    reference = tmp_path / "reference.parquet"
    chosen_rows("normal", 2000, 101)[["conv_rate", "acc_rate", "avg_daily_trips", "prediction",
                                       "prediction_score", "target"]].to_parquet(reference)
    monitors = tmp_path / "monitors.yaml"
    monitors.write_text(MONITORS_YAML.format(name=MONITOR, rows=WINDOW_ROWS, reference=reference))
    port, log = free_port(), tmp_path / "log_processor.log"
    env = {**os.environ, "ELASTICSEARCH_URL": store_url, "LOGPROC_HOST": "127.0.0.1", "LOGPROC_PORT": str(port),
           "LOGPROC_MONITORS_FILE": str(monitors), "LOGPROC_INTERVAL": "1", "LOGPROC_THREADS": "2"}
    address = f"127.0.0.1:{port}"
    with Child("log_processor", [sys.executable, "-m", "log_processor"], log, env=env, cwd=REPO_ROOT) as child:
        child.wait_ready(lambda: http_ok(f"http://{address}/metrics", lambda status: status == 200, timeout=1),
                         60, "GET /metrics answered 200")
        yield address, child


def test_drift_mail_names_the_drifted_features_and_resolves_when_data_is_normal_again(
        tmp_path, es, log_processor):
    address, processor = log_processor
    now = datetime.now(timezone.utc)
    load(es, events(chosen_rows("drift", WINDOW_ROWS, 6), "drift", now - timedelta(minutes=5),
                    timedelta(milliseconds=100)))

    with MailSink(tmp_path / "mail") as mail, AlertingStack(
            tmp_path / "alerting", {"log_processor": [address]}, mail.address, timings=FAST,
            external_labels={"log_processor_url": f"http://{address}"}) as stack:
        def diagnostics() -> str:
            return (f"\nprometheus alerts: {stack.prometheus.alerts()}\n"
                    f"log_processor log ({processor.log_file}):\n{processor.tail(25)}")

        started = time.monotonic()
        try:
            # one incident per monitor: the drift, prediction and quality alerts share one mail
            firing = mail.wait_for(lambda m: m.subject.startswith("[FIRING:") and "DataDriftDetected" in m.subject
                                   and f"monitor={MONITOR}" in m.subject, timeout=45)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}{diagnostics()}") from None
        assert firing.subject.endswith("features: acc_rate, conv_rate")
        assert "Features: acc_rate, conv_rate\n" in firing.body
        assert "acc_rate (wasserstein score " in firing.body and "conv_rate (wasserstein score " in firing.body
        assert "threshold 0.3)" in firing.body
        assert f"Drift report:  http://{address}/report?monitor={MONITOR}" in firing.body
        firing_after = time.monotonic() - started
        # The dashboards' recording rules evaluate on the processor's real series.
        age = stack.prometheus.query(f'monitor:mlmon_last_success:age_seconds{{monitor="{MONITOR}"}}')
        assert age and 0 <= float(age[0]["value"][1]) < 30
        runs = stack.prometheus.query(f'monitor_outcome:mlmon_evaluations:increase1h{{monitor="{MONITOR}",outcome="ok"}}')
        assert runs and float(runs[0]["value"][1]) > 0

        # The data returns to normal: newer events fill the window of the latest WINDOW_ROWS predictions.
        load(es, events(chosen_rows("normal", WINDOW_ROWS, 7), "normal", datetime.now(timezone.utc)
                        - timedelta(minutes=1), timedelta(milliseconds=100)))
        started = time.monotonic()
        before = {m.path.name for m in mail.messages()}
        try:   # the incident's end: every alert of the monitor cleared
            resolved = mail.wait_for(lambda m: m.subject.startswith("[RESOLVED]") and f"monitor={MONITOR}" in m.subject,
                                     timeout=30)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}{diagnostics()}") from None
        assert "is RESOLVED: every alert of this incident has cleared" in resolved.body
        assert "Resolved: " in resolved.body
        # DataDriftDetected's resolution is in the incident's last mail, or (were its alerts to clear
        # an evaluation apart) in the update Alertmanager sent between; never missing.
        since = [m for m in mail.messages() if m.path.name not in before]
        assert any("== RESOLVED: Data drift on monitor" in m.body for m in since), [m.subject for m in since]
        print(f"\nalerting e2e: stack up → firing mail {firing_after:.1f}s; "
              f"normal data loaded → resolved mail {time.monotonic() - started:.1f}s")
