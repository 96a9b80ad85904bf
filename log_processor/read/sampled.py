"""A sampled read: ask the engine how large the window is, then read only a uniform sample of it.

Before a window is read, one aggregation request (size 0) over the monitor's predictions in the
window gives what the engine can count exactly: the predictions, the documents without a sampling
key, the missing values per feature and, for a classifier, the predictions of each class. A rate is picked from a fixed ladder (common/sampling.py) so
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
from log_processor.monitors import REGRESSION, Monitor

log = logging.getLogger("log_processor")


@dataclasses.dataclass(frozen=True)
class EngineFigures:
    """What the engine counted over the window's prediction documents (duplicates and malformed
    documents included), a moment before the sample was read."""
    predictions: int
    unkeyed: int                       # predictions without a sampling.key
    missing: dict[str, int]            # feature name -> predictions without it
    # classifiers: predictions per predicted value (its text: "1", "short"), and those with another
    # value than the `size` largest (none for a monitor's few classes); None: not counted (regression)
    predicted: dict[str, int] | None = None
    predicted_other: int = 0

    def missing_share(self) -> dict[str, float]:
        return {name: (n / self.predictions if self.predictions else 0.0) for name, n in self.missing.items()}

    def predicted_shares(self, classes: tuple[str, ...]) -> dict[str, float] | None:
        """Each class's share of the predictions that name one (None when not counted, or none did)."""
        if self.predicted is None:
            return None
        named = sum(self.predicted.values()) + self.predicted_other
        return {c: self.predicted.get(c, 0) / named for c in classes} if named else None


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


def counts_classes(monitor: Monitor) -> bool:
    return monitor.task != REGRESSION and bool(monitor.prediction_label)


def figures_aggregations(monitor: Monitor) -> dict[str, Any]:
    aggs: dict[str, Any] = {"unkeyed": {"missing": {"field": sampling.FIELD}}}
    for i, feature in enumerate(monitor.features):
        aggs[f"missing_{i}"] = {"missing": {"field": feature.field}}
    if counts_classes(monitor):       # the predicted classes: a few values, all of them returned
        aggs["predicted"] = {"terms": {"field": monitor.prediction_label, "size": len(monitor.classes) + CLASS_SLACK}}
    return aggs


CLASS_SLACK = 10      # predicted values beyond the monitor's classes still counted by name (bad data)


def read_figures(monitor: Monitor, total: int, aggregations: dict[str, Any]) -> EngineFigures:
    """The aggregation's answer; a bucket that is absent or not a count is an error (never a guess)."""
    def count(name: str, answer: Any = None) -> int:
        answer = aggregations.get(name) if answer is None else answer
        value = (answer or {}).get("doc_count")
        if not isinstance(value, int) or isinstance(value, bool) or value < 0 or value > total:
            raise ValueError(f"aggregation {name!r} answered {answer!r}")
        return value
    predicted, other = None, 0
    if counts_classes(monitor):
        terms = aggregations.get("predicted")
        buckets = terms.get("buckets") if isinstance(terms, dict) else None
        other = terms.get("sum_other_doc_count", 0) if isinstance(terms, dict) else None
        if not isinstance(buckets, list) or not isinstance(other, int) or other < 0:
            raise ValueError(f"aggregation 'predicted' answered {terms!r}")
        predicted = {}
        for bucket in buckets:
            key = class_key(bucket.get("key") if isinstance(bucket, dict) else None)
            if key is None:
                raise ValueError(f"aggregation 'predicted' answered a bucket without a key: {bucket!r}")
            predicted[key] = predicted.get(key, 0) + count("predicted", bucket)
        if sum(predicted.values()) + other > total:
            raise ValueError(f"aggregation 'predicted' counted more predictions than the window's {total}")
    return EngineFigures(predictions=total, unkeyed=count("unkeyed"),
                         missing={f.name: count(f"missing_{i}") for i, f in enumerate(monitor.features)},
                         predicted=predicted, predicted_other=other)


def class_key(key: Any) -> str | None:
    """A terms bucket's key as the class names read it: 1 and 1.0 are "1" (a binary label), text stays."""
    if key is None:
        return None
    if isinstance(key, bool) or (isinstance(key, float) and key.is_integer()):
        return str(int(key))
    return str(key)


def key_filter(threshold: int) -> dict[str, Any]:
    """Documents under `threshold`, and those the processor must look at itself: without a key (it
    samples them with the key it computes) or with one out of range (it rejects them: `sampling_key`)."""
    return {"bool": {"should": [
        {"range": {sampling.FIELD: {"lt": threshold}}},
        {"range": {sampling.FIELD: {"gte": sampling.SPACE}}},
        {"bool": {"must_not": {"exists": {"field": sampling.FIELD}}}},
    ], "minimum_should_match": 1}}
