"""Event documents → typed column chunks, with malformed documents counted by reason and skipped.

Pure: no I/O. Works column-wise on one page of `_source` documents at a time (vectorised type checks),
so a million-document window costs numpy passes rather than a Python loop per field.

What counts as what (docs/log-processor.md):
- a prediction/feedback missing its join key, @timestamp, prediction or target → `missing_field`
- a string (or bool, list, ...) where a number belongs → `not_a_number`; NaN/±Infinity → `non_finite`
- an `event.dataset` that is not one of the stack's datasets → `unknown_dataset`
- per task (monitors.yaml `task:`): a regression target that is present but not a finite number →
  `target_not_finite`; a multi-class predicted or realized class outside the monitor's `classes` →
  `class_unknown`; a multi-class score vector that is not a list of one number per class →
  `scores_length` (a non-number or NaN inside a vector of the right length: `not_a_number`/`non_finite`)
- a feature that is absent or null is parsed as NaN here; window.py measures the share of missing
  values per feature over the window (`mlmon_missing_values_share`) and then skips those rows as
  `missing_field`, so they never reach a drift test or the quality metrics.
Events of other models, request errors and the like are simply not part of the window.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from common import sampling
from common.schema import DATASETS
from log_processor.columns import (EID, KEY_HASH, RANK, REASON, SAMPLING_KEY, TARGET, TIMESTAMP, Columns, Rejects,
                                   numbers, segment_column, segment_values)
from log_processor.monitors import Monitor
from log_processor.tasks import task_for


@dataclass
class Chunk:
    """Pages, parsed: predictions and feedback as frames, the rejected documents with their reason,
    and the latest `event.ingested` seen (None when no document carried one; `unstamped` counts those
    without it: an incremental read would never see them)."""
    predictions: pd.DataFrame
    feedback: pd.DataFrame
    rejects: pd.DataFrame
    ingested: float | None = None
    unstamped: int = 0
    unkeyed: int = 0            # predictions and feedback without a stored sampling.key (computed here)

    @property
    def rejected(self) -> Counter:
        return Counter(self.rejects[REASON].value_counts().to_dict()) if len(self.rejects) else Counter()


def source_fields(monitor: Monitor) -> dict[str, Any]:
    """The `_source` fields a window needs (nothing else is transferred), each with the type its pages
    are decoded to (page_decoder.py): Any, checked here value by value, but for a score vector: a
    tuple of one float per class, which score_vectors takes as it is."""
    prediction = (monitor.prediction_label, monitor.prediction_score, monitor.prediction_value, monitor.prediction_scores)
    names = ["@timestamp", "event.id", "event.ingested", "event.dataset", monitor.join_key, sampling.FIELD,
             *(f for f in prediction if f), monitor.target, *(f.field for f in monitor.features),
             *(monitor.segments.fields if monitor.segments else ())]
    fields: dict[str, Any] = dict.fromkeys(names, Any)
    if monitor.prediction_scores:
        fields[monitor.prediction_scores] = tuple[(float,) * len(monitor.classes)]     # type: ignore[misc]
    if monitor.model_name:
        fields["model.name"] = Any
    return fields


def shared_fields(monitors: Sequence[Monitor]) -> dict[str, Any]:
    """The fields of several monitors' read; one that two monitors type differently is read as Any."""
    fields: dict[str, Any] = {}
    for monitor in monitors:
        for field, kind in source_fields(monitor).items():
            fields[field] = kind if fields.get(field, kind) == kind else Any
    return fields


_EPOCH = pd.Timestamp(0, tz="UTC")


def _timestamps(values: Sequence[Any]) -> np.ndarray:
    """Epoch seconds (float), NaN where the value is not an ISO-8601 timestamp. The stack's own
    format (common.schema.format_timestamp: milliseconds and Z, 24 characters) is parsed by numpy,
    several times faster than pandas' ISO parser, which takes everything else. Both paths give
    nanoseconds / 1e9, so a time is the same float whichever parsed it."""
    if values and all(type(v) is str and len(v) == 24 and v[-1] == "Z" for v in values):
        try:
            ms = np.array([v[:-1] for v in values], dtype="datetime64[ms]")
        except ValueError:
            pass
        else:
            return ms.astype("datetime64[ns]").astype(np.int64) / 1e9
    since_epoch = pd.to_datetime(pd.Series(values, dtype=object), utc=True, format="ISO8601", errors="coerce") - _EPOCH
    seconds = since_epoch.to_numpy(dtype="timedelta64[ns]").astype(np.int64) / 1e9
    seconds[since_epoch.isna().to_numpy()] = np.nan
    return seconds


def event_hashes(values: Sequence[Any]) -> np.ndarray:
    """64 bits per event.id (collisions: ~3e-8 in a window of a million events); a document without
    one gets a random value, so it is never taken for another."""
    ids = np.array(values, dtype=object)
    absent = np.array([not isinstance(v, str) for v in ids], dtype=bool)
    hashes = pd.util.hash_array(ids, categorize=False) if len(ids) else np.zeros(0, dtype=np.uint64)
    if absent.any():
        hashes[absent] = np.random.default_rng().integers(0, 2**63, size=int(absent.sum()), dtype=np.uint64)
    return hashes


def key_hashes(keys: np.ndarray) -> np.ndarray:
    return pd.util.hash_array(keys.astype(object), categorize=False) if len(keys) else np.zeros(0, dtype=np.uint64)


def sample_ranks(keys: np.ndarray, seed: int | None) -> np.ndarray:
    """A pseudo-random rank per join key, fixed by the key and the monitor's sample_seed: the rows of
    lowest rank are a uniform sample of the window whichever way its rows were gathered."""
    hash_key = f"mlmon{(seed or 0) % 10**11:011d}"
    return pd.util.hash_array(keys.astype(object), hash_key=hash_key, categorize=False) if len(keys) \
        else np.zeros(0, dtype=np.uint64)


def _latest(values: Sequence[Any]) -> tuple[float | None, int]:
    """(the latest of ISO-8601 timestamps in epoch seconds, or None; how many are absent). Strings of
    one length and format sort as their times do, so one string per length is parsed, not all."""
    longest: dict[int, str] = {}
    absent = 0
    for v in values:
        if isinstance(v, str):
            if v > longest.get(len(v), ""):
                longest[len(v)] = v
        else:
            absent += 1
    times = _timestamps(list(longest.values())) if longest else np.zeros(0)
    times = times[~np.isnan(times)]
    return (float(times.max()) if len(times) else None), absent


def _no_rejects() -> pd.DataFrame:
    return pd.DataFrame({EID: np.zeros(0, dtype=np.uint64), TIMESTAMP: np.zeros(0), REASON: np.zeros(0, dtype=object),
                         SAMPLING_KEY: np.zeros(0, dtype=np.int64)})


def _page_sampling_keys(columns: Columns) -> np.ndarray:
    """Every document's sampling key as the engine filtered it: the stored one when it is a valid
    key, else computed from request_id (what the read also asks for: documents without a key), -1
    where neither is there or the stored one is bad (such documents are read at every rate)."""
    try:
        stored, request_ids = columns(sampling.FIELD), columns(sampling.SOURCE_FIELD)
    except KeyError:          # a read that did not ask for them: no monitor of it samples
        return np.full(len(columns.docs), -1, dtype=np.int64)
    keys, _ = sampling_keys(stored, np.array(request_ids, dtype=object), Rejects(len(columns.docs)))
    return keys


def parse_page(docs: Sequence[Mapping[str, Any]], monitor: Monitor) -> Chunk:
    """Split one page into validated prediction rows and feedback rows."""
    return parse_page_for(docs, [monitor])[0]


def parse_page_for(docs: Sequence[Mapping[str, Any]], monitors: Sequence[Monitor]) -> list[Chunk]:
    """One page for each of several monitors (a shared read): what they all read alike, the
    documents' datasets, ids and times, is computed once, and so is each (model, dataset) subset of
    the page with its columns."""
    columns = Columns(docs)
    datasets = np.array(columns("event.dataset"), dtype=object)
    eids = event_hashes(columns("event.id"))
    times = _timestamps(columns("@timestamp"))
    ingested, unstamped = _latest(columns("event.ingested"))
    models: dict[str, np.ndarray] = {}
    subsets: dict[bytes, tuple[Columns, np.ndarray, np.ndarray]] = {}
    page_keys: np.ndarray | None = None

    def subset(mask: np.ndarray) -> tuple[Columns, np.ndarray, np.ndarray]:
        key = np.packbits(mask).tobytes()
        if key not in subsets:
            subsets[key] = (Columns([d for d, m in zip(docs, mask) if m]), eids[mask], times[mask])
        return subsets[key]

    chunks = []
    for monitor in monitors:
        known = set(DATASETS) | {monitor.prediction_dataset, monitor.feedback_dataset}
        unknown = Rejects(len(docs))
        unknown.add("unknown_dataset", np.array([d not in known for d in datasets], dtype=bool))
        mine = np.ones(len(docs), dtype=bool)
        if monitor.model_name:
            if monitor.model_name not in models:
                models[monitor.model_name] = np.array(columns("model.name"), dtype=object) == monitor.model_name
            mine = models[monitor.model_name]
        predictions, r1, u1 = parse_predictions(*subset(mine & (datasets == monitor.prediction_dataset)), monitor)
        feedback, r2, u2 = parse_feedback(*subset(mine & (datasets == monitor.feedback_dataset)), monitor)
        frames = [r for r in (unknown.frame(eids, times), r1, r2) if len(r)]
        rejects = pd.concat(frames, ignore_index=True) if frames else _no_rejects()
        if len(rejects):      # each rejected document's sampling key, so a sampled read keeps those of its sample
            if page_keys is None:
                page_keys = _page_sampling_keys(columns)
            rejects[SAMPLING_KEY] = page_keys[pd.Index(eids).get_indexer(rejects[EID].to_numpy())]
        chunks.append(Chunk(predictions, feedback, rejects, ingested, unstamped, u1 + u2))
    return chunks


def _keys(columns: Columns, monitor: Monitor, times: np.ndarray, rejects: Rejects) -> tuple[np.ndarray, np.ndarray, int]:
    """(join keys, sampling keys, how many documents had no stored sampling key)."""
    keys = np.array(columns(monitor.join_key), dtype=object)
    rejects.add("missing_field", np.array([not (isinstance(k, str) and k) for k in keys], dtype=bool))
    rejects.add("missing_field", np.isnan(times))
    skeys, unkeyed = sampling_keys(columns(sampling.FIELD), keys, rejects)
    return keys, skeys, unkeyed


def sampling_keys(stored: Sequence[Any], keys: np.ndarray, rejects: Rejects) -> tuple[np.ndarray, int]:
    """Each document's sampling key: the stored one, which must be an integer in [0, 2^31) (anything
    else is rejected: `sampling_key`, as the store may have sampled it wrongly), or, where the document
    has none (older indices, a store without the pipeline), computed from the join key as the pipeline
    would (common/sampling.py)."""
    values, missing, wrong, non_finite = numbers(stored)
    with np.errstate(invalid="ignore"):
        bad = wrong | non_finite | (~missing & ~np.isnan(values)
                                    & ((values < 0) | (values >= sampling.SPACE) | (values != np.floor(values))))
    rejects.add("sampling_key", bad)
    out = np.where(missing | bad, -1, np.nan_to_num(values, nan=-1)).astype(np.int64)
    absent = missing & ~rejects.bad
    if absent.any():
        out[absent] = sampling.sample_keys(list(keys[absent]))
    return out, int(absent.sum())


def parse_predictions(columns: Columns, eids: np.ndarray, times: np.ndarray,
                      monitor: Monitor) -> tuple[pd.DataFrame, pd.DataFrame]:
    rejects = Rejects(len(columns.docs))
    keys, skeys, unkeyed = _keys(columns, monitor, times, rejects)
    required = task_for(monitor).prediction_columns(columns, monitor, rejects)
    features = {}
    for feature in monitor.features:
        raw = columns(feature.field)
        if feature.type == "categorical":
            features[feature.name] = np.array([None if v is None else str(v) for v in raw], dtype=object)
            continue
        values, _missing, wrong, non_finite = numbers(raw)   # missing stays NaN: window.py counts it
        rejects.add("not_a_number", wrong)
        rejects.add("non_finite", non_finite)
        features[feature.name] = values
    for field in (monitor.segments.fields if monitor.segments else ()):      # never a reject: `unknown`
        features[segment_column(field)] = segment_values(columns(field))
    keep = ~rejects.bad
    frame = pd.DataFrame({KEY_HASH: key_hashes(keys[keep]), TIMESTAMP: times[keep],
                          **{name: values[keep] for name, values in features.items()},
                          **{name: values[keep] for name, values in required.items()},
                          EID: eids[keep], RANK: sample_ranks(keys[keep], monitor.sample_seed),
                          SAMPLING_KEY: skeys[keep]})
    return frame, rejects.frame(eids, times), unkeyed


def parse_feedback(columns: Columns, eids: np.ndarray, times: np.ndarray,
                   monitor: Monitor) -> tuple[pd.DataFrame, pd.DataFrame]:
    rejects = Rejects(len(columns.docs))
    keys, skeys, unkeyed = _keys(columns, monitor, times, rejects)
    target = task_for(monitor).target_column(columns(monitor.target), monitor, rejects)
    keep = ~rejects.bad
    frame = pd.DataFrame({KEY_HASH: key_hashes(keys[keep]), TIMESTAMP: times[keep],
                          TARGET: target[keep], EID: eids[keep], SAMPLING_KEY: skeys[keep]})
    return frame, rejects.frame(eids, times), unkeyed


def empty_chunk(monitor: Monitor) -> Chunk:
    return parse_page([], monitor)


def combine(chunks: Iterable[Chunk], monitor: Monitor) -> Chunk:
    """Pages as one chunk: frames concatenated, the latest ingest time, the unstamped counts summed."""
    chunks = [empty_chunk(monitor), *chunks]
    def cat(frames: list[pd.DataFrame]) -> pd.DataFrame:
        nonempty = [f for f in frames if len(f)]
        return pd.concat(nonempty, ignore_index=True) if len(nonempty) > 1 else (nonempty or frames)[0]
    stamps = [c.ingested for c in chunks if c.ingested is not None]
    return Chunk(cat([c.predictions for c in chunks]), cat([c.feedback for c in chunks]),
                 cat([c.rejects for c in chunks]), max(stamps) if stamps else None,
                 sum(c.unstamped for c in chunks), sum(c.unkeyed for c in chunks))
