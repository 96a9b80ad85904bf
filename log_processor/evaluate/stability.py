"""Data stability: values the model never saw in training, and columns that stopped varying.

Pure: no I/O. One metric family beside drift and quality (evaluation.py composes them):
- per numerical feature, the share of evaluated rows outside the reference's [min, max], and per
  categorical feature the share whose category the reference never had: Evidently's
  `OutRangeValueCount` / `OutListValueCount`, run in the drift report (so they are in `/report`);
- per window, the features and the prediction score that are constant (one distinct value) or
  almost constant (the most frequent value ≥ `ALMOST_CONSTANT_SHARE` of the rows, Evidently's own
  definition). By hand: Evidently's `ConstantColumnsCount` computes a whole dataset summary and
  measured ~1 s at 200 000 rows against ~10 ms for the counts themselves.
Duplicated request ids are counted where the window drops them (window.assemble).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pandas as pd
from evidently.metrics import OutListValueCount, OutRangeValueCount

from log_processor.monitors import Monitor

ALMOST_CONSTANT_SHARE = 0.95


@dataclass(frozen=True)
class Bounds:
    """What the reference allows, per feature: a [min, max] range or the set of categories seen."""
    ranges: Mapping[str, tuple[float, float]]
    categories: Mapping[str, tuple[Any, ...]]


@dataclass(frozen=True)
class Stability:
    out_of_range_share: dict[str, float]       # numerical feature -> share of rows outside the reference range
    unseen_category_share: dict[str, float]    # categorical feature -> share of rows with a new category
    constant_columns: tuple[str, ...]
    almost_constant_columns: tuple[str, ...]   # includes the constant ones


def reference_bounds(frame: pd.DataFrame, monitor: Monitor) -> Bounds:
    ranges, categories = {}, {}
    for f in monitor.features:
        values = frame[f.name].dropna()
        if f.type == "numerical" and len(values):
            ranges[f.name] = (float(values.min()), float(values.max()))
        elif f.type == "categorical":
            categories[f.name] = tuple(sorted(values.unique().tolist(), key=str))
    return Bounds(ranges, categories)


def stability_metrics(bounds: Bounds) -> dict[str, Any]:
    """feature -> the Evidently metric that counts its values outside the reference's.

    Without Evidently's default tests (count within 10 % of the reference's): with a reference
    count near 0, one odd value fails them; DataOutOfRange's 5 % is the verdict (docs/alerts.md)."""
    quiet = {"tests": [], "share_tests": []}
    metrics: dict[str, Any] = {name: OutRangeValueCount(column=name, left=low, right=high, **quiet)
                               for name, (low, high) in bounds.ranges.items()}
    metrics.update({name: OutListValueCount(column=name, values=list(values), **quiet)
                    for name, values in bounds.categories.items()})
    return metrics


def read_stability(bounds: Bounds, metrics: Mapping[str, Any], values: Mapping[str, tuple[Any, bool | None]],
                   current: pd.DataFrame, columns: list[str]) -> Stability:
    """The family's values from the report's (`values`: metric id -> (value, failed)) and the window's columns."""
    def share(name: str) -> float:
        raw = values[metrics[name].metric_id][0]
        value = raw.get("share") if isinstance(raw, dict) else raw
        return float(value) if value is not None and math.isfinite(float(value)) else 0.0

    top = {name: _top_value_share(current[name].to_numpy()) for name in columns}
    return Stability(
        out_of_range_share={name: share(name) for name in bounds.ranges},
        unseen_category_share={name: share(name) for name in bounds.categories},
        constant_columns=tuple(n for n, (distinct, _) in top.items() if distinct == 1),
        almost_constant_columns=tuple(n for n, (_, s) in top.items() if s >= ALMOST_CONSTANT_SHARE),
    )


def _top_value_share(values: np.ndarray) -> tuple[int, float]:
    """(distinct non-missing values, share of the most frequent one among the non-missing)."""
    present = pd.Series(values).dropna()
    if not len(present):
        return 0, 0.0
    counts = present.value_counts(sort=False).to_numpy()
    return len(counts), float(counts.max() / len(present))
