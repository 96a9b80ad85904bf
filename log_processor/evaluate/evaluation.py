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
  reference's (P(y) moved), calibrated by the number of labelled rows like the features.

`_read_snapshot` is the one place that knows the shape of Evidently's `Snapshot.dict()`; everything
after it works with the stable names of docs/metrics.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.metrics import ValueDrift

from log_processor.calibration import CALIBRATED_METHODS, Calibration
from log_processor.estimation import Estimation, ScoreCalibration, estimate
from log_processor.monitors import BINARY, DEFAULT_THRESHOLDS, DriftRule, Monitor
from log_processor.reports import Reports
from log_processor.stability import Bounds, Stability, read_stability, reference_bounds, stability_metrics
from log_processor.tasks import Task, TaskQuality, task_for
from log_processor.validate import PREDICTION, SCORE, TARGET


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    method: str
    threshold: float
    score: float
    detected: bool
    p_value: float | None = None      # how extreme the score is under no drift (calibrated monitors)


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
    reports: Reports = field(repr=False, default_factory=Reports)   # Evidently's pages, rendered on request


@dataclass(frozen=True)
class Reference:
    """The reference, prepared once: Evidently datasets for the drift and target reports plus what describes it."""
    frame: pd.DataFrame
    drift: Dataset
    target: Dataset | None                     # the labelled reference rows' target (None: no labels)
    model_name: str
    model_version: str
    version: str
    sha256: str
    bounds: Bounds                             # the values the reference had (data stability)
    calibration: Calibration | None = None     # thresholds by window size (monitors with drift.alpha)
    score_calibration: ScoreCalibration | None = None   # scores -> probabilities (monitors with estimation)
    quality_values: TaskQuality | None = None  # the task's quality on the reference's labelled rows

    @property
    def rows(self) -> int:
        return len(self.frame)


def _drift_definition(monitor: Monitor) -> DataDefinition:
    task = task_for(monitor)
    numerical = [f.name for f in monitor.features if f.type == "numerical"]
    categorical = [f.name for f in monitor.features if f.type == "categorical"]
    (numerical if task.prediction_kind == "numerical" else categorical).append(task.drift_column)
    return DataDefinition(numerical_columns=numerical, categorical_columns=categorical or None)


def _drift_frame(frame: pd.DataFrame, monitor: Monitor) -> pd.DataFrame:
    return frame[[*monitor.feature_names, task_for(monitor).drift_column]]


def prepare_reference(frame: pd.DataFrame, monitor: Monitor, *, model_name: str, model_version: str,
                      version: str, sha256: str) -> Reference:
    """Check the reference's columns, build its Evidently datasets and compute its own quality (done
    once per process)."""
    task = task_for(monitor)
    needed = [*monitor.feature_names, *task.reference_columns(monitor)]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(f"reference lacks columns {missing} for task {task.name} (has {list(frame.columns)})")
    if TARGET not in frame.columns:
        frame = frame.assign(**{TARGET: float("nan")})
    frame = task.normalise(frame, monitor)
    labelled = task.quality_frame(frame, monitor)
    values = _task_quality(task, labelled, monitor)[0] if len(labelled) else None
    return Reference(
        frame=frame,
        drift=Dataset.from_pandas(_drift_frame(frame, monitor), data_definition=_drift_definition(monitor)),
        target=_target_dataset(labelled, task) if len(labelled) else None, quality_values=values,
        bounds=reference_bounds(frame, monitor),
        model_name=model_name, model_version=model_version, version=version, sha256=sha256,
    )


# --- the one place that reads Evidently's snapshot -------------------------------------------------

def _read_snapshot(snapshot: Any) -> dict[str, tuple[Any, bool | None]]:
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


def _value(raw: Any) -> float:
    return float(raw) if raw is not None else math.nan


# ---------------------------------------------------------------------------------------------------

def evaluate(reference: Reference, current: pd.DataFrame, monitor: Monitor) -> Evaluation:
    """Run the reports on `current` (already sampled, at least `min_rows` rows)."""
    task = task_for(monitor)
    drift = monitor.drift
    rules: dict[str, DriftRule] = {name: drift.rule(name) for name in monitor.feature_names}
    prediction_rule = drift.prediction
    calibration = reference.calibration
    if drift.alpha is not None and calibration is None:
        raise ValueError(f"monitor {monitor.name}: drift.alpha is set but the reference was not calibrated")
    if calibration is not None:     # Evidently computes and tests; the calibration says at what threshold
        thresholds, prediction_threshold = calibration.thresholds(len(current))
        rules = {name: DriftRule(r.method, thresholds[name]) for name, r in rules.items()}
        prediction_rule = DriftRule(prediction_rule.method, prediction_threshold)
    value_drift = {name: ValueDrift(column=name, method=r.method, threshold=r.threshold) for name, r in rules.items()}
    prediction_metric = ValueDrift(column=task.drift_column, method=prediction_rule.method,
                                   threshold=prediction_rule.threshold)
    stability = stability_metrics(reference.bounds)
    report = Report([*value_drift.values(), prediction_metric, *stability.values()], include_tests=True)
    current_drift = Dataset.from_pandas(_drift_frame(current, monitor), data_definition=_drift_definition(monitor))
    snapshot = report.run(current_drift, reference.drift)
    values = _read_snapshot(snapshot)

    def column_drift(column: str, metric: ValueDrift, rule: DriftRule, null=None) -> ColumnDrift:
        value, failed = values[metric.metric_id]
        return _column_drift(column, _value(value), rule, bool(failed), null, len(current))

    nulls = calibration.features if calibration is not None else {}
    features = tuple(column_drift(n, value_drift[n], rules[n], nulls.get(n)) for n in monitor.feature_names)
    dataset_drift, drifted_share = dataset_verdict(features, drift.drift_share)
    prediction = column_drift(task.prediction_field(monitor), prediction_metric, prediction_rule,
                              calibration.prediction if calibration is not None else None)

    quality = TaskQuality(metrics={})
    snapshot_quality = snapshot_target = target = None
    labelled = task.quality_frame(current, monitor)
    if len(labelled) >= monitor.min_labelled_rows and reference.target is not None:
        quality, snapshot_quality = _task_quality(task, labelled, monitor)
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
        class_share=_class_shares(task, current, labelled, monitor),
        confusion=_confusion(task, labelled, monitor),
        evaluated_rows=len(current),
        evaluated_labelled_rows=len(labelled),
        stability=read_stability(reference.bounds, stability, values, current,
                                 [*monitor.feature_names, task.drift_column]),
        estimation=estimation,
        task=task.name,
        class_quality=quality.per_class,
        probabilistic=quality.probabilistic,
        calibration_curve=quality.calibration_curve,
        reports=Reports({"drift": snapshot, "quality": snapshot_quality, "target": snapshot_target}),
    )


def dataset_verdict(features: tuple[ColumnDrift, ...], drift_share: float) -> tuple[bool, float]:
    """(dataset drift, share of drifted features): Evidently's rule, the share of features whose drift
    test fired reaching `drift_share` (its `DriftedColumnsCount` test, legacy `get_dataset_drift`),
    over the `ValueDrift` verdicts the report has. `DriftedColumnsCount` itself computed every
    feature's drift a second time: 0.35 s of the drift report's 0.9 s at 200 000 rows."""
    share = sum(f.detected for f in features) / len(features)
    return share >= drift_share, share


def _task_quality(task: Task, labelled: pd.DataFrame, monitor: Monitor) -> tuple[TaskQuality, Any]:
    """The task's metrics on labelled rows (a window's, or the reference's once), and the snapshot."""
    metrics = task.metrics(monitor, labelled)
    # No tests in this report: a quality metric's default test may error on a one-class window.
    snapshot = Report(list(metrics.values()), include_tests=False).run(
        Dataset.from_pandas(labelled, data_definition=task.definition(monitor)), None)
    return task.read(_read_snapshot(snapshot), metrics, labelled, monitor), snapshot


def _target_dataset(labelled: pd.DataFrame, task: Task) -> Dataset:
    kind = "numerical_columns" if task.target_kind == "numerical" else "categorical_columns"
    return Dataset.from_pandas(labelled[[TARGET]], data_definition=DataDefinition(**{kind: [TARGET]}))


def _target_drift(task: Task, reference: Reference, labelled: pd.DataFrame,
                  monitor: Monitor) -> tuple[ColumnDrift | None, Any]:
    """Target drift of the labelled rows against the reference's, and its snapshot; None below the
    calibration's smallest size."""
    null, rule = _target_rule(reference.calibration, len(labelled), task.target_kind)
    if rule is None:
        return None, None
    metric = ValueDrift(column=TARGET, method=rule.method, threshold=rule.threshold)
    snapshot = Report([metric], include_tests=False).run(_target_dataset(labelled, task), reference.target)
    # For a distance, Evidently's drift test is score >= threshold, so that is the verdict here too.
    score = _value(_read_snapshot(snapshot)[metric.metric_id][0])
    return _column_drift(monitor.target, score, rule, score >= rule.threshold, null, len(labelled)), snapshot


def _target_rule(calibration: Calibration | None, labelled: int, kind: str = "categorical") -> tuple[Any, DriftRule | None]:
    """The target's null and rule for this many labelled rows: calibrated when the reference had labels,
    Evidently's default threshold for an uncalibrated monitor, none below the calibration's smallest size
    (min_labelled_rows may be smaller than the 50 rows it starts at). `kind`: the target's column type."""
    method = CALIBRATED_METHODS[kind]
    if calibration is None:
        return None, DriftRule(method, DEFAULT_THRESHOLDS[method])
    null = calibration.target
    if null is None or labelled < null.sizes[0]:
        return None, None
    return null, DriftRule(method, null.threshold(labelled, calibration.alpha))


def _column_drift(column: str, score: float, rule: DriftRule, detected: bool, null, rows: int) -> ColumnDrift:
    p_value = null.p_value(rows, score) if null is not None and math.isfinite(score) else None
    return ColumnDrift(column=column, method=rule.method, threshold=rule.threshold, score=score,
                       detected=detected, p_value=p_value)


def _class_shares(task: Task, current: pd.DataFrame, labelled: pd.DataFrame,
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


def _confusion(task: Task, labelled: pd.DataFrame, monitor: Monitor) -> dict[tuple[str, str], int]:
    """Labelled rows per (actual, predicted) class, every cell of `classes` (0 where none fell)."""
    if task.target_kind != "categorical" or not len(labelled):
        return {}
    cells = labelled.groupby([TARGET, PREDICTION], sort=False).size()
    actual = task.class_names(pd.Series(cells.index.get_level_values(0)), monitor)
    predicted = task.class_names(pd.Series(cells.index.get_level_values(1)), monitor)
    counts = dict(zip(zip(actual, predicted), cells.to_numpy()))
    return {(a, p): int(counts.get((a, p), 0)) for a in monitor.classes for p in monitor.classes}
