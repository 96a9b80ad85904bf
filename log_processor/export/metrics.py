"""Prometheus series of docs/metrics.md, in a registry owned by the app (no global registry).

The gauges that describe a window or a reference are not set one by one: each cycle computes every
sample of its monitor anew (`window_samples`, `reference_samples`, pure), the exporter swaps them in
at once, and a custom collector renders whatever each monitor's latest samples hold, the way
prometheus_client's own collectors render state they do not own. A series that the latest window no
longer has (it became empty, too small, or lost its labels) is simply not rendered: no hand-kept
list of gauges to clear, and no old verdict left on show. The task's gauges come from the task
(tasks/); the counters, the histogram and the timestamps are prometheus_client's own metrics.
"""
from __future__ import annotations

import threading
from collections import Counter
from typing import Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter as PromCounter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from common.process_metrics import add_process_collectors
from log_processor.columns import REJECT_REASONS
from log_processor.evaluate.evaluation import ColumnDrift, Evaluation
from log_processor.evaluate.reference import Reference
from log_processor.evaluate.root_cause import Cause
from log_processor.evaluate.segments import SegmentEvaluation
from log_processor.monitors import Monitor
from log_processor.read.window import Window
from log_processor.shard import Shard
from log_processor.tasks import TASKS, task_for
from log_processor.tasks.base import REFERENCE_CLASSIFICATION_QUALITY, Family, Samples, samples_of

OUTCOMES = ("ok", "insufficient_data", "error")
STORE_OPERATIONS = ("search", "feedback", "write_summary", "connect")
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

DRIFT = "Share of unshifted windows of this size scoring at least this high (monitors with drift.alpha)"

# --- what a window exports (every task) --------------------------------------------------------------
VERDICT_AVAILABLE = Family("mlmon_verdict_available", "1 when the drift/quality series describe the last window")
DATASET_DRIFT = Family("mlmon_dataset_drift", "1 when Evidently's dataset drift test fired")
DRIFTED_FEATURES = Family("mlmon_drifted_features", "Number of drifted feature columns")
DRIFTED_SHARE = Family("mlmon_drifted_features_share", "Drifted / all feature columns")
FEATURE_SCORE = Family("mlmon_feature_drift_score", "Drift statistic per feature", ("feature", "method"))
FEATURE_THRESHOLD = Family("mlmon_feature_drift_threshold", "Threshold of the drift test", ("feature", "method"))
FEATURE_DETECTED = Family("mlmon_feature_drift_detected", "1 when the feature drifted", ("feature", "method"))
FEATURE_P_VALUE = Family("mlmon_feature_drift_p_value", DRIFT, ("feature", "method"))
PREDICTION_SCORE = Family("mlmon_prediction_drift_score", "Drift statistic of the prediction", ("column", "method"))
PREDICTION_DETECTED = Family("mlmon_prediction_drift_detected", "1 when the prediction drifted", ("column", "method"))
PREDICTION_THRESHOLD = Family("mlmon_prediction_drift_threshold", "Threshold of the prediction drift test",
                              ("column", "method"))
PREDICTION_P_VALUE = Family("mlmon_prediction_drift_p_value", DRIFT, ("column", "method"))
TARGET_SCORE = Family("mlmon_target_drift_score", "Drift statistic of the realized target (labelled rows)",
                      ("column", "method"))
TARGET_THRESHOLD = Family("mlmon_target_drift_threshold", "Threshold of the target drift test", ("column", "method"))
TARGET_DETECTED = Family("mlmon_target_drift_detected", "1 when the realized target drifted", ("column", "method"))
TARGET_P_VALUE = Family("mlmon_target_drift_p_value", "Share of unshifted windows with this many labelled rows "
                        "scoring at least this high (monitors with drift.alpha)", ("column", "method"))
ESTIMATED = Family("mlmon_estimated_classification_quality",
                   "Quality expected from the calibrated scores, over all rows of the window", ("metric",))
ESTIMATED_LOWER = Family("mlmon_estimated_classification_quality_lower", "Lower edge of the estimate's band",
                         ("metric",))
ESTIMATED_UPPER = Family("mlmon_estimated_classification_quality_upper", "Upper edge of the estimate's band",
                         ("metric",))
ESTIMATION_ERROR = Family("mlmon_estimation_error", "Estimated minus realized quality on the window's labelled rows",
                          ("metric",))
PROBABILISTIC = Family("mlmon_probabilistic_quality", "Quality of the scores as probabilities on labelled rows",
                       ("metric",))
CALIBRATION_CURVE = Family("mlmon_calibration_curve", "Per score bin of width 0.1: mean predicted probability and "
                           "observed share of hits (labelled rows)", ("bin", "kind"))
CLASS_SHARE = Family("mlmon_class_share", "Share of each class", ("source", "class"))
CONFUSION = Family("mlmon_confusion_matrix", "Labelled rows per cell", ("actual", "predicted"))
LABEL_COVERAGE = Family("mlmon_label_coverage_ratio", "Labelled rows / current rows")
LABEL_DELAY = Family("mlmon_label_delay_seconds", "Prediction to feedback delay", ("quantile",))
WINDOW_ROWS = Family("mlmon_window_rows", "Rows per window", ("kind",))
WINDOW_START = Family("mlmon_window_start_timestamp_seconds", "Unix time the evaluated window starts")
WINDOW_END = Family("mlmon_window_end_timestamp_seconds", "Unix time the evaluated window ends")
MISSING_SHARE = Family("mlmon_missing_values_share", "Share of missing values per feature", ("column",))
OUT_OF_RANGE = Family("mlmon_feature_out_of_range_share", "Share of evaluated rows outside the reference's [min, max]",
                      ("feature",))
UNSEEN_CATEGORY = Family("mlmon_feature_unseen_category_share",
                         "Share of evaluated rows with a category the reference never had", ("feature",))
CONSTANT_COLUMNS = Family("mlmon_constant_columns",
                          "Features and score that are constant / almost constant in the window", ("kind",))
DUPLICATED_IDS = Family("mlmon_window_duplicated_ids",
                        "Predictions whose request id an earlier prediction of the window had")
SAMPLING_RATE = Family("mlmon_window_sampling_rate",
                       "Share of the window's requests read from the store (1: all; read/sampled.py)")

# --- what a reference exports -------------------------------------------------------------------------
INFO = Family("mlmon_info", "What is compared with what",
              ("model_name", "model_version", "reference_version", "reference_hash"))
TASK = Family("mlmon_monitor_task", "1 for the monitor's task (monitors.yaml task:)", ("task",))
REFERENCE_PROBABILISTIC = Family("mlmon_reference_probabilistic_quality",
                                 "Quality of the scores as probabilities on the reference's labelled rows", ("metric",))
SCORE_CALIBRATION_ERROR = Family("mlmon_score_calibration_error",
                                 "Expected calibration error on the reference (calibrated: out of fold)",
                                 ("scores", "method"))
ESTIMATION_MARGIN = Family("mlmon_estimation_alert_margin",
                           "EstimatedQualityDrop fires this far below the reference quality")

GENERAL = (VERDICT_AVAILABLE, DATASET_DRIFT, DRIFTED_FEATURES, DRIFTED_SHARE, FEATURE_SCORE, FEATURE_THRESHOLD,
           FEATURE_DETECTED, FEATURE_P_VALUE, PREDICTION_SCORE, PREDICTION_DETECTED, PREDICTION_THRESHOLD,
           PREDICTION_P_VALUE, TARGET_SCORE, TARGET_THRESHOLD, TARGET_DETECTED, TARGET_P_VALUE, ESTIMATED,
           ESTIMATED_LOWER, ESTIMATED_UPPER, ESTIMATION_ERROR, PROBABILISTIC, CALIBRATION_CURVE, CLASS_SHARE,
           CONFUSION, LABEL_COVERAGE, LABEL_DELAY, WINDOW_ROWS, WINDOW_START, WINDOW_END, MISSING_SHARE,
           OUT_OF_RANGE, UNSEEN_CATEGORY, CONSTANT_COLUMNS, DUPLICATED_IDS, INFO, TASK, REFERENCE_PROBABILISTIC,
           SCORE_CALIBRATION_ERROR, ESTIMATION_MARGIN, SAMPLING_RATE)


# --- segments and root causes (monitors.yaml `segments:`; evaluate/segments.py, evaluate/root_cause.py) ------
# A `segment` label only for the worst K segments of a monitor (LOGPROC_SEGMENT_GAUGES); the summary
# document holds every segment. `field` is the segment field (a monitors.yaml key), `segment` its value.
SEGMENTS = Family("mlmon_segments", "Segments of the last window: evaluated (tested), flagged, skipped (below "
                  "segments.min_rows), pooled (distinct values pooled into `other`), exported (with a segment label)",
                  ("state",))
SEGMENT_ROWS = Family("mlmon_segment_rows", "Evaluated rows of a segment (worst K only)", ("field", "segment"))
SEGMENT_SHARE = Family("mlmon_segment_traffic_share", "A segment's share of the evaluated rows (worst K only)",
                       ("field", "segment"))
SEGMENT_DRIFT = Family("mlmon_segment_drift_detected", "1 when a feature, the prediction or the target drifted in "
                       "the segment (Benjamini-Hochberg over all segments x tests at drift.alpha; worst K only)",
                       ("field", "segment"))
SEGMENT_QUALITY_DEGRADED = Family("mlmon_segment_quality_degraded", "1 when the segment's quality is worse than the "
                                  "reference's by more than segments.quality_margin (worst K only)", ("field", "segment"))
SEGMENT_P_VALUE = Family("mlmon_segment_min_adjusted_p_value", "Smallest Benjamini-Hochberg adjusted p-value of the "
                         "segment's tests (worst K only)", ("field", "segment"))
SEGMENT_DRIFTED_COLUMN = Family("mlmon_segment_drifted_column", "Score / threshold of each drifted column of a "
                                "flagged segment (worst K only)", ("field", "segment", "column"))
SEGMENT_QUALITY = Family("mlmon_segment_quality", "The segment's quality on its labelled rows (accuracy or mae; "
                         "worst K only)", ("field", "segment", "metric"))
SEGMENT_ESTIMATED = Family("mlmon_segment_estimated_quality", "The segment's quality estimated from calibrated "
                           "scores (monitors with estimation; worst K only)", ("field", "segment", "metric"))
FEATURE_IMPORTANCE = Family("mlmon_feature_importance", "Permutation importance of each feature for the model, "
                            "on the reference (sums to 1)", ("feature",))
ROOT_CAUSE = Family("mlmon_root_cause", "Drifted features ranked by drift x importance: the weight (rank 1 first)",
                    ("rank", "feature"))
ROOT_CAUSE_DRIFT = Family("mlmon_root_cause_drift", "Drifted features ranked: score / threshold at the worst place "
                          "the feature drifted (window or segment)", ("rank", "feature"))
SEGMENT_FAMILIES = (SEGMENTS, SEGMENT_ROWS, SEGMENT_SHARE, SEGMENT_DRIFT, SEGMENT_QUALITY_DEGRADED, SEGMENT_P_VALUE,
                    SEGMENT_DRIFTED_COLUMN, SEGMENT_QUALITY, SEGMENT_ESTIMATED, FEATURE_IMPORTANCE, ROOT_CAUSE,
                    ROOT_CAUSE_DRIFT)
SEGMENT_GAUGES = 10     # K: segments exported with a label per monitor (LOGPROC_SEGMENT_GAUGES)


def segment_samples(segments: SegmentEvaluation | None, causes: tuple[Cause, ...], top_k: int) -> Samples:
    """The segment series of one window: the counts, the worst `top_k` segments, the ranked causes."""
    out: Samples = {}
    if causes:
        out[ROOT_CAUSE] = [((str(i), c.feature), c.weight) for i, c in enumerate(causes, 1)]
        out[ROOT_CAUSE_DRIFT] = [((str(i), c.feature), c.drift) for i, c in enumerate(causes, 1)]
    if segments is None:
        return out
    shown = segments.segments[:top_k]
    out[SEGMENTS] = [(("evaluated",), segments.evaluated), (("flagged",), segments.flagged),
                     (("skipped",), segments.skipped), (("pooled",), sum(segments.pooled.values())),
                     (("exported",), len(shown))]
    for s in shown:
        key = (s.field, s.value)
        out.setdefault(SEGMENT_ROWS, []).append((key, s.rows))
        out.setdefault(SEGMENT_SHARE, []).append((key, s.share))
        if s.tested:
            out.setdefault(SEGMENT_DRIFT, []).append((key, float(s.drift_detected)))
            out.setdefault(SEGMENT_QUALITY_DEGRADED, []).append((key, float(s.quality_degraded)))
            out.setdefault(SEGMENT_P_VALUE, []).append((key, s.min_adjusted))
        for t in s.tests:
            if t.detected and t.kind != "quality" and t.threshold > 0:
                out.setdefault(SEGMENT_DRIFTED_COLUMN, []).append(((*key, t.column), t.score / t.threshold))
        for metric, value in s.quality.items():
            out.setdefault(SEGMENT_QUALITY, []).append(((*key, metric), value))
        for metric, value in s.estimated.items():
            out.setdefault(SEGMENT_ESTIMATED, []).append(((*key, metric), value))
    return out


def families() -> tuple[Family, ...]:
    """Every gauge family the collector renders: the general ones, then each task's (once each)."""
    out = {f.name: f for f in (*GENERAL, *SEGMENT_FAMILIES)}
    for task in TASKS.values():
        out.update({f.name: f for f in task.families})
    return tuple(out.values())


# --- pure: what a monitor exports ------------------------------------------------------------------------

def reference_samples(monitor: Monitor, reference: Reference) -> Samples:
    """The reference's series: what is compared, the task, its quality and the score calibration."""
    task = task_for(monitor)
    out: Samples = {INFO: [((reference.model_name, reference.model_version, reference.version, reference.sha256), 1.0)],
                    TASK: [((task.name,), 1.0)]}
    out.update(task.reference_samples(reference.quality_values, monitor))
    if reference.quality_values is not None:
        out.update(samples_of(REFERENCE_PROBABILISTIC, reference.quality_values.probabilistic))
    sc = reference.score_calibration
    if sc is not None:    # the estimation's view of the reference quality, on the rows it was fitted on
        merged = dict(out.get(REFERENCE_CLASSIFICATION_QUALITY, []))
        merged.update({(metric,): value for metric, value in sc.reference_quality.items()})
        out[REFERENCE_CLASSIFICATION_QUALITY] = list(merged.items())
        out[SCORE_CALIBRATION_ERROR] = [(("calibrated", sc.method), sc.calibration_error),
                                        (("raw", sc.method), sc.raw_calibration_error)]
    if monitor.estimation is not None:
        out[ESTIMATION_MARGIN] = [((), monitor.estimation.alert_margin)]
    return out


def window_samples(window: Window, reference_rows: int, ev: Evaluation | None, monitor: Monitor) -> Samples:
    """One window's series; `ev` None (too few rows for a verdict) leaves only the window's facts."""
    out: Samples = {
        DUPLICATED_IDS: [((), window.duplicated_ids)],
        WINDOW_START: [((), window.start)], WINDOW_END: [((), window.end)],
        LABEL_COVERAGE: [((), window.label_coverage)],
        VERDICT_AVAILABLE: [((), 1.0 if ev is not None else 0.0)],
        **samples_of(WINDOW_ROWS, {"current": window.rows, "reference": reference_rows, "labelled": window.labelled,
                                   "evaluated": ev.evaluated_rows if ev else 0,
                                   **({"unkeyed": window.figures.unkeyed} if window.figures is not None else {})}),
        **samples_of(LABEL_DELAY, window.label_delay_quantiles()),
        **samples_of(MISSING_SHARE, window.missing_share),
        SAMPLING_RATE: [((), window.sampling_rate)],
    }
    if ev is not None:
        out.update(_evaluation_samples(ev, monitor))
    return {family: rows for family, rows in out.items() if rows}


def _evaluation_samples(ev: Evaluation, monitor: Monitor) -> Samples:
    features = {(f.column, f.method): f for f in ev.feature_drift}
    out: Samples = {
        DATASET_DRIFT: [((), float(ev.dataset_drift))],
        DRIFTED_FEATURES: [((), float(len(ev.drifted_features)))],
        DRIFTED_SHARE: [((), ev.drifted_share)],
        **samples_of(FEATURE_SCORE, {k: f.score for k, f in features.items()}),
        **samples_of(FEATURE_THRESHOLD, {k: f.threshold for k, f in features.items()}),
        **samples_of(FEATURE_DETECTED, {k: float(f.detected) for k, f in features.items()}),
        **samples_of(FEATURE_P_VALUE, {k: f.p_value for k, f in features.items() if f.p_value is not None}),
        **_column_drift(ev.prediction_drift, PREDICTION_SCORE, PREDICTION_THRESHOLD, PREDICTION_DETECTED,
                        PREDICTION_P_VALUE),
        **samples_of(PROBABILISTIC, ev.probabilistic),
        **samples_of(CALIBRATION_CURVE, {**{(b, "predicted"): p for b, (p, _) in ev.calibration_curve.items()},
                                         **{(b, "observed"): o for b, (_, o) in ev.calibration_curve.items()}}),
        **samples_of(CLASS_SHARE, ev.class_share),
        **samples_of(CONFUSION, ev.confusion),
        **samples_of(OUT_OF_RANGE, ev.stability.out_of_range_share),
        **samples_of(UNSEEN_CATEGORY, ev.stability.unseen_category_share),
        **samples_of(CONSTANT_COLUMNS, {"constant": len(ev.stability.constant_columns),
                                        "almost_constant": len(ev.stability.almost_constant_columns)}),
        **task_for(monitor).samples(ev.quality_values, monitor),
    }
    if ev.target_drift is not None:
        out.update(_column_drift(ev.target_drift, TARGET_SCORE, TARGET_THRESHOLD, TARGET_DETECTED, TARGET_P_VALUE))
    if ev.estimation is not None:
        estimates = ev.estimation.estimates
        out.update({**samples_of(ESTIMATED, {m: e.value for m, e in estimates.items()}),
                    **samples_of(ESTIMATED_LOWER, {m: e.lower for m, e in estimates.items()}),
                    **samples_of(ESTIMATED_UPPER, {m: e.upper for m, e in estimates.items()}),
                    **samples_of(ESTIMATION_ERROR, ev.estimation.error)})
    return out


def _column_drift(d: ColumnDrift, score: Family, threshold: Family, detected: Family, p_value: Family) -> Samples:
    key = (d.column, d.method)
    out: Samples = {score: [(key, d.score)], threshold: [(key, d.threshold)], detected: [(key, float(d.detected))]}
    if d.p_value is not None:
        out[p_value] = [(key, d.p_value)]
    return out


# --- the exporter ------------------------------------------------------------------------------------------

class _Latest(Collector):
    """Renders each monitor's latest reference and window samples at scrape time."""

    def __init__(self) -> None:
        self.samples: dict[tuple[str, str], Samples] = {}     # (monitor, "reference" | "window") -> samples
        self.lock = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        with self.lock:
            held = list(self.samples.items())
        for family in families():
            metric = GaugeMetricFamily(family.name, family.help, labels=("monitor", *family.labels))
            for (monitor, _part), samples in held:
                for labels, value in samples.get(family, ()):
                    metric.add_metric((monitor, *labels), value)
            yield metric


class Exporter:
    def __init__(self, monitor_names: Iterable[str], shard: Shard = Shard(), *, segment_gauges: int = SEGMENT_GAUGES):
        self.segment_gauges = segment_gauges
        self.registry = add_process_collectors(CollectorRegistry())   # process_*, python_info
        self._latest = _Latest()
        self.registry.register(self._latest)
        self.duration = Histogram("mlmon_evaluation_duration_seconds", "One evaluation cycle", ("monitor",),
                                  buckets=DURATION_BUCKETS, registry=self.registry)
        self.evaluations = PromCounter("mlmon_evaluations", "Evaluation cycles by outcome", ("monitor", "outcome"),
                                       registry=self.registry)
        self.last_success = Gauge("mlmon_last_success_timestamp_seconds", "Unix time of the last cycle without error",
                                  ("monitor",), registry=self.registry)
        self.last_evaluation = Gauge("mlmon_last_evaluation_timestamp_seconds", "Unix time of the last cycle",
                                     ("monitor",), registry=self.registry)
        self.store_errors = PromCounter("mlmon_store_errors", "Store failures", ("monitor", "operation"),
                                        registry=self.registry)
        self.rejected = PromCounter("mlmon_rejected_documents", "Documents skipped", ("monitor", "reason"),
                                    registry=self.registry)
        # ProcessorShardsIncomplete (rules/ml_monitoring.yml) counts the replicas against n
        Gauge("mlmon_processor_shards", "Replicas the monitors are spread over (LOGPROC_SHARD=i/n: n), by this "
              "replica's i", ("shard",), registry=self.registry).labels(str(shard.index)).set(shard.count)
        for name in monitor_names:   # counters start at 0 so rate() and increase() work from the start
            for outcome in OUTCOMES:
                self.evaluations.labels(name, outcome)
            for operation in STORE_OPERATIONS:
                self.store_errors.labels(name, operation)
            for reason in REJECT_REASONS:
                self.rejected.labels(name, reason)
            self._swap(name, "window", {VERDICT_AVAILABLE: [((), 0.0)]})

    def _swap(self, monitor: str, part: str, samples: Samples) -> None:
        with self._latest.lock:
            self._latest.samples[(monitor, part)] = samples

    def latest(self, monitor: str) -> Samples:
        """The monitor's samples on show now, its reference's and its window's (the Evidently UI's
        snapshot takes its values from them: export/evidently_snapshot.py)."""
        with self._latest.lock:
            return {**self._latest.samples.get((monitor, "reference"), {}),
                    **self._latest.samples.get((monitor, "window"), {})}

    # --- what the runner calls -------------------------------------------------------------------
    def reference(self, monitor: Monitor, reference: Reference) -> None:
        self._swap(monitor.name, "reference", reference_samples(monitor, reference))
        if reference.importance:
            self._swap(monitor.name, "importance", samples_of(FEATURE_IMPORTANCE, reference.importance))

    def segments(self, monitor: Monitor, segments: SegmentEvaluation | None, causes: tuple[Cause, ...]) -> None:
        """The worst segments and the ranked root causes of the last window (none: nothing shown)."""
        self._swap(monitor.name, "segments", segment_samples(segments, causes, self.segment_gauges))

    def window(self, monitor: Monitor, window: Window, reference_rows: int, evaluation: Evaluation | None) -> None:
        """Export one evaluated window; `evaluation` None means too few rows for a verdict."""
        self._swap(monitor.name, "window", window_samples(window, reference_rows, evaluation, monitor))

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
