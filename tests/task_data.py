"""Synthetic regression and multi-class rows and events for the per-task tests (their own data: the
benchmarks' generator is another module's)."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from common.schema import EVENTS_INDEX_PREFIX, daily_index, format_timestamp, stamp_ingested

CLASSES = ("short", "medium", "long")
FEATURES = ("conv_rate", "acc_rate", "avg_daily_trips")

REGRESSION_YAML = """\
monitors:
  - name: trip_duration
    task: regression
    model_name: trip_duration
    features:
      conv_rate: {field: features.conv_rate, type: numerical}
      acc_rate: {field: features.acc_rate, type: numerical}
      avg_daily_trips: {field: features.avg_daily_trips, type: numerical}
    prediction: {value: prediction.value}
    target: target.duration_minutes
    window: {span: 15m}
    min_rows: 100
    min_labelled_rows: 40
    reference: {parquet: REFERENCE}
    drift: {alpha: 0.01}
    quality: {alert_ratio: 1.5}
"""

MULTICLASS_YAML = """\
monitors:
  - name: trip_type
    task: multiclass_classification
    model_name: trip_type
    classes: [short, medium, long]
    features:
      conv_rate: {field: features.conv_rate, type: numerical}
      acc_rate: {field: features.acc_rate, type: numerical}
      avg_daily_trips: {field: features.avg_daily_trips, type: numerical}
    prediction: {label: prediction.class, scores: prediction.class_scores}
    target: target.class
    window: {span: 15m}
    min_rows: 100
    min_labelled_rows: 40
    reference: {parquet: REFERENCE}
    drift: {alpha: 0.01}
"""


def features(n: int, rng: np.random.Generator, shift: float = 0.0) -> pd.DataFrame:
    return pd.DataFrame({"conv_rate": np.clip(rng.beta(4, 3, n) + shift, 0, 1), "acc_rate": rng.beta(6, 2, n),
                         "avg_daily_trips": rng.poisson(12, n).astype(float)})


def regression_rows(n: int, seed: int, *, target_shift: float = 0.0, error_scale: float = 1.0) -> pd.DataFrame:
    """Predicted minutes = the model's formula; realized = formula + noise (sd 3) + `target_shift`."""
    rng = np.random.default_rng(seed)
    x = features(n, rng)
    predicted = 8 + 20 * x["conv_rate"] + 0.6 * x["avg_daily_trips"]
    realized = np.maximum(predicted + rng.normal(0, 3 * error_scale, n) + target_shift, 0.5)
    return x.assign(prediction=predicted.to_numpy(), target=realized.to_numpy())


def multiclass_rows(n: int, seed: int, *, class_probs: tuple[float, ...] | None = None) -> pd.DataFrame:
    """Scores: a softmax of the features; predicted = the top score; realized drawn from the scores (or,
    given `class_probs`, from those shares: a moved P(y))."""
    rng = np.random.default_rng(seed)
    x = features(n, rng)
    logits = np.column_stack([2 * x["conv_rate"], x["acc_rate"], 0.1 * x["avg_daily_trips"] - 0.6])
    scores = np.exp(logits * 2.5)
    scores /= scores.sum(axis=1, keepdims=True)
    predicted = np.array(CLASSES)[scores.argmax(axis=1)]
    if class_probs is None:
        u = rng.random(n)[:, None]
        realized = np.array(CLASSES)[(u > np.cumsum(scores, axis=1)).sum(axis=1).clip(0, 2)]
    else:
        realized = rng.choice(CLASSES, n, p=class_probs)
    return x.assign(prediction=predicted, target=realized,
                    **{f"score__{c}": scores[:, i] for i, c in enumerate(CLASSES)})


def write_monitor(tmp: Path, yaml_text: str, reference: pd.DataFrame) -> Path:
    reference.to_parquet(tmp / "reference.parquet")
    path = tmp / "monitors.yaml"
    path.write_text(yaml_text.replace("REFERENCE", str(tmp / "reference.parquet")))
    return path


def _event(dataset: str, model: str, request_id: str, at: datetime) -> dict[str, Any]:
    return {"@timestamp": format_timestamp(at), "event": {"id": str(uuid.uuid4()), "dataset": dataset},
            "model": {"name": model, "version": "1"}, "request_id": request_id}


def regression_events(rows: pd.DataFrame, start: datetime, end: datetime, *, feedback_share: float = 1.0,
                      seed: int = 0) -> Iterator[dict[str, Any]]:
    """A prediction per row over [start, end] and, for `feedback_share` of them, its realized minutes a
    second later."""
    rng = np.random.default_rng(seed)
    step = (end - start) / max(len(rows), 1)
    for i, row in enumerate(rows.itertuples(index=False)):
        at, rid = start + i * step, f"reg-{seed}-{i}"
        doc = _event("ml.prediction", "trip_duration", rid, at)
        doc["features"] = {f: float(getattr(row, f)) for f in FEATURES}
        doc["prediction"] = {"driver_id": 1000 + i, "value": float(row.prediction)}
        yield doc
        if rng.random() < feedback_share:
            fb = _event("ml.feedback", "trip_duration", rid, at + timedelta(seconds=1))
            fb["target"] = {"duration_minutes": float(row.target)}
            yield fb


def multiclass_events(rows: pd.DataFrame, start: datetime, end: datetime, *, seed: int = 0
                      ) -> Iterator[dict[str, Any]]:
    step = (end - start) / max(len(rows), 1)
    for i, row in enumerate(rows.to_dict("records")):
        at, rid = start + i * step, f"mc-{seed}-{i}"
        doc = _event("ml.prediction", "trip_type", rid, at)
        doc["features"] = {f: float(row[f]) for f in FEATURES}
        doc["prediction"] = {"class": row["prediction"], "class_scores": [float(row[f"score__{c}"]) for c in CLASSES]}
        yield doc
        fb = _event("ml.feedback", "trip_type", rid, at + timedelta(seconds=1))
        fb["target"] = {"class": row["target"]}
        yield fb


def bulk_actions(docs) -> Iterator[dict[str, Any]]:
    for doc in docs:
        stamp_ingested(doc)
        yield {"_op_type": "create", "_index": daily_index(EVENTS_INDEX_PREFIX, doc["@timestamp"]),
               "_id": doc["event"]["id"], "_source": doc}
