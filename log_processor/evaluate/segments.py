"""Drift and quality per segment of a window (monitors.yaml `segments:`), with false alarms
controlled across every segment and test at once. Pure: window frame + reference + monitor in,
a plain `SegmentEvaluation` out.

A monitor judges its whole window, where a problem in one slice of the traffic (one city, one model
version) is diluted below every threshold. Here each segment field is split into its values (the
largest `max_segments` kept, the rest pooled as `other`; an absent or non-string value is `unknown`,
read/parse.py), and each segment with at least `min_rows` rows is tested against the reference:

- feature drift, prediction drift, target drift (labelled rows): the same statistics as the
  whole-window drift report (Evidently's normed Wasserstein for numerical columns, Jensen-Shannon
  distance over category shares for categorical ones), computed here directly on numpy arrays
  (Evidently per segment costs a report each); tests/test_segments.py checks that they agree with the
  whole-window path on the same rows;
- each statistic's p-value comes from the reference's null distribution for a window of the
  segment's own size (drift_thresholds.py: every size from 50 rows), so a segment of 150 rows and one
  of 5 000 are judged on their own scales. The 2 000 null draws resolve p-values down to 1/2001;
  beyond the largest draw the tail is extended exponentially with the mean excess of the draws' top
  10 % (the null statistics have Gaussian-like tails, lighter than exponential, so the extension
  errs towards larger p-values, i.e. fewer alarms);
- quality for the task on the labelled rows (classifiers: accuracy, tested one-sided against the
  reference's accuracy minus `quality_margin` with the exact binomial tail; regression: MAE, tested
  one-sided against the reference's MAE x quality.alert_ratio (else 1 + quality_margin) with a
  normal approximation of the mean absolute error); the estimated accuracy where the monitor has
  `estimation` (not a test: shown beside the realized one).

Multiplicity: all tests of all segments of a window form one family, and the Benjamini-Hochberg
procedure at q = drift.alpha decides which are findings. Under no change anywhere, BH rejects
anything only when Simes' test does, so the chance that a window raises any segment alert stays at or
below drift.alpha (positively dependent tests: the segments share the reference); with some segments
changed, at most a share alpha of the findings is expected to be false. docs/benchmarks.md#segments
measures both on fresh seeds.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd
from scipy import stats

from log_processor.columns import PREDICTION, SCORE, TARGET, segment_column
from log_processor.evaluate.drift_thresholds import NullDistribution, column_alpha
from log_processor.evaluate.reference import Reference
from log_processor.monitors import Monitor
from log_processor.tasks import task_for

METHOD = "benjamini-hochberg"
OTHER = "other"          # the values past max_segments, pooled
TAIL = 0.1               # the share of null draws the exponential tail is fitted to


@dataclass(frozen=True)
class SegmentTest:
    kind: str            # feature | prediction | target | quality
    column: str          # the feature, prediction or target column; quality: the metric
    rows: int
    score: float         # drift: the statistic; quality: the segment's metric
    threshold: float     # drift: the statistic's threshold at this size (per-feature alpha); quality: the bound
    p_value: float
    adjusted: float = 1.0          # Benjamini-Hochberg adjusted p-value over the window's family
    detected: bool = False


@dataclass(frozen=True)
class Segment:
    field: str
    value: str
    rows: int
    share: float                   # of the window's evaluated rows
    labelled: int
    tested: bool                   # rows >= segments.min_rows
    tests: tuple[SegmentTest, ...] = ()
    quality: dict[str, float] = field(default_factory=dict)     # realized, labelled rows
    estimated: dict[str, float] = field(default_factory=dict)   # estimated (monitors with estimation)

    @property
    def drifted(self) -> tuple[str, ...]:
        return tuple(t.column for t in self.tests if t.detected and t.kind != "quality")

    @property
    def drift_detected(self) -> bool:
        return bool(self.drifted)

    @property
    def quality_degraded(self) -> bool:
        return any(t.detected and t.kind == "quality" for t in self.tests)

    @property
    def flagged(self) -> bool:
        return self.drift_detected or self.quality_degraded

    @property
    def min_adjusted(self) -> float:
        return min((t.adjusted for t in self.tests), default=1.0)

    @property
    def label(self) -> str:
        return f"{self.field}={self.value}"


@dataclass(frozen=True)
class SegmentEvaluation:
    method: str
    alpha: float
    tests: int                               # the family's size
    segments: tuple[Segment, ...]            # worst first: flagged, then by smallest adjusted p-value
    pooled: dict[str, int]                   # field -> distinct values pooled into `other`

    @property
    def evaluated(self) -> int:
        return sum(s.tested for s in self.segments)

    @property
    def flagged(self) -> int:
        return sum(s.flagged for s in self.segments)

    @property
    def skipped(self) -> int:
        return sum(not s.tested for s in self.segments)


# --- the statistics, as Evidently computes them ------------------------------------------------------

@dataclass(frozen=True)
class _RefColumn:
    kind: str                            # numerical | categorical
    values: np.ndarray | None = None     # numerical: the reference's distinct values, sorted
    cdf: np.ndarray | None = None        # numerical: the reference's share of rows at or below each of them
    norm: float = 1.0                    # numerical: max(std, 0.001), Evidently's norm
    shares: dict[str, float] | None = None   # categorical: category -> share

    @classmethod
    def of(cls, values: np.ndarray, kind: str) -> "_RefColumn":
        if kind == "numerical":
            x = np.asarray(values, dtype=float)
            x = x[np.isfinite(x)]
            distinct, counts = np.unique(x, return_counts=True)
            # Served features repeat (one value per driver and hour): 20 000 rows are ~450 distinct
            # values, and a segment's W1 is computed over those, not over every reference row.
            return cls(kind, values=distinct, cdf=np.cumsum(counts) / max(len(x), 1), norm=max(float(np.std(x)), 0.001))
        counts = pd.Series(_names(values)).value_counts()
        return cls(kind, shares=(counts / counts.sum()).to_dict())

    def statistic(self, values: np.ndarray) -> float:
        if self.kind == "numerical":
            return wasserstein_norm(self.values, self.cdf, np.asarray(values, dtype=float), self.norm)
        return jensenshannon(self.shares, values)


def _names(values: np.ndarray) -> np.ndarray:
    """A categorical column's values as names: a numeric category as an integer ("1", not "1.0")."""
    values = np.asarray(values)
    if np.issubdtype(values.dtype, np.number):
        values = values[np.isfinite(values)].astype(np.int64)
    return np.array([str(v) for v in values if v is not None], dtype=object)


def wasserstein_norm(reference_values: np.ndarray, reference_cdf: np.ndarray, current: np.ndarray, norm: float) -> float:
    """scipy's wasserstein_distance(reference, current) / norm: the area between the two empirical
    CDFs, over the reference's distinct values (with their CDF) and the current values."""
    cur = np.sort(current[np.isfinite(current)])
    if not len(cur) or not len(reference_values):
        return math.nan
    grid = np.union1d(reference_values, cur)
    at = grid[:-1]
    i = np.searchsorted(reference_values, at, "right")
    cdf_ref = np.where(i > 0, reference_cdf[np.maximum(i - 1, 0)], 0.0)
    cdf_cur = np.searchsorted(cur, at, "right") / len(cur)
    return float(np.sum(np.abs(cdf_ref - cdf_cur) * np.diff(grid))) / norm


def jensenshannon(reference_shares: dict[str, float], current: np.ndarray) -> float:
    """scipy's Jensen-Shannon distance (natural log) between category shares over both sides' categories."""
    counts = pd.Series(_names(current)).value_counts()
    if not counts.sum():
        return math.nan
    keys = list(dict.fromkeys([*reference_shares, *counts.index]))
    p = np.array([reference_shares.get(k, 0.0) for k in keys])
    q = np.array([counts.get(k, 0) for k in keys], dtype=float) / counts.sum()
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = lambda a: float(np.where(a > 0, a * np.log(a / m), 0.0).sum())  # noqa: E731
    return math.sqrt(max((kl(p) + kl(q)) / 2, 0.0))


def tail_p_value(null: NullDistribution, n: int, score: float) -> float:
    """The share of null draws at or above `score` for a window of n rows (as NullDistribution.p_value),
    extended below 1/(draws+1) by an exponential tail (module docstring); in that tail, interpolated between sizes in log p."""
    if not math.isfinite(score):
        return 1.0
    sizes = null.sizes
    n = max(n, sizes[0])
    if n >= sizes[-1]:
        return _row_p(null.draws[-1], score)
    hi = int(np.searchsorted(sizes, n, side="right"))
    lo = hi - 1
    w = (math.log(n) - math.log(sizes[lo])) / (math.log(sizes[hi]) - math.log(sizes[lo]))
    p_lo, p_hi = _row_p(null.draws[lo], score), _row_p(null.draws[hi], score)
    if min(p_lo, p_hi) * (null.draws.shape[1] + 1) > 1.5:     # inside both sizes' draws: NullDistribution.p_value
        return (1 - w) * p_lo + w * p_hi
    return math.exp((1 - w) * math.log(p_lo) + w * math.log(p_hi))


def _row_p(draws: np.ndarray, score: float) -> float:
    r = len(draws)
    above = r - int(np.searchsorted(draws, score, side="left"))
    if above > 0:
        return (1 + above) / (r + 1)
    top = draws[int((1 - TAIL) * r):]
    excess = float(np.mean(top - top[0])) if len(top) > 1 else 0.0
    if excess <= 0:
        return 1 / (r + 1)
    return max(math.exp(-(score - draws[-1]) / excess), 1e-300) / (r + 1)


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    """Adjusted p-values (step-up): a test is a finding at level q when its adjusted value is <= q."""
    p = np.asarray(p_values, dtype=float)
    m = len(p)
    if not m:
        return p
    order = np.argsort(p)
    ranked = p[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out


# --- quality per task kind (composition: a test per target kind) ---------------------------------------

def _accuracy_test(labelled: pd.DataFrame, reference_quality: dict[str, float], monitor: Monitor) -> SegmentTest | None:
    """Classifiers: accuracy below the reference's minus the margin, exact binomial tail of the errors."""
    ref = reference_quality.get("accuracy")
    if ref is None:
        return None
    hits = labelled[PREDICTION].to_numpy() == labelled[TARGET].to_numpy()
    n, errors = len(hits), int((~hits).sum())
    bound = max(ref - monitor.segments.quality_margin, 0.0)
    p = float(stats.binom.sf(errors - 1, n, min(1.0 - bound, 1.0))) if errors else 1.0
    return SegmentTest("quality", "accuracy", n, float(hits.mean()), bound, p)


def _mae_test(labelled: pd.DataFrame, reference_quality: dict[str, float], monitor: Monitor) -> SegmentTest | None:
    """Regression: MAE above the reference's x ratio, one-sided z-test of the mean absolute error."""
    ref = reference_quality.get("mae")
    if ref is None:
        return None
    errors = np.abs(labelled[PREDICTION].to_numpy(dtype=float) - labelled[TARGET].to_numpy(dtype=float))
    ratio = monitor.quality_alert_ratio or 1.0 + monitor.segments.quality_margin
    bound = ref * ratio
    mae, sd = float(errors.mean()), float(errors.std(ddof=1)) if len(errors) > 1 else 0.0
    p = float(stats.norm.sf((mae - bound) / (sd / math.sqrt(len(errors))))) if sd > 0 else float(mae <= bound)
    return SegmentTest("quality", "mae", len(errors), mae, bound, p)


QUALITY_TESTS: dict[str, Callable[..., SegmentTest | None]] = {"categorical": _accuracy_test, "numerical": _mae_test}


# --- the evaluation ------------------------------------------------------------------------------------

def split(values: np.ndarray, max_segments: int) -> tuple[np.ndarray, int]:
    """The segment of each row: the `max_segments` most frequent values kept (ties by name), the rest
    `other`; and how many distinct values were pooled."""
    counts = pd.Series(values, dtype=object).value_counts()
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    keep = {v for v, _ in ranked[:max_segments]}
    pooled = len(ranked) - len(keep)
    if not pooled:
        return values, 0
    return np.where(pd.Series(values, dtype=object).isin(keep).to_numpy(), values, OTHER), pooled


def evaluate_segments(reference: Reference, current: pd.DataFrame, monitor: Monitor) -> SegmentEvaluation | None:
    """Every segment of `current` (the evaluated rows) against the reference; None when the monitor has
    no `segments:` or the reference no drift thresholds."""
    config, fitted = monitor.segments, reference.drift_thresholds
    if config is None or fitted is None:
        return None
    task = task_for(monitor)
    kinds = {f.name: f.type for f in monitor.features}
    refs = {name: _RefColumn.of(reference.frame[name].to_numpy(), kind) for name, kind in kinds.items()}
    ref_prediction = _RefColumn.of(reference.frame[task.drift_column].dropna().to_numpy(), task.prediction_kind)
    ref_target = None
    if fitted.target is not None and reference.frame[TARGET].notna().any():
        ref_target = _RefColumn.of(task.quality_frame(reference.frame, monitor)[TARGET].to_numpy(), task.target_kind)
    reference_quality = reference.quality_values.metrics if reference.quality_values is not None else {}
    quality_test = QUALITY_TESTS[task.target_kind]
    feature_alpha = column_alpha(fitted.alpha, len(kinds))
    total = len(current)
    labelled_mask = current[TARGET].notna().to_numpy() if TARGET in current else np.zeros(total, dtype=bool)
    calibration = reference.score_calibration if monitor.estimation is not None else None
    # Columns taken out once; a segment is a set of row positions into them (no frame per segment).
    columns = {name: current[name].to_numpy() for name in {*kinds, task.drift_column}}
    if calibration is not None:
        columns.update({SCORE: current[SCORE].to_numpy(dtype=float), PREDICTION: current[PREDICTION].to_numpy(dtype=float)})
    labelled_all = task.quality_frame(current[labelled_mask], monitor)
    labelled_number = np.cumsum(labelled_mask) - 1        # row position -> its position among the labelled rows

    def drift(kind: str, column: str, ref: _RefColumn, null: NullDistribution, values: np.ndarray,
              alpha: float) -> SegmentTest:
        n = len(values)
        score = ref.statistic(values)
        return SegmentTest(kind, column, n, score, null.threshold(max(n, null.sizes[0]), alpha),
                           tail_p_value(null, n, score))

    pending: list[tuple[str, str, int, int, bool, list[SegmentTest], dict, dict]] = []
    pooled: dict[str, int] = {}
    for field_name in config.fields:
        values, pooled[field_name] = split(current[segment_column(field_name)].to_numpy(dtype=object),
                                           config.max_segments)
        for value, rows in pd.Series(np.arange(total)).groupby(values, sort=True).indices.items():
            mine = rows[labelled_mask[rows]]
            labelled = labelled_all.iloc[labelled_number[mine]]
            tested = len(rows) >= config.min_rows
            tests: list[SegmentTest] = []
            quality: dict[str, float] = {}
            estimated: dict[str, float] = {}
            if tested:
                tests += [drift("feature", name, refs[name], fitted.features[name], columns[name][rows], feature_alpha)
                          for name in kinds]
                tests.append(drift("prediction", task.prediction_field(monitor), ref_prediction, fitted.prediction,
                                   columns[task.drift_column][rows], fitted.alpha))
                if len(labelled) >= config.min_rows:
                    if ref_target is not None:
                        tests.append(drift("target", monitor.target, ref_target, fitted.target,
                                           labelled[TARGET].to_numpy(), fitted.alpha))
                    q = quality_test(labelled, reference_quality, monitor)
                    if q is not None:
                        tests.append(q)
                        quality[q.column] = q.score
                if calibration is not None:
                    p = calibration.probabilities(columns[SCORE][rows])
                    yhat = columns[PREDICTION][rows]
                    estimated["accuracy"] = float(np.mean(np.where(yhat == 1, p, 1 - p)))
            pending.append((field_name, str(value), len(rows), len(labelled), tested, tests, quality, estimated))

    family = [t for *_, tests, _q, _e in pending for t in tests]
    adjusted = benjamini_hochberg(np.array([t.p_value for t in family]))
    decided = iter(zip(family, adjusted))
    segments = []
    for field_name, value, rows, labelled, tested, tests, quality, estimated in pending:
        judged = []
        for _ in tests:
            t, a = next(decided)
            judged.append(SegmentTest(t.kind, t.column, t.rows, t.score, t.threshold, t.p_value, float(a),
                                      bool(a <= fitted.alpha)))
        segments.append(Segment(field_name, value, rows, rows / total if total else 0.0, labelled, tested,
                                tuple(judged), quality, estimated))
    segments.sort(key=lambda s: (not s.flagged, s.min_adjusted, -s.rows, s.field, s.value))
    return SegmentEvaluation(METHOD, fitted.alpha, len(family), tuple(segments), pooled)
