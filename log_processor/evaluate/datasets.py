"""The Evidently datasets a monitor's reports run on: the drift columns (features and the task's
prediction column) and the realized target. One definition for the reference and every window."""
from __future__ import annotations

import pandas as pd
from evidently import DataDefinition, Dataset

from log_processor.columns import TARGET
from log_processor.monitors import Monitor
from log_processor.tasks import task_for
from log_processor.tasks.base import Task


def drift_definition(monitor: Monitor) -> DataDefinition:
    task = task_for(monitor)
    numerical = [f.name for f in monitor.features if f.type == "numerical"]
    categorical = [f.name for f in monitor.features if f.type == "categorical"]
    (numerical if task.prediction_kind == "numerical" else categorical).append(task.drift_column)
    return DataDefinition(numerical_columns=numerical, categorical_columns=categorical or None)


def drift_frame(frame: pd.DataFrame, monitor: Monitor) -> pd.DataFrame:
    return frame[[*monitor.feature_names, task_for(monitor).drift_column]]


def drift_dataset(frame: pd.DataFrame, monitor: Monitor) -> Dataset:
    return Dataset.from_pandas(drift_frame(frame, monitor), data_definition=drift_definition(monitor))


def target_dataset(labelled: pd.DataFrame, task: Task) -> Dataset:
    kind = "numerical_columns" if task.target_kind == "numerical" else "categorical_columns"
    return Dataset.from_pandas(labelled[[TARGET]], data_definition=DataDefinition(**{kind: [TARGET]}))
