"""Model quality before the labels arrive: confidence-based performance estimation (CBPE).

Labels land minutes to days after the predictions; the model's scores are there at once. Once the
scores are mapped to calibrated probabilities p_i = P(y_i = 1 | score_i) (on the reference, whose
targets are known), the realized quality of a window is a function of independent Bernoulli(p_i)
labels, so its distribution given the window's scores and predicted labels is known:

- accuracy = mean(1[y_i = yhat_i]) and precision = mean(y_i over yhat_i = 1) are means of
  independent Bernoullis (Poisson-binomial counts): expectation and variance are analytic, the band
  is the normal approximation of the count;
- recall, F1 and ROC AUC are functions of three sums, TP = sum(yhat_i y_i), FN = sum((1 - yhat_i) y_i)
  and R1 = sum(rank_i y_i) (AUC by the rank-sum formula, ranks of the raw scores): the band is the
  quantiles of Monte Carlo draws of those sums. Up to LABEL_DRAW_CELLS rows x draws the labels
  themselves are drawn; above it (larger windows) the three sums are drawn from their normal
  approximation, whose mean and covariance are sums over the rows (sum of p_i(1 - p_i) a_i a_i^T for
  a_i = (yhat_i, 1 - yhat_i, rank_i)): O(rows) whatever the number of draws, which keeps the
  estimate of a 100 000-row window within a few hundredths of a second.

The calibration is itself an estimate from the reference's m labelled rows: its error is one fixed
bias for every window, about sqrt(acc (1 - acc) / m) on accuracy, small against the labels'
randomness in a window of 1 000 rows and as large as it at 10 000. So the band carries both: the
calibration is refitted on CALIBRATION_REPLICATES bootstrap resamples of the reference at set-up,
each metric's expectation is recomputed under every refit on (a sample of) the window's rows, and
their spread is added in quadrature to the labels' band. The band still cannot see a change of
P(y | X) (concept drift), which leaves the scores as they were. The realized quality, once labels
land, is the check (mlmon_estimation_error).

Pure: arrays in, plain values out. The fitted calibration is cached by reference.py.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from log_processor.monitors import SCORE_CALIBRATION_METHODS as CALIBRATION_METHODS
from log_processor.tasks.probabilistic import calibration_error

METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")
DRAWS = 1000                     # Monte Carlo draws per estimate
LABEL_DRAW_CELLS = 1_000_000     # rows x draws up to which the labels themselves are drawn
CALIBRATION_BINS = 10            # equal-width bins of the expected calibration error
CALIBRATION_FOLDS = 5            # the reliability is measured out of fold
CALIBRATION_REPLICATES = 40      # bootstrap refits of the calibration: its own error, in the band
SPREAD_ROWS = 5_000              # window rows (a uniform sample above) the refits' spread is taken on
_EPS = 1e-6


@dataclass(frozen=True)
class ScoreCalibration:
    """Score -> P(y = 1), fitted on the reference. isotonic: `x`, `y` are the step function's knots
    (np.interp between them, clipped at the ends); platt: `x` = (slope, intercept) on logit(score).
    `replicates`: the bootstrap refits, one per row (platt: slope, intercept; isotonic: the refit's
    values at the knots `x`); empty: the band carries no calibration error."""
    method: str
    x: np.ndarray
    y: np.ndarray
    calibration_error: float          # out-of-fold ECE of the calibrated probabilities on the reference
    raw_calibration_error: float      # ECE of the raw scores, for comparison
    reference_quality: dict[str, float]
    replicates: np.ndarray = field(default_factory=lambda: np.empty((0, 2)))

    def probabilities(self, scores: np.ndarray) -> np.ndarray:
        scores = np.asarray(scores, dtype=float)
        if self.method == "isotonic":
            return np.interp(scores, self.x, self.y)
        slope, intercept = self.x
        return _sigmoid(slope * _logit(scores) + intercept)

    def replicate_probabilities(self, scores: np.ndarray) -> np.ndarray:
        """(replicates, rows): each bootstrap refit's probabilities for `scores`."""
        scores = np.asarray(scores, dtype=float)
        if self.method == "isotonic":
            return np.vstack([np.interp(scores, self.x, values) for values in self.replicates])
        return _sigmoid(self.replicates[:, :1] * _logit(scores)[None, :] + self.replicates[:, 1:])


@dataclass(frozen=True)
class Estimate:
    value: float
    lower: float
    upper: float


@dataclass(frozen=True)
class Estimation:
    """The estimated quality of one window (all its rows), and, when enough labels landed, the
    estimate on the labelled rows minus the realized quality on those same rows."""
    rows: int
    estimates: dict[str, Estimate]
    error: dict[str, float]           # estimated - realized on the labelled rows; empty without labels
    realized: dict[str, float]        # realized on the labelled rows (incl. roc_auc); empty without labels


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _fit(scores: np.ndarray, targets: np.ndarray, method: str) -> tuple[np.ndarray, np.ndarray]:
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression
        model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(scores, targets)
        return np.asarray(model.X_thresholds_, dtype=float), np.asarray(model.y_thresholds_, dtype=float)
    if method == "platt":
        return _platt(_logit(scores), np.asarray(targets, dtype=float)), np.empty(0)
    raise ValueError(f"calibration method must be one of {CALIBRATION_METHODS}, got {method!r}")


def _platt(z: np.ndarray, y: np.ndarray, *, ridge: float = 1e-6, steps: int = 50) -> np.ndarray:
    """(slope, intercept) of the logistic regression of y on z, by Newton's method: two parameters,
    so each step is O(rows) and a fit of 20 000 rows takes milliseconds (scikit-learn's solver took
    ~0.2 s, forty-six times per reference with the refits). The slope's tiny ridge (scikit-learn's
    C = 1e6) keeps separable labels finite."""
    theta = np.zeros(2)
    design = np.column_stack([z, np.ones_like(z)])
    penalty = np.array([ridge, 0.0])
    for _ in range(steps):
        p = _sigmoid(design @ theta)
        gradient = design.T @ (p - y) + penalty * theta
        hessian = (design * (p * (1 - p))[:, None]).T @ design + np.diag(penalty + 1e-12)
        step = np.linalg.solve(hessian, gradient)
        theta = theta - step
        if np.max(np.abs(step)) < 1e-9:
            break
    return theta


def fit_calibration(scores: np.ndarray, targets: np.ndarray, predicted: np.ndarray, method: str = "isotonic",
                    *, seed: int = 0, replicates: int = CALIBRATION_REPLICATES) -> ScoreCalibration:
    """Fit the calibration on the reference's labelled rows; its reliability is measured out of fold
    (an isotonic fit scored on its own rows would look perfect), its own error by `replicates`
    bootstrap refits."""
    scores, targets = np.asarray(scores, dtype=float), np.asarray(targets, dtype=int)
    if len(scores) < 2 * CALIBRATION_FOLDS or len(np.unique(targets)) < 2:
        raise ValueError(f"score calibration needs labelled rows of both classes, got {len(scores)} rows "
                         f"with classes {sorted(set(targets.tolist()))}")
    x, y = _fit(scores, targets, method)
    folds = np.random.default_rng(seed).permutation(len(scores)) % CALIBRATION_FOLDS
    out_of_fold = np.empty(len(scores))
    for k in range(CALIBRATION_FOLDS):
        held = folds == k
        fx, fy = _fit(scores[~held], targets[~held], method)
        out_of_fold[held] = ScoreCalibration(method, fx, fy, 0.0, 0.0, {}).probabilities(scores[held])
    return ScoreCalibration(method=method, x=x, y=y,
                            calibration_error=calibration_error(out_of_fold, targets),
                            raw_calibration_error=calibration_error(np.clip(scores, 0, 1), targets),
                            reference_quality=realized_quality(targets, predicted, scores),
                            replicates=_bootstrap_fits(scores, targets, method, x, replicates, seed))


def _bootstrap_fits(scores: np.ndarray, targets: np.ndarray, method: str, knots: np.ndarray, replicates: int,
                    seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, 1])
    fits = []
    while len(fits) < replicates:
        rows = rng.integers(0, len(scores), len(scores))
        if len(np.unique(targets[rows])) < 2:
            continue
        fx, fy = _fit(scores[rows], targets[rows], method)
        fits.append(np.interp(knots, fx, fy) if method == "isotonic" else fx)
    return np.array(fits, dtype=float).reshape(replicates, -1)


# --- realized quality ----------------------------------------------------------------------------

def _from_sums(tp, fn, r1, predicted_positive: int, rows: int) -> dict[str, np.ndarray]:
    """Recall, F1 and ROC AUC from TP, FN and the rank sum of the positives (arrays of draws)."""
    tp, fn, r1 = (np.asarray(v, dtype=float) for v in (tp, fn, r1))
    positives = tp + fn
    negatives = rows - positives
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(positives > 0, tp / positives, np.nan)
        f1 = np.where(positives + predicted_positive > 0, 2 * tp / (positives + predicted_positive), np.nan)
        auc = np.where((positives > 0) & (negatives > 0),
                       (r1 - positives * (positives + 1) / 2) / (positives * negatives), np.nan)
    return {"recall": recall, "f1": f1, "roc_auc": np.clip(auc, 0.0, 1.0)}


def realized_quality(targets: np.ndarray, predicted: np.ndarray, scores: np.ndarray,
                     ranks: np.ndarray | None = None) -> dict[str, float]:
    """Accuracy, precision, recall, F1 of the predicted labels and ROC AUC of the scores (`ranks`:
    their tie-averaged ranks, when already known); a metric undefined on these rows (no predicted
    positive, one class only) is left out."""
    y, yhat = np.asarray(targets, dtype=float), np.asarray(predicted, dtype=float)
    if not len(y):
        return {}
    ranks = stats.rankdata(scores) if ranks is None else ranks
    out = {"accuracy": float(np.mean(y == yhat))}
    if yhat.sum() > 0:
        out["precision"] = float(y @ yhat / yhat.sum())
    out.update({k: float(v) for k, v in _from_sums(y @ yhat, y @ (1 - yhat), y @ ranks, int(yhat.sum()),
                                                   len(y)).items()})
    return {k: v for k, v in out.items() if math.isfinite(v)}


# --- estimation ----------------------------------------------------------------------------------

def _mean_band(c: np.ndarray, z: float) -> Estimate | None:
    """Mean of independent Bernoulli(c_i): analytic expectation, normal band of the Poisson-binomial."""
    if not len(c):
        return None
    mean = float(c.mean())
    half = z * math.sqrt(float(np.sum(c * (1 - c)))) / len(c)
    return Estimate(mean, max(0.0, mean - half), min(1.0, mean + half))


def _draw_sums(p: np.ndarray, a: np.ndarray, draws: int, rng: np.random.Generator,
               label_draw_cells: int = LABEL_DRAW_CELLS) -> np.ndarray:
    """`draws` x 3 draws of a.T @ y with y_i ~ Bernoulli(p_i): the labels themselves while the
    budget allows, else the sums' normal approximation."""
    n = len(p)
    if n * draws <= label_draw_cells:
        return (rng.random((draws, n)) < p).astype(float) @ a
    mean = p @ a
    cov = (a * (p * (1 - p))[:, None]).T @ a
    values, vectors = np.linalg.eigh(cov)    # semi-definite (e.g. FN = 0 when every label is 1)
    root = vectors * np.sqrt(np.clip(values, 0.0, None))
    return mean + rng.standard_normal((draws, a.shape[1])) @ root.T


def _expected(p: np.ndarray, yhat: np.ndarray, ranks: np.ndarray) -> dict[str, np.ndarray]:
    """Each metric's expectation given the probabilities `p` (rows, or replicates x rows)."""
    positive = yhat == 1
    out = {"accuracy": np.where(positive, p, 1 - p).mean(axis=-1)}
    if positive.any():
        out["precision"] = p[..., positive].mean(axis=-1)
    out.update(_from_sums(p @ yhat, p @ (1 - yhat), p @ ranks, int(yhat.sum()), len(yhat)))
    return out


def calibration_spread(calibration: ScoreCalibration, scores: np.ndarray, predicted: np.ndarray, *,
                       rows: int = SPREAD_ROWS, seed: int = 0) -> dict[str, float]:
    """Per metric, the standard deviation of the window's expected value over the calibration's
    bootstrap refits: how far the calibration's own error can move the estimate. Taken on a uniform
    sample of `rows` rows above that (a mean over rows settles long before)."""
    scores, predicted = np.asarray(scores, dtype=float), np.asarray(predicted, dtype=float)
    if not len(calibration.replicates) or not len(scores):
        return {}
    if len(scores) > rows:
        keep = np.random.default_rng(seed).choice(len(scores), rows, replace=False)
        scores, predicted = scores[keep], predicted[keep]
    expected = _expected(np.clip(calibration.replicate_probabilities(scores), 0.0, 1.0), predicted,
                         stats.rankdata(scores))
    return {m: float(np.nanstd(v)) for m, v in expected.items() if np.isfinite(v).sum() >= 2}


def _widen(e: Estimate, sd: float, z: float) -> Estimate:
    """The labels' band and the calibration's spread, independent errors, added in quadrature."""
    extra = z * sd
    lower = e.value - math.hypot(e.value - e.lower, extra)
    upper = e.value + math.hypot(e.upper - e.value, extra)
    return Estimate(e.value, max(0.0, lower), min(1.0, upper))


def estimate_quality(probabilities: np.ndarray, predicted: np.ndarray, scores: np.ndarray, *,
                     confidence: float = 0.95, draws: int = DRAWS, seed: int = 0,
                     ranks: np.ndarray | None = None, label_draw_cells: int = LABEL_DRAW_CELLS,
                     spread: dict[str, float] | None = None) -> dict[str, Estimate]:
    """The expected accuracy, precision, recall, F1 and ROC AUC of a window and the band in which
    the realized value lies with probability `confidence`, given each row's calibrated probability
    of the positive class, its logged predicted label and its raw score (for the AUC's ranks;
    `ranks`: those ranks, when already known); `spread` (calibration_spread) widens each band by
    the calibration's own error."""
    p = np.clip(np.asarray(probabilities, dtype=float), 0.0, 1.0)
    yhat = np.asarray(predicted, dtype=float)
    n = len(p)
    if n == 0:
        return {}
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    out: dict[str, Estimate] = {}
    accuracy = _mean_band(np.where(yhat == 1, p, 1 - p), z)
    if accuracy is not None:
        out["accuracy"] = accuracy
    precision = _mean_band(p[yhat == 1], z)
    if precision is not None:
        out["precision"] = precision
    ranks = stats.rankdata(scores) if ranks is None else ranks
    a = np.column_stack([yhat, 1 - yhat, ranks])
    expected = _expected(p, yhat, ranks)
    drawn = _from_sums(*_draw_sums(p, a, draws, np.random.default_rng(seed), label_draw_cells).T, int(yhat.sum()), n)
    tail = (1 - confidence) / 2
    for metric in ("recall", "f1", "roc_auc"):
        value, sample = float(expected[metric]), drawn[metric][np.isfinite(drawn[metric])]
        if math.isfinite(value) and len(sample) >= draws // 2:
            lower, upper = np.quantile(sample, [tail, 1 - tail])
            out[metric] = Estimate(value, float(min(lower, value)), float(max(upper, value)))
    spread = spread or {}
    return {m: _widen(out[m], spread.get(m, 0.0), z) for m in METRICS if m in out}


def estimate(calibration: ScoreCalibration, scores: np.ndarray, predicted: np.ndarray,
             targets: np.ndarray | None = None, *, min_labelled_rows: int = 1, confidence: float = 0.95,
             draws: int = DRAWS, seed: int = 0) -> Estimation:
    """A window's estimation: over all its rows, and (with at least `min_labelled_rows` labels,
    `targets` NaN where none landed) the estimate on the labelled rows against the realized quality."""
    scores = np.asarray(scores, dtype=float)
    predicted = np.asarray(predicted, dtype=float)
    p = calibration.probabilities(scores)
    estimates = estimate_quality(p, predicted, scores, confidence=confidence, draws=draws, seed=seed,
                                 spread=calibration_spread(calibration, scores, predicted, seed=seed))
    error: dict[str, float] = {}
    realized: dict[str, float] = {}
    if targets is not None:
        targets = np.asarray(targets, dtype=float)
        labelled = np.isfinite(targets)
        if labelled.sum() >= min_labelled_rows:
            ranks = stats.rankdata(scores[labelled])
            realized = realized_quality(targets[labelled], predicted[labelled], scores[labelled], ranks)
            on_labelled = estimate_quality(p[labelled], predicted[labelled], scores[labelled],
                                           confidence=confidence, draws=draws, seed=seed, ranks=ranks)
            error = {m: on_labelled[m].value - realized[m] for m in METRICS if m in on_labelled and m in realized}
    return Estimation(rows=len(scores), estimates=estimates, error=error, realized=realized)
