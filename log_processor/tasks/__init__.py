"""The model kinds a monitor can watch, one module each (binary.py, multiclass.py, regression.py),
and probabilistic.py, the metric family the classifiers share when they log scores.

A task owns everything that differs between kinds: how its prediction and target fields parse, its
Evidently metrics and their plain values, its gauges, its summary-document fields and its /report
section. Reading, evaluation and export ask the task instead of branching on it (base.py: the
protocol). Adding a kind: docs/log-processor.md, "Adding a task".
"""
from __future__ import annotations

from log_processor.monitors import Monitor
from log_processor.tasks import binary, multiclass, regression
from log_processor.tasks.base import Task

TASKS: dict[str, Task] = {task.name: task for task in (binary.TASK, multiclass.TASK, regression.TASK)}


def task_for(monitor: Monitor) -> Task:
    return TASKS[monitor.task]
