"""A sampled read: ask the engine how large the window is, then read only a uniform sample of it.

Before a window is read, one aggregation request (size 0) over the monitor's predictions in the
window gives what the engine can count exactly: the predictions, the documents without a sampling
key, the missing values per feature. A rate is picked from a fixed ladder (common/sampling.py) so
that the expected sample stays at most `max_rows`, and the read asks only for the documents whose
`sampling.key` lies below the rate's threshold, predictions and feedback alike (one request id, one
key: the label join is exact on the sample). Documents without a key (older indices, a store
without the ingest pipeline) are read anyway and sampled here with the same key, computed from the
join key (read/parse.py), and counted.

A window bounded by `last: N` keeps its meaning: the engine gives the time of the N-th latest
prediction (one hit, sorted by time), and the window starts there.

Where the engine cannot answer (a 400 to the aggregation: a store without it), the window is read
whole, as before, with one log line per monitor. A window of at most `max_rows` predictions is read
whole too (rate 1): nothing changes for it, and a monitor with `last: N` of at most `max_rows` never
asks the engine. docs/log-processor.md#sampled-reads.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any

from common import sampling
from log_processor.monitors import Monitor

log = logging.getLogger("log_processor")


@dataclasses.dataclass(frozen=True)
class EngineFigures:
    """What the engine counted over the window's prediction documents (duplicates and malformed
    documents included), a moment before the sample was read."""
    predictions: int
    unkeyed: int                       # predictions without a sampling.key
    missing: dict[str, int]            # feature name -> predictions without it

    def missing_share(self) -> dict[str, float]:
        return {name: (n / self.predictions if self.predictions else 0.0) for name, n in self.missing.items()}


@dataclasses.dataclass(frozen=True)
class SamplePlan:
    rate: float                        # the share of the window read (1: all of it)
    start: float                       # the window's start (the N-th latest prediction's time for `last: N`)
    figures: EngineFigures | None      # None: the engine was not asked (rate 1, today's read)

    @property
    def threshold(self) -> int:
        return sampling.threshold(self.rate)

    @property
    def sampled(self) -> bool:
        return self.rate < 1.0


def can_sample(monitor: Monitor) -> bool:
    """The stored key is a hash of request_id: a monitor joining on another field is read whole."""
    return monitor.join_key == sampling.SOURCE_FIELD


def predictions_filter(monitor: Monitor) -> list[dict[str, Any]]:
    """The monitor's predictions (its dataset, its model), as engine filters."""
    filters: list[dict[str, Any]] = [{"term": {"event.dataset": monitor.prediction_dataset}}]
    if monitor.model_name:
        filters.append({"term": {"model.name": monitor.model_name}})
    return filters


def figures_aggregations(monitor: Monitor) -> dict[str, Any]:
    aggs: dict[str, Any] = {"unkeyed": {"missing": {"field": sampling.FIELD}}}
    for i, feature in enumerate(monitor.features):
        aggs[f"missing_{i}"] = {"missing": {"field": feature.field}}
    return aggs


def read_figures(monitor: Monitor, total: int, aggregations: dict[str, Any]) -> EngineFigures:
    """The aggregation's answer; a bucket that is absent or not a count is an error (never a guess)."""
    def count(name: str) -> int:
        value = (aggregations.get(name) or {}).get("doc_count")
        if not isinstance(value, int) or value < 0 or value > total:
            raise ValueError(f"aggregation {name!r} answered {aggregations.get(name)!r}")
        return value
    return EngineFigures(predictions=total, unkeyed=count("unkeyed"),
                         missing={f.name: count(f"missing_{i}") for i, f in enumerate(monitor.features)})


def key_filter(threshold: int) -> dict[str, Any]:
    """Documents under `threshold`, and those the processor must look at itself: without a key (it
    samples them with the key it computes) or with one out of range (it rejects them: `sampling_key`)."""
    return {"bool": {"should": [
        {"range": {sampling.FIELD: {"lt": threshold}}},
        {"range": {sampling.FIELD: {"gte": sampling.SPACE}}},
        {"bool": {"must_not": {"exists": {"field": sampling.FIELD}}}},
    ], "minimum_should_match": 1}}
