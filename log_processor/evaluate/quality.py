"""Quality on a window's labelled rows: the task's Evidently report, and the class shares and the
confusion matrix of the classifiers (counted here, not by Evidently: one pass over raw labels)."""
from __future__ import annotations

from typing import Any

import pandas as pd
from evidently import Dataset, Report

from log_processor.columns import PREDICTION, TARGET
from log_processor.evaluate.snapshot import read_snapshot
from log_processor.monitors import Monitor
from log_processor.tasks.base import Task, TaskQuality


def task_quality(task: Task, labelled: pd.DataFrame, monitor: Monitor) -> tuple[TaskQuality, Any]:
    """The task's metrics on labelled rows (a window's, or the reference's once), and the snapshot."""
    metrics = task.metrics(monitor, labelled)
    # No tests in this report: a quality metric's default test may error on a one-class window.
    snapshot = Report(list(metrics.values()), include_tests=False).run(
        Dataset.from_pandas(labelled, data_definition=task.definition(monitor)), None)
    return task.read(read_snapshot(snapshot), metrics, labelled, monitor), snapshot


def class_shares(task: Task, current: pd.DataFrame, labelled: pd.DataFrame,
                  monitor: Monitor) -> dict[tuple[str, str], float]:
    """Share of each class among the predictions and the realized labels (classifiers). Counted on the
    raw labels, then the few distinct values are named (naming 200 000 labels first cost 0.1 s a cycle)."""
    shares: dict[tuple[str, str], float] = {}
    if task.target_kind != "categorical":       # a number has no classes
        return shares
    for source, series in (("prediction", current[PREDICTION]), ("target", labelled[TARGET])):
        if len(series):
            counts = series.value_counts(normalize=True)
            by_name = dict(zip(task.class_names(pd.Series(counts.index), monitor), counts.to_numpy()))
            shares.update({(source, cls): float(by_name.get(cls, 0.0)) for cls in monitor.classes})
    return shares


def with_predicted_shares(class_share: dict[tuple[str, str], float],
                          predicted: dict[str, float] | None) -> dict[tuple[str, str], float]:
    """The predictions' shares replaced by the engine's over the whole window (a sampled read); the
    labels' stay the sample's (the engine cannot join them)."""
    if not predicted:
        return class_share
    return {**class_share, **{("prediction", cls): share for cls, share in predicted.items()}}


def confusion(task: Task, labelled: pd.DataFrame, monitor: Monitor) -> dict[tuple[str, str], int]:
    """Labelled rows per (actual, predicted) class, every cell of `classes` (0 where none fell)."""
    if task.target_kind != "categorical" or not len(labelled):
        return {}
    cells = labelled.groupby([TARGET, PREDICTION], sort=False).size()
    actual = task.class_names(pd.Series(cells.index.get_level_values(0)), monitor)
    predicted = task.class_names(pd.Series(cells.index.get_level_values(1)), monitor)
    counts = dict(zip(zip(actual, predicted), cells.to_numpy()))
    return {(a, p): int(counts.get((a, p), 0)) for a in monitor.classes for p in monitor.classes}
