"""The ml-events contract (DESIGN.md, docs/events.md): one module that producers and consumers import.

Events are nested dicts with ECS-style dotted names flattened into objects, exactly as they are
stored in Elasticsearch. `event.id` is a uuid4 and doubles as the document `_id`, so re-shipping
an event never duplicates it.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any, Mapping

from common.sampling import sample_key

DATASET_PREDICTION = "ml.prediction"
DATASET_FEEDBACK = "ml.feedback"
DATASET_REQUEST_ERROR = "ml.request_error"
DATASETS = (DATASET_PREDICTION, DATASET_FEEDBACK, DATASET_REQUEST_ERROR)

SERVICE_NAME = "serving"
EVENTS_INDEX_PREFIX = "ml-events-"
EVENTS_INDEX_PATTERN = "ml-events-*"
MONITORING_INDEX_PREFIX = "ml-monitoring-"
MONITORING_INDEX_PATTERN = "ml-monitoring-*"
LOGS_INDEX_PREFIX = "logs-serving-"

# Per-task prediction and target fields (monitors.yaml names them; docs/events.md lists them).
# Regression (trip_duration): ml.prediction carries prediction.value, ml.feedback target.duration_minutes.
REGRESSION_PREDICTION_FIELD = "prediction.value"
REGRESSION_TARGET_FIELD = "target.duration_minutes"
# Multi-class (no model in serving; tests and benchmarks): the class, optional per-class scores in the
# monitor's `classes` order, the realized class.
MULTICLASS_PREDICTION_FIELD = "prediction.class"
MULTICLASS_SCORES_FIELD = "prediction.class_scores"
MULTICLASS_TARGET_FIELD = "target.class"

# Feature name -> python type, in model input order.
FEATURES: dict[str, type] = {"conv_rate": float, "acc_rate": float, "avg_daily_trips": int}
FEATURE_NAMES = tuple(FEATURES)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def format_timestamp(ts: datetime) -> str:
    """ISO-8601 UTC with milliseconds and a Z, the one @timestamp format of the stack."""
    ts = ts.astimezone(timezone.utc)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def parse_timestamp(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(timezone.utc)


def daily_index(prefix: str, timestamp: str | datetime) -> str:
    """`ml-events-2026.11.23` for an event of that UTC day (the @timestamp decides, not the clock)."""
    ts = parse_timestamp(timestamp) if isinstance(timestamp, str) else timestamp.astimezone(timezone.utc)
    return f"{prefix}{ts:%Y.%m.%d}"


def _base(dataset: str, model_name: str, model_version: str, request_id: str,
          timestamp: datetime | None) -> dict[str, Any]:
    return {
        "@timestamp": format_timestamp(timestamp or utc_now()),
        "event": {"id": str(uuid.uuid4()), "dataset": dataset},
        "service": {"name": SERVICE_NAME},
        "model": {"name": model_name, "version": model_version},
        "request_id": request_id,
    }


def prediction_event(*, model_name: str, model_version: str, request_id: str,
                     features: Mapping[str, Any], driver_id: int, score: float, label: int,
                     latency_ms: float, timestamp: datetime | None = None,
                     city: str | None = None) -> dict[str, Any]:
    """`city`: the request's context (the rider's city), logged as `context.city` when given."""
    event = _prediction(model_name, model_version, request_id, features, latency_ms, timestamp,
                        {"driver_id": int(driver_id), "score": float(score), "label": int(label)})
    if city is not None:
        event["context"] = {"city": str(city)}
    return event


def _prediction(model_name: str, model_version: str, request_id: str, features: Mapping[str, Any],
                latency_ms: float, timestamp: datetime | None, prediction: dict[str, Any]) -> dict[str, Any]:
    """An ml.prediction of any task: the features as typed in FEATURES, the task's `prediction` object."""
    event = _base(DATASET_PREDICTION, model_name, model_version, request_id, timestamp)
    event["features"] = {name: FEATURES[name](features[name]) for name in FEATURE_NAMES}
    event["prediction"] = prediction
    event["latency_ms"] = round(float(latency_ms), 3)
    return event


def feedback_event(*, model_name: str, model_version: str, request_id: str, trip_completed: int,
                   timestamp: datetime | None = None) -> dict[str, Any]:
    event = _base(DATASET_FEEDBACK, model_name, model_version, request_id, timestamp)
    event["target"] = {"trip_completed": int(trip_completed)}
    return event


def regression_prediction_event(*, model_name: str, model_version: str, request_id: str,
                                features: Mapping[str, Any], driver_id: int, value: float,
                                latency_ms: float, timestamp: datetime | None = None) -> dict[str, Any]:
    """ml.prediction of a regression model: `prediction.value` (trip_duration: minutes), no score/label."""
    return _prediction(model_name, model_version, request_id, features, latency_ms, timestamp,
                       {"driver_id": int(driver_id), "value": float(value)})


def regression_feedback_event(*, model_name: str, model_version: str, request_id: str, duration_minutes: float,
                              timestamp: datetime | None = None) -> dict[str, Any]:
    """ml.feedback of trip_duration: the realized `target.duration_minutes`."""
    event = _base(DATASET_FEEDBACK, model_name, model_version, request_id, timestamp)
    event["target"] = {"duration_minutes": float(duration_minutes)}
    return event


def request_error_event(*, model_name: str, model_version: str, request_id: str | None,
                        error_type: str, message: str, timestamp: datetime | None = None) -> dict[str, Any]:
    event = _base(DATASET_REQUEST_ERROR, model_name, model_version, request_id or "", timestamp)
    event["error"] = {"type": error_type, "message": message[:1000]}
    return event


def stamp_ingested(event: dict[str, Any], at: str | None = None) -> dict[str, Any]:
    """Set `event.ingested` (ECS: when the store received the event) as a writer sends it.

    Where the store runs ingest pipelines (Elasticsearch, OpenSearch) the ml-events pipeline sets it
    again with the store's own clock; osmem-server has none, so the embedded shipper's stamp stands.
    A writer stamps at every attempt, so a batch retried after an outage carries its delivery time."""
    event.setdefault("event", {})["ingested"] = at or format_timestamp(utc_now())
    return event


def stamp_sampling_key(event: dict[str, Any]) -> dict[str, Any]:
    """Set `sampling.key` from `request_id` as the ml-events-ingested pipeline does (common/sampling.py),
    for stores without pipelines (osmem-server); where the pipeline runs it sets the same value again.
    An event without a request_id gets none."""
    key = sample_key(event.get("request_id"))
    if key is not None:
        sampling = event.get("sampling")
        event["sampling"] = {**(sampling if isinstance(sampling, dict) else {}), "key": key}
    return event


def event_id(event: Mapping[str, Any]) -> str | None:
    ev = event.get("event")
    value = ev.get("id") if isinstance(ev, Mapping) else None
    return value if isinstance(value, str) and value else None


def get_path(doc: Mapping[str, Any], dotted: str) -> Any:
    """`get_path(doc, "features.conv_rate")`; None when any step is missing."""
    node: Any = doc
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node
