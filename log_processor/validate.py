"""Event documents → typed column chunks, with malformed documents counted by reason and skipped.

Pure: no I/O. Works column-wise on one page of `_source` dicts at a time (vectorised type checks),
so a million-document window costs numpy passes rather than a Python loop per field.

What counts as what (docs/log-processor.md):
- a prediction/feedback missing its join key, @timestamp, prediction or target → `missing_field`
- a string (or bool, list, ...) where a number belongs → `not_a_number`; NaN/±Infinity → `non_finite`
- an `event.dataset` that is not one of the stack's datasets → `unknown_dataset`
- a feature that is absent or null is parsed as NaN here; window.py measures the share of missing
  values per feature over the window (`mlmon_missing_values_share`) and then skips those rows as
  `missing_field`, so they never reach a drift test or the quality metrics.
Events of other models, request errors and the like are simply not part of the window.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from common.schema import DATASETS
from log_processor.monitors import Monitor

REJECT_REASONS = ("missing_field", "not_a_number", "non_finite", "unknown_dataset", "duplicate")

# Column names of the window frame; features keep their configured names (as in reference.parquet).
KEY, TIMESTAMP, PREDICTION, SCORE, TARGET = "request_id", "timestamp", "prediction", "prediction_score", "target"


@dataclass
class Chunk:
    """One page, parsed: predictions and feedback as frames, plus what was rejected and why."""
    predictions: pd.DataFrame
    feedback: pd.DataFrame
    rejected: Counter = field(default_factory=Counter)


def source_fields(monitor: Monitor) -> list[str]:
    """The `_source` fields a window needs: nothing else is transferred."""
    fields = ["@timestamp", "event.dataset", monitor.join_key, monitor.prediction_label,
              monitor.prediction_score, monitor.target, *(f.field for f in monitor.features)]
    if monitor.model_name:
        fields.append("model.name")
    return list(dict.fromkeys(fields))


def column(docs: Sequence[Any], dotted: str) -> list[Any]:
    """Values at a dotted path of every document (None where absent); one list pass per level.

    Decoded JSON objects are plain dicts, so the check is `isinstance(v, dict)`: the abstract
    `Mapping` check goes through the ABC machinery and made this the hottest line of a cycle.
    """
    values: list[Any] = list(docs)
    for part in dotted.split("."):
        values = [v.get(part) if isinstance(v, dict) else None for v in values]
    return values


_KIND = np.frompyfunc(lambda v: 0 if v is None else 1 if type(v) in (int, float) else 2, 1, 1)


def numbers(values: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(float values, missing mask, not-a-number mask, non-finite mask) of one column."""
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    kind = _KIND(arr).astype(np.int8) if len(arr) else np.zeros(0, dtype=np.int8)
    missing, wrong = kind == 0, kind == 2
    out = np.full(len(arr), np.nan)
    ok = kind == 1
    out[ok] = arr[ok].astype(float)
    non_finite = ok & ~np.isfinite(out)
    out[non_finite] = np.nan
    return out, missing, wrong, non_finite


_EPOCH = pd.Timestamp(0, tz="UTC")


def _timestamps(values: Sequence[Any]) -> np.ndarray:
    """Epoch seconds (float), NaN where the value is not an ISO-8601 timestamp."""
    parsed = pd.to_datetime(pd.Series(values, dtype=object), utc=True, format="ISO8601", errors="coerce")
    return (parsed - _EPOCH).dt.total_seconds().to_numpy(dtype=float)


class _Rejects:
    """First reason wins per row; rows already rejected are not counted twice."""

    def __init__(self, n: int):
        self.bad = np.zeros(n, dtype=bool)
        self.counts: Counter = Counter()

    def add(self, reason: str, mask: np.ndarray) -> None:
        new = mask & ~self.bad
        if new.any():
            self.counts[reason] += int(new.sum())
            self.bad |= new


def parse_page(docs: Sequence[Mapping[str, Any]], monitor: Monitor) -> Chunk:
    """Split one page into validated prediction rows and feedback rows."""
    datasets = np.array(column(docs, "event.dataset"), dtype=object)
    known = set(DATASETS) | {monitor.prediction_dataset, monitor.feedback_dataset}
    rejected: Counter = Counter()
    unknown = np.array([d not in known for d in datasets], dtype=bool)
    if unknown.any():
        rejected["unknown_dataset"] += int(unknown.sum())
    mine = np.ones(len(docs), dtype=bool)
    if monitor.model_name:
        mine = np.array(column(docs, "model.name"), dtype=object) == monitor.model_name
    pred_docs = [d for d, ds, m in zip(docs, datasets, mine) if m and ds == monitor.prediction_dataset]
    fb_docs = [d for d, ds, m in zip(docs, datasets, mine) if m and ds == monitor.feedback_dataset]
    predictions, r1 = parse_predictions(pred_docs, monitor)
    feedback, r2 = parse_feedback(fb_docs, monitor)
    rejected.update(r1)
    rejected.update(r2)
    return Chunk(predictions, feedback, rejected)


def _keys_and_times(docs: Sequence[Mapping[str, Any]], monitor: Monitor, rejects: _Rejects):
    keys = np.array(column(docs, monitor.join_key), dtype=object)
    rejects.add("missing_field", np.array([not (isinstance(k, str) and k) for k in keys], dtype=bool))
    times = _timestamps(column(docs, "@timestamp"))
    rejects.add("missing_field", np.isnan(times))
    return keys, times


def parse_predictions(docs: Sequence[Mapping[str, Any]], monitor: Monitor) -> tuple[pd.DataFrame, Counter]:
    rejects = _Rejects(len(docs))
    keys, times = _keys_and_times(docs, monitor, rejects)
    required = {}
    for name, path in ((PREDICTION, monitor.prediction_label), (SCORE, monitor.prediction_score)):
        values, missing, wrong, non_finite = numbers(column(docs, path))
        rejects.add("missing_field", missing)
        rejects.add("not_a_number", wrong)
        rejects.add("non_finite", non_finite)
        required[name] = values
    features = {}
    for feature in monitor.features:
        raw = column(docs, feature.field)
        if feature.type == "categorical":
            features[feature.name] = np.array([None if v is None else str(v) for v in raw], dtype=object)
            continue
        values, _missing, wrong, non_finite = numbers(raw)   # missing stays NaN: window.py counts it
        rejects.add("not_a_number", wrong)
        rejects.add("non_finite", non_finite)
        features[feature.name] = values
    keep = ~rejects.bad
    frame = pd.DataFrame({KEY: keys[keep], TIMESTAMP: times[keep],
                          **{name: values[keep] for name, values in features.items()},
                          PREDICTION: required[PREDICTION][keep].astype(np.int64),
                          SCORE: required[SCORE][keep]})
    return frame, rejects.counts


def parse_feedback(docs: Sequence[Mapping[str, Any]], monitor: Monitor) -> tuple[pd.DataFrame, Counter]:
    rejects = _Rejects(len(docs))
    keys, times = _keys_and_times(docs, monitor, rejects)
    values, missing, wrong, non_finite = numbers(column(docs, monitor.target))
    rejects.add("missing_field", missing)
    rejects.add("not_a_number", wrong)
    rejects.add("non_finite", non_finite)
    keep = ~rejects.bad
    frame = pd.DataFrame({KEY: keys[keep], TIMESTAMP: times[keep], TARGET: values[keep].astype(np.int64)})
    return frame, rejects.counts


def combine(chunks: Iterable[Chunk], monitor: Monitor) -> Chunk:
    """All pages of a window as one chunk (frames concatenated, rejection counts summed)."""
    chunks = list(chunks)
    rejected: Counter = Counter()
    for chunk in chunks:
        rejected.update(chunk.rejected)
    preds = [c.predictions for c in chunks if len(c.predictions)]
    fbs = [c.feedback for c in chunks if len(c.feedback)]
    predictions = pd.concat(preds, ignore_index=True) if preds else parse_predictions([], monitor)[0]
    feedback = pd.concat(fbs, ignore_index=True) if fbs else parse_feedback([], monitor)[0]
    return Chunk(predictions, feedback, rejected)
