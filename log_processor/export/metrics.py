"""Prometheus series of docs/metrics.md, in a registry owned by the app (no global registry).

The exporter remembers every label set it has set per monitor, so that a window that became empty
or too small *removes* the drift and quality series instead of leaving an old verdict on show.
"""
from __future__ import annotations

import threading
from collections import Counter
from typing import Iterable

from prometheus_client import CollectorRegistry, Counter as PromCounter, Gauge, Histogram

from log_processor.evaluate import ColumnDrift, Evaluation, Reference
from log_processor.monitors import REGRESSION
from log_processor.tasks import TaskQuality
from log_processor.validate import REJECT_REASONS
from log_processor.window import Window

OUTCOMES = ("ok", "insufficient_data", "error")
STORE_OPERATIONS = ("search", "feedback", "write_summary", "connect")
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class Exporter:
    def __init__(self, monitor_names: Iterable[str]):
        self.registry = CollectorRegistry()
        self._lock = threading.Lock()
        self._owned: dict[tuple[Gauge, str], set[tuple[str, ...]]] = {}

        def gauge(name: str, doc: str, *labels: str) -> Gauge:
            return Gauge(name, doc, ("monitor", *labels), registry=self.registry)

        self.verdict_available = gauge("mlmon_verdict_available", "1 when the drift/quality series describe the last window")
        self.dataset_drift = gauge("mlmon_dataset_drift", "1 when Evidently's dataset drift test fired")
        self.drifted_features = gauge("mlmon_drifted_features", "Number of drifted feature columns")
        self.drifted_share = gauge("mlmon_drifted_features_share", "Drifted / all feature columns")
        self.feature_score = gauge("mlmon_feature_drift_score", "Drift statistic per feature", "feature", "method")
        self.feature_threshold = gauge("mlmon_feature_drift_threshold", "Threshold of the drift test", "feature", "method")
        self.feature_detected = gauge("mlmon_feature_drift_detected", "1 when the feature drifted", "feature", "method")
        self.feature_p_value = gauge("mlmon_feature_drift_p_value",
                                     "Share of unshifted windows of this size scoring at least this high "
                                     "(calibrated monitors)", "feature", "method")
        self.prediction_score = gauge("mlmon_prediction_drift_score", "Drift statistic of the prediction", "column", "method")
        self.prediction_detected = gauge("mlmon_prediction_drift_detected", "1 when the prediction drifted", "column", "method")
        self.prediction_threshold = gauge("mlmon_prediction_drift_threshold", "Threshold of the prediction drift test",
                                          "column", "method")
        self.prediction_p_value = gauge("mlmon_prediction_drift_p_value",
                                        "Share of unshifted windows of this size scoring at least this high "
                                        "(calibrated monitors)", "column", "method")
        self.target_score = gauge("mlmon_target_drift_score", "Drift statistic of the realized target (labelled rows)",
                                  "column", "method")
        self.target_threshold = gauge("mlmon_target_drift_threshold", "Threshold of the target drift test",
                                      "column", "method")
        self.target_detected = gauge("mlmon_target_drift_detected", "1 when the realized target drifted",
                                     "column", "method")
        self.target_p_value = gauge("mlmon_target_drift_p_value",
                                    "Share of unshifted windows with this many labelled rows scoring at least this high "
                                    "(calibrated monitors)", "column", "method")
        self.quality = gauge("mlmon_classification_quality", "Quality on labelled rows", "metric")
        self.estimated = gauge("mlmon_estimated_classification_quality",
                               "Quality expected from the calibrated scores, over all rows of the window", "metric")
        self.estimated_lower = gauge("mlmon_estimated_classification_quality_lower",
                                     "Lower edge of the estimate's band", "metric")
        self.estimated_upper = gauge("mlmon_estimated_classification_quality_upper",
                                     "Upper edge of the estimate's band", "metric")
        self.estimation_error = gauge("mlmon_estimation_error",
                                      "Estimated minus realized quality on the window's labelled rows", "metric")
        self.reference_quality = gauge("mlmon_reference_classification_quality",
                                       "Quality on the reference's labelled rows", "metric")
        self.calibration_error = gauge("mlmon_score_calibration_error",
                                       "Expected calibration error on the reference (calibrated: out of fold)",
                                       "scores", "method")
        self.estimation_margin = gauge("mlmon_estimation_alert_margin",
                                       "EstimatedQualityDrop fires this far below the reference quality")
        self.task = gauge("mlmon_monitor_task", "1 for the monitor's task (monitors.yaml task:)", "task")
        self.regression_quality = gauge("mlmon_regression_quality", "Regression quality on labelled rows", "metric")
        self.reference_regression_quality = gauge("mlmon_reference_regression_quality",
                                                  "Regression quality on the reference's labelled rows", "metric")
        self.regression_alert_ratio = gauge("mlmon_regression_quality_alert_ratio",
                                            "RegressionQualityDegraded fires above this x the reference's MAE "
                                            "(monitors.yaml quality.alert_ratio)")
        self.class_quality = gauge("mlmon_class_quality", "Per-class quality on labelled rows (multi-class)",
                                   "class", "metric")
        self.probabilistic = gauge("mlmon_probabilistic_quality", "Quality of the scores as probabilities "
                                   "on labelled rows", "metric")
        self.reference_probabilistic = gauge("mlmon_reference_probabilistic_quality",
                                             "Quality of the scores as probabilities on the reference's labelled rows",
                                             "metric")
        self.calibration_curve = gauge("mlmon_calibration_curve", "Per score bin of width 0.1: mean predicted "
                                       "probability and observed share of hits (labelled rows)", "bin", "kind")
        self.class_share = gauge("mlmon_class_share", "Share of each class", "source", "class")
        self.confusion = gauge("mlmon_confusion_matrix", "Labelled rows per cell", "actual", "predicted")
        self.label_coverage = gauge("mlmon_label_coverage_ratio", "Labelled rows / current rows")
        self.label_delay = gauge("mlmon_label_delay_seconds", "Prediction to feedback delay", "quantile")
        self.window_rows = gauge("mlmon_window_rows", "Rows per window", "kind")
        self.window_start = gauge("mlmon_window_start_timestamp_seconds", "Unix time the evaluated window starts")
        self.window_end = gauge("mlmon_window_end_timestamp_seconds", "Unix time the evaluated window ends")
        self.missing_share = gauge("mlmon_missing_values_share", "Share of missing values per feature", "column")
        self.out_of_range = gauge("mlmon_feature_out_of_range_share",
                                  "Share of evaluated rows outside the reference's [min, max]", "feature")
        self.unseen_category = gauge("mlmon_feature_unseen_category_share",
                                     "Share of evaluated rows with a category the reference never had", "feature")
        self.constant_columns = gauge("mlmon_constant_columns",
                                      "Features and score that are constant / almost constant in the window", "kind")
        self.duplicated_ids = gauge("mlmon_window_duplicated_ids",
                                    "Predictions whose request id an earlier prediction of the window had")
        self.duration = Histogram("mlmon_evaluation_duration_seconds", "One evaluation cycle", ("monitor",),
                                  buckets=DURATION_BUCKETS, registry=self.registry)
        self.evaluations = PromCounter("mlmon_evaluations", "Evaluation cycles by outcome", ("monitor", "outcome"),
                                       registry=self.registry)
        self.last_success = gauge("mlmon_last_success_timestamp_seconds", "Unix time of the last cycle without error")
        self.last_evaluation = gauge("mlmon_last_evaluation_timestamp_seconds", "Unix time of the last cycle")
        self.store_errors = PromCounter("mlmon_store_errors", "Store failures", ("monitor", "operation"),
                                        registry=self.registry)
        self.rejected = PromCounter("mlmon_rejected_documents", "Documents skipped", ("monitor", "reason"),
                                    registry=self.registry)
        self.info = gauge("mlmon_info", "What is compared with what", "model_name", "model_version",
                          "reference_version", "reference_hash")
        for name in monitor_names:   # counters start at 0 so rate() and increase() work from the start
            for outcome in OUTCOMES:
                self.evaluations.labels(name, outcome)
            for operation in STORE_OPERATIONS:
                self.store_errors.labels(name, operation)
            for reason in REJECT_REASONS:
                self.rejected.labels(name, reason)
            self.verdict_available.labels(name).set(0)

    # --- label bookkeeping -----------------------------------------------------------------------
    def _set(self, gauge: Gauge, monitor: str, labels: tuple[str, ...], value: float) -> None:
        gauge.labels(monitor, *labels).set(value)
        self._owned.setdefault((gauge, monitor), set()).add(labels)

    def _clear(self, monitor: str, *gauges: Gauge) -> None:
        for gauge in gauges:
            for labels in self._owned.pop((gauge, monitor), set()):
                try:
                    gauge.remove(monitor, *labels)
                except KeyError:
                    pass

    def _verdict_gauges(self) -> tuple[Gauge, ...]:
        return (self.dataset_drift, self.drifted_features, self.drifted_share, self.feature_score,
                self.feature_threshold, self.feature_detected, self.feature_p_value, self.prediction_score,
                self.prediction_threshold, self.prediction_detected, self.prediction_p_value,
                self.target_score, self.target_threshold, self.target_detected, self.target_p_value,
                self.quality, self.class_share, self.confusion, self.out_of_range, self.unseen_category,
                self.constant_columns, self.estimated, self.estimated_lower, self.estimated_upper,
                self.estimation_error, self.regression_quality, self.class_quality, self.probabilistic,
                self.calibration_curve)

    # --- what the scheduler calls ----------------------------------------------------------------
    def reference(self, monitor: str, reference: Reference, alert_margin: float | None = None, *,
                  task: str | None = None, alert_ratio: float | None = None) -> None:
        with self._lock:
            self._clear(monitor, self.info, self.reference_quality, self.calibration_error, self.estimation_margin,
                        self.task, self.reference_regression_quality, self.reference_probabilistic,
                        self.regression_alert_ratio)
            self._set(self.info, monitor, (reference.model_name, reference.model_version, reference.version,
                                           reference.sha256), 1)
            if task is not None:
                self._set(self.task, monitor, (task,), 1)
            if alert_ratio is not None:
                self._set(self.regression_alert_ratio, monitor, (), alert_ratio)
            if reference.quality_values is not None:
                self._task_quality(monitor, task, reference.quality_values, self.reference_quality,
                                   self.reference_regression_quality, self.reference_probabilistic, per_class=None)
            sc = reference.score_calibration
            if sc is not None:
                for metric, value in sc.reference_quality.items():
                    self._set(self.reference_quality, monitor, (metric,), value)
                self._set(self.calibration_error, monitor, ("calibrated", sc.method), sc.calibration_error)
                self._set(self.calibration_error, monitor, ("raw", sc.method), sc.raw_calibration_error)
            if alert_margin is not None:
                self._set(self.estimation_margin, monitor, (), alert_margin)

    def window(self, monitor: str, window: Window, reference_rows: int, evaluation: Evaluation | None) -> None:
        """Export one evaluated window; `evaluation` None means too few rows for a verdict."""
        with self._lock:
            self._clear(monitor, *self._verdict_gauges(), self.label_delay, self.window_rows, self.missing_share)
            self._set(self.duplicated_ids, monitor, (), window.duplicated_ids)
            self._set(self.window_start, monitor, (), window.start)
            self._set(self.window_end, monitor, (), window.end)
            rows = {"current": window.rows, "reference": reference_rows, "labelled": window.labelled,
                    "evaluated": evaluation.evaluated_rows if evaluation else 0}
            for kind, value in rows.items():
                self._set(self.window_rows, monitor, (kind,), value)
            self._set(self.label_coverage, monitor, (), window.label_coverage)
            for quantile, value in window.label_delay_quantiles().items():
                self._set(self.label_delay, monitor, (quantile,), value)
            for column, share in window.missing_share.items():
                self._set(self.missing_share, monitor, (column,), share)
            self._set(self.verdict_available, monitor, (), 1 if evaluation else 0)
            if evaluation is not None:
                self._evaluation(monitor, evaluation)

    def _evaluation(self, monitor: str, ev: Evaluation) -> None:
        self._set(self.dataset_drift, monitor, (), int(ev.dataset_drift))
        self._set(self.drifted_features, monitor, (), len(ev.drifted_features))
        self._set(self.drifted_share, monitor, (), ev.drifted_share)
        for f in ev.feature_drift:
            self._set(self.feature_score, monitor, (f.column, f.method), f.score)
            self._set(self.feature_threshold, monitor, (f.column, f.method), f.threshold)
            self._set(self.feature_detected, monitor, (f.column, f.method), int(f.detected))
            if f.p_value is not None:
                self._set(self.feature_p_value, monitor, (f.column, f.method), f.p_value)
        self._column_drift(monitor, ev.prediction_drift, self.prediction_score, self.prediction_threshold,
                           self.prediction_detected, self.prediction_p_value)
        if ev.target_drift is not None:
            self._column_drift(monitor, ev.target_drift, self.target_score, self.target_threshold,
                               self.target_detected, self.target_p_value)
        self._task_quality(monitor, ev.task, TaskQuality(ev.quality, ev.class_quality, ev.probabilistic),
                           self.quality, self.regression_quality, self.probabilistic, per_class=self.class_quality)
        for bin_, (predicted, observed) in ev.calibration_curve.items():
            self._set(self.calibration_curve, monitor, (bin_, "predicted"), predicted)
            self._set(self.calibration_curve, monitor, (bin_, "observed"), observed)
        for (source, cls), share in ev.class_share.items():
            self._set(self.class_share, monitor, (source, cls), share)
        for (actual, predicted), rows in ev.confusion.items():
            self._set(self.confusion, monitor, (actual, predicted), rows)
        st = ev.stability
        for feature, share in st.out_of_range_share.items():
            self._set(self.out_of_range, monitor, (feature,), share)
        for feature, share in st.unseen_category_share.items():
            self._set(self.unseen_category, monitor, (feature,), share)
        self._set(self.constant_columns, monitor, ("constant",), len(st.constant_columns))
        self._set(self.constant_columns, monitor, ("almost_constant",), len(st.almost_constant_columns))
        if ev.estimation is not None:
            for metric, e in ev.estimation.estimates.items():
                self._set(self.estimated, monitor, (metric,), e.value)
                self._set(self.estimated_lower, monitor, (metric,), e.lower)
                self._set(self.estimated_upper, monitor, (metric,), e.upper)
            for metric, error in ev.estimation.error.items():
                self._set(self.estimation_error, monitor, (metric,), error)

    def _task_quality(self, monitor: str, task: str | None, q: TaskQuality, classification: Gauge,
                      regression: Gauge, probabilistic: Gauge, *, per_class: Gauge | None) -> None:
        """A task's quality into the gauges of its kind (a window's or the reference's; per class: the
        window's only, `per_class` None for the reference)."""
        for metric, value in q.metrics.items():
            self._set(regression if task == REGRESSION else classification, monitor, (metric,), value)
        for (cls, metric), value in q.per_class.items() if per_class is not None else ():
            self._set(per_class, monitor, (cls, metric), value)
        for metric, value in q.probabilistic.items():
            self._set(probabilistic, monitor, (metric,), value)

    def _column_drift(self, monitor: str, d: ColumnDrift, score: Gauge, threshold: Gauge, detected: Gauge,
                      p_value: Gauge) -> None:
        self._set(score, monitor, (d.column, d.method), d.score)
        self._set(threshold, monitor, (d.column, d.method), d.threshold)
        self._set(detected, monitor, (d.column, d.method), int(d.detected))
        if d.p_value is not None:
            self._set(p_value, monitor, (d.column, d.method), d.p_value)

    def rejected_documents(self, monitor: str, counts: Counter) -> None:
        for reason, n in counts.items():
            if n:
                self.rejected.labels(monitor, reason).inc(n)

    def store_error(self, monitor: str, operation: str) -> None:
        self.store_errors.labels(monitor, operation).inc()

    def cycle(self, monitor: str, outcome: str, duration: float, finished_at: float) -> None:
        self.evaluations.labels(monitor, outcome).inc()
        self.duration.labels(monitor).observe(duration)
        self.last_evaluation.labels(monitor).set(finished_at)
        if outcome != "error":
            self.last_success.labels(monitor).set(finished_at)
