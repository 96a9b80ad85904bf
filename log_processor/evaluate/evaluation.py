"""(reference, current window, monitor) → one plain Evaluation, computed by Evidently 0.7.

Pure: no I/O. Three Evidently reports per evaluation, because they look at different rows:
- drift (shared by every task): every evaluated row — per-feature `ValueDrift` (the dataset-drift
  verdict is Evidently's rule over their verdicts: `dataset_verdict`), `ValueDrift` of the task's
  prediction column (binary: the score; regression: the predicted value, numerical; multi-class: the
  predicted class, categorical); plus data stability (stability.py: values outside the reference's
  range, unseen categories, constant columns);
- quality: the labelled rows only — the task's metrics (log_processor/tasks/: binary, multiclass,
  regression, and the probabilistic family), on the window alone: the reference's own quality is
  computed once, in `prepare_reference` (alerts compare with it), so the report does not compute it
  again every cycle (docs/benchmarks.md, "Per task");
- target drift, a third and small report: `ValueDrift` of the realized targets against the
  reference's (P(y) moved), its threshold by the number of labelled rows like the features'.

The reports' snapshots travel with the Evaluation; export/reports.py renders them on request.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from evidently import Report
from evidently.metrics import ValueDrift

from log_processor.columns import PREDICTION, SCORE, TARGET
from log_processor.evaluate.datasets import drift_dataset, target_dataset
from log_processor.evaluate.drift_thresholds import DriftThresholds
from log_processor.evaluate.estimation import Estimation, estimate
from log_processor.evaluate.quality import class_shares, confusion, task_quality
from log_processor.evaluate.reference import Reference
from log_processor.evaluate.snapshot import read_snapshot, value
from log_processor.evaluate.stability import Stability, read_stability, stability_metrics
from log_processor.monitors import BINARY, DEFAULT_THRESHOLDS, THRESHOLD_METHODS, DriftRule, Monitor
from log_processor.tasks import task_for
from log_processor.tasks.base import Task, TaskQuality


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    method: str
    threshold: float
    score: float
    detected: bool
    p_value: float | None = None      # how extreme the score is under no drift (drift.alpha monitors)


@dataclass(frozen=True)
class Evaluation:
    dataset_drift: bool
    drifted_features: tuple[str, ...]
    drifted_share: float
    feature_drift: tuple[ColumnDrift, ...]
    prediction_drift: ColumnDrift
    target_drift: ColumnDrift | None                # None when too few labelled rows
    quality: dict[str, float]                       # empty when too few labelled rows
    class_share: dict[tuple[str, str], float]       # (source, class) -> share
    confusion: dict[tuple[str, str], int]           # (actual, predicted) -> rows
    evaluated_rows: int
    evaluated_labelled_rows: int
    stability: Stability
    estimation: Estimation | None = None            # monitors with `estimation` (estimation.py)
    task: str = BINARY
    class_quality: dict[tuple[str, str], float] = field(default_factory=dict)   # (class, metric): multi-class
    probabilistic: dict[str, float] = field(default_factory=dict)   # roc_auc, log_loss, brier, calibration_error
    calibration_curve: dict[str, tuple[float, float]] = field(default_factory=dict)   # bin -> (predicted, observed)
    snapshots: dict[str, Any] = field(repr=False, default_factory=dict)   # Evidently's, by report part
                                                                            # (export/reports.py renders them)

    @property
    def quality_values(self) -> TaskQuality:
        """The window's quality as the task's TaskQuality (what Task.samples exports)."""
        return TaskQuality(self.quality, self.class_quality, self.probabilistic, self.calibration_curve)


def evaluate(reference: Reference, current: pd.DataFrame, monitor: Monitor) -> Evaluation:
    """Run the reports on `current` (already sampled, at least `min_rows` rows)."""
    task = task_for(monitor)
    drift = monitor.drift
    rules: dict[str, DriftRule] = {name: drift.rule(name) for name in monitor.feature_names}
    prediction_rule = drift.prediction
    fitted = reference.drift_thresholds
    if drift.alpha is not None and fitted is None:
        raise ValueError(f"monitor {monitor.name}: drift.alpha is set but the reference has no drift thresholds")
    if fitted is not None:     # Evidently computes and tests; the thresholds by window size say where
        thresholds, prediction_threshold = fitted.thresholds(len(current))
        rules = {name: DriftRule(r.method, thresholds[name]) for name, r in rules.items()}
        prediction_rule = DriftRule(prediction_rule.method, prediction_threshold)
    value_drift = {name: ValueDrift(column=name, method=r.method, threshold=r.threshold) for name, r in rules.items()}
    prediction_metric = ValueDrift(column=task.drift_column, method=prediction_rule.method,
                                   threshold=prediction_rule.threshold)
    stability = stability_metrics(reference.bounds)
    report = Report([*value_drift.values(), prediction_metric, *stability.values()], include_tests=True)
    current_drift = drift_dataset(current, monitor)
    snapshot = report.run(current_drift, reference.drift)
    values = read_snapshot(snapshot)

    def column_drift(column: str, metric: ValueDrift, rule: DriftRule, null=None) -> ColumnDrift:
        raw, failed = values[metric.metric_id]
        return _column_drift(column, value(raw), rule, bool(failed), null, len(current))

    nulls = fitted.features if fitted is not None else {}
    features = tuple(column_drift(n, value_drift[n], rules[n], nulls.get(n)) for n in monitor.feature_names)
    dataset_drift, drifted_share = dataset_verdict(features, drift.drift_share)
    prediction = column_drift(task.prediction_field(monitor), prediction_metric, prediction_rule,
                              fitted.prediction if fitted is not None else None)

    quality = TaskQuality(metrics={})
    snapshot_quality = snapshot_target = target = None
    labelled = task.quality_frame(current, monitor)
    if len(labelled) >= monitor.min_labelled_rows and reference.target is not None:
        quality, snapshot_quality = task_quality(task, labelled, monitor)
        target, snapshot_target = _target_drift(task, reference, labelled, monitor)

    estimation = None
    if monitor.estimation is not None:
        if reference.score_calibration is None:
            raise ValueError(f"monitor {monitor.name}: estimation is set but the reference's scores were not calibrated")
        estimation = estimate(reference.score_calibration, current[SCORE].to_numpy(dtype=float),
                              current[PREDICTION].to_numpy(dtype=float), current[TARGET].to_numpy(dtype=float),
                              min_labelled_rows=monitor.min_labelled_rows, confidence=monitor.estimation.confidence)

    return Evaluation(
        dataset_drift=dataset_drift,
        drifted_features=tuple(f.column for f in features if f.detected),
        drifted_share=drifted_share,
        feature_drift=features,
        prediction_drift=prediction,
        target_drift=target,
        quality=quality.metrics,
        class_share=class_shares(task, current, labelled, monitor),
        confusion=confusion(task, labelled, monitor),
        evaluated_rows=len(current),
        evaluated_labelled_rows=len(labelled),
        stability=read_stability(reference.bounds, stability, values, current,
                                 [*monitor.feature_names, task.drift_column]),
        estimation=estimation,
        task=task.name,
        class_quality=quality.per_class,
        probabilistic=quality.probabilistic,
        calibration_curve=quality.calibration_curve,
        snapshots={part: s for part, s in (("drift", snapshot), ("quality", snapshot_quality),
                                                 ("target", snapshot_target)) if s is not None},
    )


def dataset_verdict(features: tuple[ColumnDrift, ...], drift_share: float) -> tuple[bool, float]:
    """(dataset drift, share of drifted features): Evidently's rule, the share of features whose drift
    test fired reaching `drift_share` (its `DriftedColumnsCount` test, legacy `get_dataset_drift`),
    over the `ValueDrift` verdicts the report has. `DriftedColumnsCount` itself computed every
    feature's drift a second time: 0.35 s of the drift report's 0.9 s at 200 000 rows."""
    share = sum(f.detected for f in features) / len(features)
    return share >= drift_share, share


def _target_drift(task: Task, reference: Reference, labelled: pd.DataFrame,
                  monitor: Monitor) -> tuple[ColumnDrift | None, Any]:
    """Target drift of the labelled rows against the reference's, and its snapshot; None below the
    thresholds' smallest size."""
    null, rule = _target_rule(reference.drift_thresholds, len(labelled), task.target_kind)
    if rule is None:
        return None, None
    metric = ValueDrift(column=TARGET, method=rule.method, threshold=rule.threshold)
    snapshot = Report([metric], include_tests=False).run(target_dataset(labelled, task), reference.target)
    # For a distance, Evidently's drift test is score >= threshold, so that is the verdict here too.
    score = value(read_snapshot(snapshot)[metric.metric_id][0])
    return _column_drift(monitor.target, score, rule, score >= rule.threshold, null, len(labelled)), snapshot


def _target_rule(fitted: DriftThresholds | None, labelled: int, kind: str = "categorical") -> tuple[Any, DriftRule | None]:
    """The target's null and rule for this many labelled rows: by size when the reference had labels,
    Evidently's default threshold for a monitor without drift.alpha, none below the thresholds' smallest size
    (min_labelled_rows may be smaller than the 50 rows it starts at). `kind`: the target's column type."""
    method = THRESHOLD_METHODS[kind]
    if fitted is None:
        return None, DriftRule(method, DEFAULT_THRESHOLDS[method])
    null = fitted.target
    if null is None or labelled < null.sizes[0]:
        return None, None
    return null, DriftRule(method, null.threshold(labelled, fitted.alpha))


def _column_drift(column: str, score: float, rule: DriftRule, detected: bool, null, rows: int) -> ColumnDrift:
    p_value = null.p_value(rows, score) if null is not None and math.isfinite(score) else None
    return ColumnDrift(column=column, method=rule.method, threshold=rule.threshold, score=score,
                       detected=detected, p_value=p_value)


