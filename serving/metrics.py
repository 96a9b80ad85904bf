"""The serving series of docs/metrics.md, in a registry owned by one app (no module-level metrics).

With several gunicorn workers, serving/__main__.py points PROMETHEUS_MULTIPROC_DIR at a scratch dir
before prometheus_client is imported and passes that dir here; /metrics then aggregates every
worker's values. The mode is explicit, never inferred from the variable (Feast sets it on import).

Process series (CPU, memory, open files): under gunicorn (`process_tree`), those of the master and of
every worker, labelled `pid` and `role`, read from /proc whichever worker answers the scrape
(common/process_metrics.py). prometheus_client's multiprocess mode has no process series of its
own, and a per-worker scrape target would need one port per worker; this works in both modes alike.
Outside gunicorn (tests), this process's own.
"""
from __future__ import annotations

import time
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, PlatformCollector, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from common.process_metrics import ProcessTreeCollector, add_process_collectors

ENDPOINTS = ("predict", "feedback", "predict_duration", "feedback_duration", "healthz", "metrics")
LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
DURATION_BUCKETS = (5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0, 50.0, 60.0, 90.0)  # minutes


def endpoint_label(endpoint: str | None) -> str:
    """Flask endpoint name -> the bounded `endpoint` label (unknown paths are "other")."""
    return endpoint if endpoint in ENDPOINTS else "other"


class ServingMetrics:
    def __init__(self, registry: CollectorRegistry | None = None, multiprocess_dir: Path | None = None,
                 process_tree: bool = False) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.multiprocess_dir = multiprocess_dir
        self.process_tree = process_tree
        self.requests = Counter("serving_requests_total", "HTTP requests by endpoint and status",
                                ["endpoint", "status"], registry=self.registry)
        self.duration = Histogram("serving_request_duration_seconds", "Request latency", ["endpoint"],
                                  buckets=LATENCY_BUCKETS, registry=self.registry)
        self.predictions = Counter("serving_predictions_total", "Predictions served",
                                   ["model_version", "label"], registry=self.registry)
        # Every model's predictions (the ranker's also stay in serving_predictions_total, by label).
        self.model_predictions = Counter("serving_model_predictions_total", "Predictions served per model",
                                         ["model_name", "model_version"], registry=self.registry)
        self.predicted_minutes = Histogram("serving_predicted_duration_minutes",
                                           "trip_duration's predicted trip duration (minutes)", ["model_version"],
                                           buckets=DURATION_BUCKETS, registry=self.registry)
        self.events_emitted = Counter("serving_events_emitted_total", "Events handed to a sink", ["sink"],
                                      registry=self.registry)
        self.events_dropped = Counter("serving_events_dropped_total",
                                      "Events a sink could not deliver (backend down, buffer full)",
                                      ["sink"], registry=self.registry)
        # When each model last served a prediction (the max over gunicorn workers): the log processor's newest
        # stored prediction trails it by the pipeline's delay, so the pair says when events stop arriving
        # (prometheus/rules/pipeline.yml, EventsNotArriving) whether traffic is steady or bursty.
        self.model_last_prediction = Gauge("serving_model_last_prediction_timestamp_seconds",
                                           "Unix time of the model's latest prediction", ["model_name"],
                                           registry=self.registry, multiprocess_mode="max")
        self.model_info = Gauge("serving_model_info", "The loaded model (always 1)",
                                ["model_name", "model_version"], registry=self.registry,
                                multiprocess_mode="max")
        if multiprocess_dir is None:   # else render() adds them to each scrape's registry
            self._process_collectors(self.registry)

    def prediction_served(self, model_name: str, model_version: str) -> None:
        self.model_predictions.labels(model_name, model_version).inc()
        self.model_last_prediction.labels(model_name).set(time.time())

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        self.duration.labels(endpoint).observe(seconds)

    def render(self) -> bytes:
        if self.multiprocess_dir is not None:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=str(self.multiprocess_dir))
            self._process_collectors(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)

    def _process_collectors(self, registry: CollectorRegistry) -> None:
        if self.process_tree:
            registry.register(ProcessTreeCollector())
            PlatformCollector(registry=registry)
        else:
            add_process_collectors(registry)
