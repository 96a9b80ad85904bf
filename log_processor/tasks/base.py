"""What every task module provides (the `Task` protocol) and the small helpers they share.

A task is a plain object with the same few members, so reading, evaluation and export compose
them instead of branching on the task: how a page's prediction and target fields parse, which
columns the quality frame holds, the Evidently metrics and their plain values, the class names, the
gauges its quality goes to, its summary-document fields and its /report title. No I/O.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol

import numpy as np
import pandas as pd
from evidently import DataDefinition
from evidently.metrics import Precision, Recall

from log_processor.monitors import Monitor


@dataclass(frozen=True)
class Family:
    """A gauge family of docs/metrics.md; every sample carries `monitor` before `labels`."""
    name: str
    help: str
    labels: tuple[str, ...] = ()


# family -> [(label values, value)]: what one monitor exports now (export/metrics.py renders it)
Samples = dict[Family, list[tuple[tuple[str, ...], float]]]


def samples_of(family: Family, values: Mapping[Any, float]) -> Samples:
    """One sample per key: a key is the label value (one label) or the tuple of them."""
    return {family: [((k,) if isinstance(k, str) else tuple(k), float(v)) for k, v in values.items()]}


@dataclass(frozen=True)
class TaskQuality:
    """One task's quality on a set of labelled rows (a window's or the reference's)."""
    metrics: dict[str, float]                            # the task's quality gauge (Task.samples)
    per_class: dict[tuple[str, str], float] = field(default_factory=dict)     # (class, metric): multi-class
    probabilistic: dict[str, float] = field(default_factory=dict)             # roc_auc, log_loss, brier, calibration_error
    calibration_curve: dict[str, tuple[float, float]] = field(default_factory=dict)   # bin -> (predicted, observed)


class Task(Protocol):
    name: str
    prediction_kind: str       # numerical | categorical: the prediction-drift column's type
    target_kind: str           # numerical | categorical: the target-drift column's type
    drift_column: str          # the window frame's column whose drift is the prediction drift

    def prediction_field(self, monitor: Monitor) -> str: ...
    # parsing (read/parse.py): the window frame's prediction columns, and the feedback's target column
    def prediction_columns(self, columns: Any, monitor: Monitor, rejects: Any) -> dict[str, np.ndarray]: ...
    def target_column(self, raw: list[Any], monitor: Monitor, rejects: Any) -> np.ndarray: ...
    def reference_columns(self, monitor: Monitor) -> list[str]: ...
    def normalise(self, frame: pd.DataFrame, monitor: Monitor) -> pd.DataFrame: ...
    def quality_frame(self, frame: pd.DataFrame, monitor: Monitor) -> pd.DataFrame: ...
    def class_names(self, labels: pd.Series, monitor: Monitor) -> pd.Series: ...   # classifiers (categorical target)
    def definition(self, monitor: Monitor) -> DataDefinition: ...
    def metrics(self, monitor: Monitor, labelled: pd.DataFrame) -> dict[str, Any]: ...
    def read(self, values: Mapping[str, Any], metrics: Mapping[str, Any], labelled: pd.DataFrame,
             monitor: Monitor) -> TaskQuality: ...
    # export: the gauges only this task sets, a window's and the reference's quality as their samples,
    # the summary document's task fields, the title of its quality section on /report
    families: tuple[Family, ...]
    title: str
    def samples(self, quality: TaskQuality, monitor: Monitor) -> Samples: ...
    def reference_samples(self, quality: TaskQuality | None, monitor: Monitor) -> Samples: ...
    # `predicted`: the engine's class shares of the whole window (a sampled read), else None
    def summary_fields(self, frame: pd.DataFrame, monitor: Monitor,
                       predicted: dict[str, float] | None = None) -> dict[str, Any]: ...
    # the Evidently UI: this task's panels on a monitor's dashboard (export/evidently_dashboard.py)
    def panels(self, monitor: Monitor) -> tuple["Panel", ...]: ...


# The classifiers' quality gauges (binary.py, multiclass.py).
CLASSIFICATION_QUALITY = Family("mlmon_classification_quality", "Quality on labelled rows", ("metric",))
REFERENCE_CLASSIFICATION_QUALITY = Family("mlmon_reference_classification_quality",
                                          "Quality on the reference's labelled rows", ("metric",))


# Evidently's Precision, Recall and F1Score each draw the same confusion matrix: the classifiers keep F1's.
ONE_CONFUSION_MATRIX: dict[type, dict[str, bool]] = {Precision: {"conf_matrix": False}, Recall: {"conf_matrix": False}}


def finite(values: Mapping[Any, Any]) -> dict[Any, float]:
    """The values that are finite numbers (a metric undefined on these rows is left out, never NaN)."""
    out = {}
    for key, value in values.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            out[key] = number
    return out


def metric_value(raw: Any, key: str = "mean") -> Any:
    """Evidently 0.7 gives some metrics as a float and others as {mean, std} (MAE, MAPE, MeanError)."""
    return raw.get(key) if isinstance(raw, dict) else raw


# --- the Evidently UI's dashboard (export/evidently_dashboard.py) -------------------------------------------

@dataclass(frozen=True)
class Series:
    """One line (or counter) of a dashboard panel: a gauge family's samples, as the snapshot of
    export/evidently_snapshot.py holds them, narrowed by labels; `legend` may name a label as {{label}}."""
    family: str
    labels: tuple[tuple[str, str], ...] = ()
    legend: str | None = None


@dataclass(frozen=True)
class Panel:
    """A panel of a monitor's Evidently UI dashboard: `kind` line, bar, counter or text; size full or half;
    a counter shows the `aggregation` (last, sum or avg) of each series over the time range."""
    title: str
    series: tuple[Series, ...]
    kind: str = "line"
    size: str = "half"
    description: str | None = None
    aggregation: str = "last"


def classification_panels(metrics: tuple[str, ...], monitor: Monitor) -> tuple[Panel, ...]:
    """The classifiers' quality against the reference's, and (monitors with `estimation`) the quality
    estimated from the scores, with its band, against the realized."""
    realized, reference = CLASSIFICATION_QUALITY.name, REFERENCE_CLASSIFICATION_QUALITY.name
    out = [Panel(f"{metric} against the reference", (Series(realized, (("metric", metric),), f"{metric} (window)"),
                                                      Series(reference, (("metric", metric),), f"{metric} (reference)")))
           for metric in metrics]
    if monitor.estimation is not None:
        for metric in ("accuracy", "f1"):
            labels = (("metric", metric),)
            out.append(Panel(f"estimated {metric} against realized", (
                Series("mlmon_estimated_classification_quality", labels, "estimated"),
                Series("mlmon_estimated_classification_quality_lower", labels, "band: lower"),
                Series("mlmon_estimated_classification_quality_upper", labels, "band: upper"),
                Series(realized, labels, "realized (labelled rows)"))))
    return tuple(out)
