"""One monitor's window as a small Evidently snapshot of scalars, for the Evidently UI's dashboards
(export/evidently_workspace.py sends it). Pure: no I/O, no clock.

The values are the gauges' own (export/metrics.py: `reference_samples`, `window_samples`), the part
of them a dashboard draws over time (`SNAPSHOT_FAMILIES` and the task's quality families): each
sample becomes one Evidently `SingleValue` whose metric type is the family's name
(`evidently:metric_v2:mlmon_feature_drift_score`) and whose params are its labels
(`feature=conv_rate, method=wasserstein`), so a panel asks the UI for a family and labels the way a
Grafana panel asks Prometheus (export/evidently_dashboard.py). No per-row data and no plots: a
snapshot of the demo's monitors is about 10 KB (docs/evidently-ui.md). The run's report page, where a
point on a panel leads, is a verdict line and one table of the same values.
"""
from __future__ import annotations

import math
import uuid
from datetime import datetime, timezone
from typing import Any

from log_processor.evaluate.evaluation import Evaluation
from log_processor.evaluate.reference import Reference
from log_processor.export import metrics as m
from log_processor.monitors import Monitor
from log_processor.read.window import Window
from log_processor.tasks import task_for
from log_processor.tasks.base import Samples

METRIC_TYPE = "evidently:metric_v2:"          # the prefix Evidently's dashboards expect of a metric type
RESULT_TYPE = "evidently:metric_result_v2:SingleValue"

# What a snapshot holds besides the task's own quality families (tasks/*.py `families`): the issue's
# list (drift share and count, each feature's score with its threshold and verdict, prediction and
# target drift, estimated quality with its band, stability shares, rows, label coverage).
SNAPSHOT_FAMILIES = (
    m.VERDICT_AVAILABLE, m.DATASET_DRIFT, m.DRIFTED_FEATURES, m.DRIFTED_SHARE,
    m.FEATURE_SCORE, m.FEATURE_THRESHOLD, m.FEATURE_DETECTED,
    m.PREDICTION_SCORE, m.PREDICTION_THRESHOLD, m.PREDICTION_DETECTED,
    m.TARGET_SCORE, m.TARGET_THRESHOLD, m.TARGET_DETECTED,
    m.ESTIMATED, m.ESTIMATED_LOWER, m.ESTIMATED_UPPER,
    m.OUT_OF_RANGE, m.UNSEEN_CATEGORY, m.CONSTANT_COLUMNS,
    m.WINDOW_ROWS, m.LABEL_COVERAGE,
)

SNAPSHOT_ID_NAMESPACE = uuid.UUID("6f1d8d9e-3c55-4a44-9a53-0e5b8f6a1c35")


def snapshot_samples(monitor: Monitor, reference: Reference, window: Window, ev: Evaluation | None) -> Samples:
    """The samples a snapshot holds, computed from the window (the runner takes the exporter's instead:
    `snapshot_of`, the same values without computing them twice)."""
    return snapshot_of(monitor, {**m.reference_samples(monitor, reference),
                                 **m.window_samples(window, reference.rows, ev, monitor)})


def snapshot_of(monitor: Monitor, samples: Samples) -> Samples:
    """Of a monitor's samples (the gauges'), those of the families above and of the task's."""
    wanted = {f.name for f in SNAPSHOT_FAMILIES} | {f.name for f in task_for(monitor).families}
    return {family: rows for family, rows in samples.items() if family.name in wanted}


def metric_id(family: str, labels: dict[str, str]) -> str:
    """A value's key in the snapshot, as Prometheus would print the series: `family{label="value",...}`."""
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{family}{{{inner}}}" if inner else family


def snapshot_body(monitor: str, samples: Samples, at: float, metadata: dict[str, str] | None = None) -> dict[str, Any]:
    """The JSON body of one snapshot (Evidently's `SnapshotModel`): the samples' finite values as
    `SingleValue`s, and a report page of one table. `at`: the evaluation's unix time (the UI plots
    snapshots by it; naive UTC, as the UI's own timestamps are naive)."""
    results: dict[str, Any] = {}
    rows: list[list[str]] = []
    for family, values in samples.items():
        for label_values, value in values:
            value = float(value)
            if not math.isfinite(value):
                continue
            labels = dict(zip(family.labels, (str(v) for v in label_values)))
            key = f"v{len(results)}"     # the UI draws by type and params; the key only has to be unique
            results[key] = {
                "type": RESULT_TYPE,
                "display_name": family.name,
                "metric_value_location": {"metric": {"metric_id": key,
                                                     "params": {"type": METRIC_TYPE + family.name, **labels}},
                                          "param": {}},
                "value": value,
            }
            rows.append([family.name, ", ".join(f"{k}={v}" for k, v in labels.items()), f"{value:.6g}"])
    when = datetime.fromtimestamp(at, timezone.utc)
    verdict = _verdict(samples)
    widgets = [
        _widget(monitor, at, "counter", f"{monitor}: {verdict}",
                {"counters": [{"value": verdict, "label": f"{monitor} at {when:%Y-%m-%d %H:%M:%S} UTC"}]}),
        _widget(monitor, at, "table", "The window's values (as on /metrics)",
                {"header": ["family", "labels", "value"], "data": rows}, page_size=max(5, len(rows))),
    ]
    return {
        "report": {"items": []},
        "name": f"{monitor} {when:%Y-%m-%d %H:%M:%S}",
        "timestamp": when.replace(tzinfo=None).isoformat(),
        "metadata": {"monitor": monitor, **(metadata or {})},
        "tags": [],
        "metric_results": results,
        "top_level_metrics": list(results),
        "widgets": widgets,
        "tests_widgets": [],
    }


def _verdict(samples: Samples) -> str:
    by_name = {family.name: rows for family, rows in samples.items()}
    if not any(value for _, value in by_name.get(m.VERDICT_AVAILABLE.name, [])):
        return "no verdict (too few rows)"
    drifted = [labels[0] for labels, value in by_name.get(m.FEATURE_DETECTED.name, []) if value]
    return f"dataset drift on {', '.join(sorted(drifted))}" if any(
        value for _, value in by_name.get(m.DATASET_DRIFT.name, [])) else "no dataset drift"


def _widget(monitor: str, at: float, kind: str, title: str, params: dict, page_size: int = 5) -> dict[str, Any]:
    return {"type": kind, "title": title, "size": 2,
            "id": str(uuid.uuid5(SNAPSHOT_ID_NAMESPACE, f"{monitor}/{at!r}/{kind}")),
            "details": "", "params": params, "insights": [], "additionalGraphs": [], "alerts": [], "tabs": [],
            "widgets": [], "pageSize": page_size}
