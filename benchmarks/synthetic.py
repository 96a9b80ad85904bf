"""Synthetic prediction/feedback events drawn from serving.data's world, for the tests and the benchmarks:
the binary driver_ranker, and below it a regression (trip_duration) and a multi-class model (trip_type).

The "model" here is the normal world's true completion probability (an oracle), and the logged
driver is the best-scored candidate, as serving does: so a normal window looks like a reference
built the same way, and a drift window shifts exactly the features DRIFT_SPEC shifts.
"""
from __future__ import annotations

import math
import uuid
from datetime import datetime, timezone
from typing import Any, Iterator

import numpy as np
import pandas as pd
from scipy import special

from common.schema import EVENTS_INDEX_PREFIX, daily_index, feedback_event, prediction_event, stamp_ingested
from serving import data

MODEL_NAME = "driver_ranker"
MODEL_VERSION = "synthetic-1"
TRAFFIC_BASE = 4000   # requests simulated per (variant, seed); larger frames resample them


def chosen_rows(variant: str, n: int, seed: int) -> pd.DataFrame:
    """n logged rows: features of the chosen driver, prediction (label + score) and true outcome."""
    stats = data.generate_driver_stats()
    traffic = data.generate_traffic(variant, min(n, TRAFFIC_BASE), seed, driver_stats=stats)
    candidates = data.explode_traffic(traffic, stats)
    candidates["prediction_score"] = data.true_completion_probability(candidates, "normal")
    best = candidates.loc[candidates.groupby("request_index")["prediction_score"].idxmax()]
    rows = best.rename(columns={"trip_completed": "target"}).reset_index(drop=True)
    rows["prediction"] = (rows["prediction_score"] >= 0.5).astype(np.int64)
    if n > len(rows):
        rng = np.random.default_rng(seed)
        rows = rows.iloc[rng.integers(0, len(rows), size=n)].reset_index(drop=True)
    return rows[["driver_id", *data.FEATURE_COLUMNS, "prediction", "prediction_score", "target"]]


def fresh_rows(n: int, seed: int) -> pd.DataFrame:
    """n rows of genuinely distinct simulated requests: one generator seed (seed * 1000 + i) per
    TRAFFIC_BASE rows, where chosen_rows alone would resample TRAFFIC_BASE rows into a bootstrap."""
    parts = [chosen_rows("normal", TRAFFIC_BASE, seed * 1000 + i) for i in range(math.ceil(n / TRAFFIC_BASE))]
    return pd.concat(parts, ignore_index=True).iloc[:n]


def reference_frame(n: int = 2000, seed: int = 101) -> pd.DataFrame:
    """A reference.parquet-shaped frame from normal traffic."""
    return chosen_rows("normal", n, seed)[[*data.FEATURE_COLUMNS, "prediction", "prediction_score", "target"]]


def events(rows: pd.DataFrame, start: datetime, end: datetime, *, feedback_share: float = 1.0,
           delay_seconds: float = 5.0, seed: int = 0, model_version: str = MODEL_VERSION) -> Iterator[dict[str, Any]]:
    """A prediction event per row at evenly spread times in [start, end), plus feedback for a random
    `feedback_share` of them `delay_seconds` later."""
    rng = np.random.default_rng(seed)
    t0, span = start.timestamp(), end.timestamp() - start.timestamp()
    labelled = rng.random(len(rows)) < feedback_share
    for i, row in enumerate(rows.itertuples(index=False)):
        ts = datetime.fromtimestamp(t0 + span * i / max(len(rows), 1), timezone.utc)
        request_id = uuid.UUID(int=int(rng.integers(0, 2**63)) << 64 | i).hex
        yield prediction_event(model_name=MODEL_NAME, model_version=model_version, request_id=request_id,
                               features={c: getattr(row, c) for c in data.FEATURE_COLUMNS},
                               driver_id=row.driver_id, score=row.prediction_score, label=row.prediction,
                               latency_ms=3.0, timestamp=ts)
        if labelled[i]:
            fb_ts = datetime.fromtimestamp(ts.timestamp() + delay_seconds, timezone.utc)
            yield feedback_event(model_name=MODEL_NAME, model_version=model_version, request_id=request_id,
                                 trip_completed=int(row.target), timestamp=fb_ts)


def bulk_actions(docs: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """`helpers.bulk` actions: daily index from @timestamp, event.id as _id, event.ingested stamped as
    the action is made (as the shipper does)."""
    for doc in docs:
        stamp_ingested(doc)
        yield {"_op_type": "create", "_index": daily_index(EVENTS_INDEX_PREFIX, doc["@timestamp"]),
               "_id": doc["event"]["id"], "_source": doc}


# --- the other monitoring kinds: a regression (trip_duration) and a multi-class model (trip_type) ------
#
# Both read one latent trip duration per logged row: log-normal around a median that the chosen driver's
# features set (DURATION_LOG_MEDIAN). The "model" is again the normal world's oracle: the regression
# predicts the expected duration, the classifier the probability of each class (short / medium / long,
# cut at CLASS_EDGES minutes) and the most likely one. The shifted variant is serving's drift traffic
# (DRIFT_SPEC's feature shifts; the oracle follows them) plus a concept change the features do not
# show: every realized duration DRIFT_DURATION_FACTOR times longer (congestion). So quality, target and
# feature drift all move in it, and a normal window matches the reference.

REGRESSION_MODEL = "trip_duration"
MULTICLASS_MODEL = "trip_type"
CLASSES = ("short", "medium", "long")
CLASS_EDGES = (11.0, 18.0)                 # minutes: short < 11 <= medium < 18 <= long
DURATION_MEDIAN = 14.0                     # minutes, for a driver at the normal population's centre
DURATION_WEIGHTS = {"conv_rate": -1.0, "acc_rate": -1.5, "avg_daily_trips": 0.004}
DURATION_CENTRE = {"conv_rate": 0.6, "acc_rate": 0.8, "avg_daily_trips": 390.0}
DURATION_SIGMA = 0.12                     # log-normal noise of the realized duration around the median
DRIFT_DURATION_FACTOR = 1.3


def duration_log_median(rows: pd.DataFrame) -> np.ndarray:
    """log of the median trip duration (minutes) the features imply in the normal world."""
    return math.log(DURATION_MEDIAN) + sum(w * (rows[c].to_numpy(float) - DURATION_CENTRE[c])
                                           for c, w in DURATION_WEIGHTS.items())


def class_probabilities(log_median: np.ndarray) -> np.ndarray:
    """P(short), P(medium), P(long) of a log-normal duration: the oracle's calibrated class scores."""
    cdf = special.ndtr((np.log(CLASS_EDGES)[None, :] - np.asarray(log_median)[:, None]) / DURATION_SIGMA)
    return np.column_stack([cdf[:, 0], cdf[:, 1] - cdf[:, 0], 1.0 - cdf[:, 1]])


def realized_durations(log_median: np.ndarray, variant: str, rng: np.random.Generator) -> np.ndarray:
    """Realized trip durations (minutes) around the features' log-median; the drift world's are longer."""
    noise = rng.normal(0.0, DURATION_SIGMA, size=len(log_median))
    return np.exp(log_median + noise) * (DRIFT_DURATION_FACTOR if variant == "drift" else 1.0)


def predicted_duration(log_median: np.ndarray) -> np.ndarray:
    """The regression oracle: the expected duration, the log-normal's mean."""
    return np.exp(np.asarray(log_median) + DURATION_SIGMA ** 2 / 2)


def _trips(variant: str, n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The chosen drivers' rows, the oracle's log-median per row and the realized durations."""
    rows = chosen_rows(variant, n, seed)[["driver_id", *data.FEATURE_COLUMNS]].copy()
    log_median = duration_log_median(rows)
    return rows, log_median, realized_durations(log_median, variant, np.random.default_rng([seed, 20]))


def regression_rows(variant: str, n: int, seed: int) -> pd.DataFrame:
    """n logged trip_duration rows: driver, features, prediction (expected minutes), target (realized)."""
    rows, log_median, realized = _trips(variant, n, seed)
    rows["prediction"] = predicted_duration(log_median)
    rows["target"] = realized
    return rows


def class_of(minutes: np.ndarray) -> np.ndarray:
    return np.asarray(CLASSES, dtype=object)[np.searchsorted(CLASS_EDGES, minutes, side="right")]


def multiclass_rows(variant: str, n: int, seed: int) -> pd.DataFrame:
    """n logged trip_type rows: driver, features, prediction (class), one `score__<class>` column per
    class in CLASSES order, target (the realized duration's class)."""
    rows, log_median, realized = _trips(variant, n, seed)
    scores = class_probabilities(log_median)
    rows["prediction"] = np.asarray(CLASSES, dtype=object)[scores.argmax(axis=1)]
    for i, name in enumerate(CLASSES):
        rows[f"score__{name}"] = scores[:, i]
    rows["target"] = class_of(realized)
    return rows


def regression_reference_frame(n: int = 2000, seed: int = 202) -> pd.DataFrame:
    """trip_duration's reference.parquet layout: features, prediction, target (floats)."""
    return regression_rows("normal", n, seed)[[*data.FEATURE_COLUMNS, "prediction", "target"]]


def multiclass_reference_frame(n: int = 2000, seed: int = 303) -> pd.DataFrame:
    """trip_type's reference layout: features, prediction and target (class strings), score__<class>."""
    return multiclass_rows("normal", n, seed)[[*data.FEATURE_COLUMNS, "prediction",
                                                 *(f"score__{c}" for c in CLASSES), "target"]]


def _task_event(event: dict[str, Any], key: str, payload: dict[str, Any], rng) -> dict[str, Any]:
    """A common.schema event with its binary payload (`prediction` / `target`) replaced by another task's,
    and an event id drawn from the seed: the same seed gives the same documents, so indexing twice is a
    no-op instead of a duplicate."""
    event[key] = payload
    event["event"]["id"] = str(uuid.UUID(int=int(rng.integers(0, 2**63)) << 64 | int(rng.integers(0, 2**63)), version=4))
    return event


def task_events(rows: pd.DataFrame, task: str, start: datetime, end: datetime, *, feedback_share: float = 1.0,
                delay_seconds: float = 5.0, seed: int = 0, model_version: str = MODEL_VERSION,
                with_scores: bool = True) -> Iterator[dict[str, Any]]:
    """ml.prediction / ml.feedback events of `regression_rows` (task "regression": prediction.value,
    target.duration_minutes) or `multiclass_rows` ("multiclass_classification": prediction.class,
    prediction.class_scores in CLASSES order unless with_scores is False, target.class), spread over
    [start, end) like `events`; a pure function of its arguments."""
    if task not in ("regression", "multiclass_classification"):
        raise ValueError(f"task must be regression or multiclass_classification, got {task!r}")
    model = REGRESSION_MODEL if task == "regression" else MULTICLASS_MODEL
    rng = np.random.default_rng([seed, 21])
    t0, span = start.timestamp(), end.timestamp() - start.timestamp()
    labelled = rng.random(len(rows)) < feedback_share
    score_columns = [f"score__{c}" for c in CLASSES]
    for i, row in enumerate(rows.to_dict("records")):
        ts = datetime.fromtimestamp(t0 + span * i / max(len(rows), 1), timezone.utc)
        request_id = uuid.UUID(int=int(rng.integers(0, 2**63)) << 64 | i).hex
        if task == "regression":
            prediction = {"driver_id": int(row["driver_id"]), "value": float(row["prediction"])}
            target = {"duration_minutes": float(row["target"])}
        else:
            prediction = {"driver_id": int(row["driver_id"]), "class": str(row["prediction"])}
            if with_scores:
                prediction["class_scores"] = [float(row[c]) for c in score_columns]
            target = {"class": str(row["target"])}
        base = prediction_event(model_name=model, model_version=model_version, request_id=request_id,
                                features={c: row[c] for c in data.FEATURE_COLUMNS}, driver_id=row["driver_id"],
                                score=0.0, label=0, latency_ms=3.0, timestamp=ts)
        yield _task_event(base, "prediction", prediction, rng)
        if labelled[i]:
            fb_ts = datetime.fromtimestamp(ts.timestamp() + delay_seconds, timezone.utc)
            feedback = feedback_event(model_name=model, model_version=model_version, request_id=request_id,
                                      trip_completed=0, timestamp=fb_ts)
            yield _task_event(feedback, "target", target, rng)
