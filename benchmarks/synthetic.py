"""Synthetic prediction/feedback events drawn from serving.data's world, for the tests and the benchmarks.

The "model" here is the normal world's true completion probability (an oracle), and the logged
driver is the best-scored candidate, as serving does: so a normal window looks like a reference
built the same way, and a drift window shifts exactly the features DRIFT_SPEC shifts.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any, Iterator

import numpy as np
import pandas as pd

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
