"""Drift thresholds that depend on the window size, estimated on the reference (monitors.yaml
`drift.alpha`). The word "calibration" belongs to the scores (estimation.py); here it is thresholds.

A fixed distance threshold is wrong at both ends: an unshifted window of a few hundred rows reaches
a normed Wasserstein distance of 0.1 by chance, and a window of 100 000 rows stays under 0.1 while
a feature has clearly moved. What a distance means depends on how far apart two samples of the same
population land by chance, and that depends on both sample sizes.

So, per column, the distribution of the statistic under "no drift" is estimated by resampling the
reference: a pseudo-reference of m rows and a window of n rows, both drawn with replacement from
the reference's m rows (the Poisson bootstrap), and the very statistic Evidently computes between
them. That is the two-sample bootstrap under the null: both samples come from one population (estimated by the
reference's empirical distribution), independently, at the sizes of the real comparison. Drawing
the window alone and comparing it with the reference itself would share rows between the two and
understate the null distance. The threshold at size n is the (1 - alpha_column) quantile of that
distribution, interpolated in log n between the sizes of THRESHOLD_SIZES; a score's p-value is the share
of null draws at or above it.

Both statistics are computed from counts over the reference's distinct sorted values (or
categories), which makes one draw O(distinct values) whatever n is: a monitor's thresholds take a few
seconds.

Pure: arrays in, arrays out. The cache file lives in reference.py.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from log_processor.monitors import THRESHOLD_SIZES

REPLICATES = 2000
_CHUNK = 250


class WindowTooSmall(ValueError):
    """The window is below the smallest size the thresholds cover."""


@dataclass(frozen=True)
class NullDistribution:
    """Sorted null draws of one column's statistic, one row per window size."""
    sizes: tuple[int, ...]
    draws: np.ndarray            # shape (len(sizes), replicates), each row sorted ascending

    def _bracket(self, n: int) -> tuple[int, int, float]:
        if n < self.sizes[0]:
            raise WindowTooSmall(f"{n} rows: the thresholds start at {self.sizes[0]} rows")
        if n >= self.sizes[-1]:
            last = len(self.sizes) - 1
            return last, last, 0.0
        hi = int(np.searchsorted(self.sizes, n, side="right"))
        lo = hi - 1
        weight = (math.log(n) - math.log(self.sizes[lo])) / (math.log(self.sizes[hi]) - math.log(self.sizes[lo]))
        return lo, hi, weight

    def threshold(self, n: int, alpha: float) -> float:
        """The (1 - alpha) quantile of the statistic for a window of n rows. Beyond the largest
        size the largest size's threshold holds: the null shrinks with n, so that errs
        on the side of fewer false alarms."""
        lo, hi, w = self._bracket(n)
        q = lambda row: float(np.quantile(self.draws[row], 1 - alpha, method="higher"))  # noqa: E731
        return q(lo) if lo == hi else math.exp((1 - w) * math.log(max(q(lo), 1e-12)) + w * math.log(max(q(hi), 1e-12)))

    def p_value(self, n: int, score: float) -> float:
        """Share of null draws at or above `score` (with the +1 that keeps it above 0)."""
        lo, hi, w = self._bracket(n)
        replicates = self.draws.shape[1]
        p = lambda row: (1 + replicates - int(np.searchsorted(self.draws[row], score, side="left"))) / (replicates + 1)  # noqa: E731
        return p(lo) if lo == hi else (1 - w) * p(lo) + w * p(hi)


def null_distribution(values: np.ndarray, kind: str, *, sizes=THRESHOLD_SIZES, replicates: int = REPLICATES,
                      seed: int = 0) -> NullDistribution:
    """The statistic Evidently uses for `kind` (normed Wasserstein, Jensen-Shannon distance) between a
    bootstrap pseudo-reference and a bootstrap window, `replicates` times per size. A chunk of
    pseudo-references serves every size (only the window's size changes), which halves the draws."""
    rng = np.random.default_rng(seed)
    prepared = _prepare(values, kind)
    statistic = _wasserstein if kind == "numerical" else _jensenshannon
    probabilities, m = prepared.probabilities, prepared.rows
    rows: list[list[np.ndarray]] = [[] for _ in sizes]
    for done in range(0, replicates, _CHUNK):
        k = min(_CHUNK, replicates - done)
        ref = _counts(m, k, probabilities, rng)
        for i, n in enumerate(sizes):
            rows[i].append(statistic(prepared, ref, _counts(n, k, probabilities, rng)))
    return NullDistribution(tuple(sizes), np.vstack([np.sort(np.concatenate(r)) for r in rows]))


@dataclass(frozen=True)
class _Column:
    rows: int                            # m, the reference's rows
    probabilities: np.ndarray            # each cell's share of the rows: distinct sorted values or categories
    x: np.ndarray | None = None          # sorted distinct values (numerical)
    gaps: np.ndarray | None = None


def _prepare(values: np.ndarray, kind: str) -> _Column:
    if kind == "numerical":
        x = np.asarray(values, dtype=float)
        x, counts = np.unique(x[np.isfinite(x)], return_counts=True)
        # Tied rows are one cell weighted by their count: the same bootstrap (a sum of Poisson counts is
        # a Poisson count) and the same W1 (ties add no gap), at the cost of the distinct values, not the
        # rows. Served features repeat (one value per driver and hour), so 20 000 rows are ~450 cells.
        return _Column(rows=int(counts.sum()), probabilities=counts / counts.sum(), x=x, gaps=np.diff(x))
    _, counts = np.unique(np.asarray([str(v) for v in values if v is not None]), return_counts=True)
    return _Column(rows=int(counts.sum()), probabilities=counts / counts.sum())


def _counts(rows: int, k: int, probabilities: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shares of each cell in `rows` draws with replacement, k times: the Poisson bootstrap
    (independent Poisson counts, normalised by their total), which matches the multinomial at
    these sizes and is one vectorised draw instead of a loop per cell."""
    mean = rows * probabilities
    if mean.min() >= 100:     # Poisson(lam) is Normal(lam, lam) to a fraction of a percent there, and 3x cheaper
        counts = np.maximum(mean + np.sqrt(mean) * rng.standard_normal((k, len(mean))), 0.0)
    else:
        counts = rng.poisson(mean, size=(k, len(mean))).astype(float)
    return counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)


def _wasserstein(column: _Column, ref: np.ndarray, cur: np.ndarray) -> np.ndarray:
    """W1(ref*, cur*) / max(std(ref*), 0.001), as Evidently's `wasserstein` computes it: both samples
    live on the reference's sorted values, so W1 = sum |F_ref* - F_cur*| * gaps."""
    distance = np.abs(np.cumsum(ref - cur, axis=1)[:, :-1]) @ column.gaps
    mean = ref @ column.x
    std = np.sqrt(np.maximum(ref @ (column.x * column.x) - mean * mean, 0.0))
    return distance / np.maximum(std, 0.001)


def _jensenshannon(column: _Column, ref: np.ndarray, cur: np.ndarray) -> np.ndarray:
    """scipy's Jensen-Shannon distance (natural log) between category shares, as Evidently's
    `jensenshannon` computes it for a categorical column."""
    mid = (ref + cur) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_ref = np.where(ref > 0, ref * np.log(ref / mid), 0.0).sum(axis=1)
        kl_cur = np.where(cur > 0, cur * np.log(cur / mid), 0.0).sum(axis=1)
    return np.sqrt(np.maximum((kl_ref + kl_cur) / 2, 0.0))


def column_alpha(alpha: float, columns: int) -> float:
    """Bonferroni: each of `columns` tests at alpha / columns keeps the chance that any of them fires
    on unshifted data at or below alpha (whatever their dependence)."""
    return alpha / max(1, columns)


@dataclass(frozen=True)
class DriftThresholds:
    """A monitor's thresholds by window size: one null distribution per feature, for the prediction
    score and for the realized target (target drift, on the labelled rows; None when the reference
    has no labels). The features share the dataset verdict's alpha (Bonferroni); the prediction
    score and the target, which are not part of that verdict, are each tested at alpha on their own."""
    alpha: float
    features: dict[str, NullDistribution]
    prediction: NullDistribution
    target: NullDistribution | None = None

    def feature_alpha(self) -> float:
        return column_alpha(self.alpha, len(self.features))

    def thresholds(self, n: int) -> tuple[dict[str, float], float]:
        a = self.feature_alpha()
        return ({name: d.threshold(n, a) for name, d in self.features.items()},
                self.prediction.threshold(n, self.alpha))


def fit_thresholds(reference, feature_kinds: dict[str, str], score_column: str, alpha: float, *,
              target: tuple[str, str] | None = None, prediction_kind: str = "numerical",
              replicates: int = REPLICATES, seed: int = 0) -> DriftThresholds:
    """Every feature (by its kind), the prediction column `score_column` (the binary score and a regression's
    predicted value are numerical, a multi-class predicted class categorical) and, given `target` = (column,
    kind), the target over the reference's labelled rows (a regression's target: numerical)."""
    features = {name: null_distribution(reference[name].to_numpy(), kind, replicates=replicates, seed=seed + i)
                for i, (name, kind) in enumerate(feature_kinds.items())}
    prediction = null_distribution(_values(reference[score_column].dropna(), prediction_kind), prediction_kind,
                                   replicates=replicates, seed=seed + len(feature_kinds))
    target_null = None
    if target is not None and reference[target[0]].notna().any():
        column, kind = target
        target_null = null_distribution(_values(reference[column].dropna(), kind), kind, replicates=replicates,
                                        seed=seed + len(feature_kinds) + 1)
    return DriftThresholds(alpha, features, prediction, target_null)


def _values(series, kind: str) -> np.ndarray:
    """A column's values as its drift test sees them: a numeric category as an integer ("1", not "1.0")."""
    values = series.to_numpy()
    if kind == "categorical" and np.issubdtype(values.dtype, np.number):
        return values.astype(int)
    return values
