"""Per-task quality: what a monitor's model predicts decides its prediction-drift column, its quality
metrics and the kind of its target. One module per task (binary.py, multiclass.py, regression.py) and
probabilistic.py, a metric family the classification tasks share when they log scores.

Each task is a plain object with the same few methods, so validate.py and evaluate.py compose them
instead of branching on the task: how a page's prediction and target fields parse, which columns the
quality frame holds, the Evidently metrics and their plain values, the class names. No I/O.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol

import numpy as np
import pandas as pd
from evidently import DataDefinition
from evidently.metrics import Precision, Recall

from log_processor.monitors import BINARY, MULTICLASS, REGRESSION, Monitor


@dataclass(frozen=True)
class TaskQuality:
    """One task's quality on a set of labelled rows (a window's or the reference's)."""
    metrics: dict[str, float]                            # mlmon_classification_quality / mlmon_regression_quality
    per_class: dict[tuple[str, str], float] = field(default_factory=dict)     # (class, metric): multi-class
    probabilistic: dict[str, float] = field(default_factory=dict)             # roc_auc, log_loss, brier, calibration_error
    calibration_curve: dict[str, tuple[float, float]] = field(default_factory=dict)   # bin -> (predicted, observed)


class Task(Protocol):
    name: str
    prediction_kind: str       # numerical | categorical: the prediction-drift column's type
    target_kind: str           # numerical | categorical: the target-drift column's type
    drift_column: str          # the window frame's column whose drift is the prediction drift

    def prediction_field(self, monitor: Monitor) -> str: ...
    # parsing (validate.py): the window frame's prediction columns, and the feedback's target column
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


# Evidently's Precision, Recall and F1Score each draw the same confusion matrix: the classifiers keep F1's.
ONE_CONFUSION_MATRIX: dict[type, dict[str, bool]] = {Precision: {"conf_matrix": False}, Recall: {"conf_matrix": False}}


def task_for(monitor: Monitor) -> Task:
    from log_processor.tasks import binary, multiclass, regression

    return {BINARY: binary.TASK, MULTICLASS: multiclass.TASK, REGRESSION: regression.TASK}[monitor.task]


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
