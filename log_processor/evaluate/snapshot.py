"""The one place that knows the shape of Evidently's `Snapshot.dict()`; everything after it works
with the stable names of docs/metrics.md."""
from __future__ import annotations

import math
from typing import Any


def read_snapshot(snapshot: Any) -> dict[str, tuple[Any, bool | None]]:
    """metric id -> (value, failed?) from `Snapshot.dict()`; failed is None when the metric has no test.

    Evidently 0.7 lists `metrics` as {id, metric_name, config, value} (value: a float, or
    {count, share}) and `tests` as {metric_config: {metric_id}, status} with status FAIL when a
    drift test fired.
    """
    data = snapshot.dict()
    failed: dict[str, bool] = {}
    for test in data.get("tests", []):
        metric_id = test["metric_config"]["metric_id"]
        status = str(getattr(test["status"], "value", test["status"])).upper()
        if status.endswith("ERROR"):
            raise RuntimeError(f"Evidently test {test.get('name')!r} errored: {test.get('description')}")
        failed[metric_id] = failed.get(metric_id, False) or status.endswith("FAIL")
    return {m["id"]: (m["value"], failed.get(m["id"])) for m in data["metrics"]}


def value(raw: Any) -> float:
    return float(raw) if raw is not None else math.nan
