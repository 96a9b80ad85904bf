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

The band is the interval in which the realized value falls with probability `confidence` *if the
calibration is right*: it carries the labels' randomness, not the calibration's error, and it
cannot see a change of P(y | X) (concept drift), which leaves the scores as they were. The realized
quality, once labels land, is the check (mlmon_estimation_error).

Pure: arrays in, plain values out. The fitted calibration is cached by reference.py.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

CALIBRATION_METHODS = ("isotonic", "platt")
METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")
DRAWS = 1000                     # Monte Carlo draws per estimate
LABEL_DRAW_CELLS = 1_000_000     # rows x draws up to which the labels themselves are drawn
CALIBRATION_BINS = 10            # equal-width bins of the expected calibration error
CALIBRATION_FOLDS = 5            # the reliability is measured out of fold
_EPS = 1e-6


@dataclass(frozen=True)
class ScoreCalibration:
    """Score -> P(y = 1), fitted on the reference. isotonic: `x`, `y` are the step function's knots
    (np.interp between them, clipped at the ends); platt: `x` = (slope, intercept) on logit(score)."""
    method: str
    x: np.ndarray
    y: np.ndarray
    calibration_error: float          # out-of-fold ECE of the calibrated probabilities on the reference
    raw_calibration_error: float      # ECE of the raw scores, for comparison
    reference_quality: dict[str, float]

    def probabilities(self, scores: np.ndarray) -> np.ndarray:
        scores = np.asarray(scores, dtype=float)
        if self.method == "isotonic":
            return np.interp(scores, self.x, self.y)
        slope, intercept = self.x
        return _sigmoid(slope * _logit(scores) + intercept)


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
        from sklearn.linear_model import LogisticRegression
        model = LogisticRegression(C=1e6).fit(_logit(scores).reshape(-1, 1), targets)
        return np.array([float(model.coef_[0, 0]), float(model.intercept_[0])]), np.empty(0)
    raise ValueError(f"calibration method must be one of {CALIBRATION_METHODS}, got {method!r}")


def calibration_error(probabilities: np.ndarray, targets: np.ndarray, bins: int = CALIBRATION_BINS) -> float:
    """Expected calibration error: over equal-width probability bins, the row-weighted
    |mean predicted probability - share of positives|."""
    p, y = np.asarray(probabilities, dtype=float), np.asarray(targets, dtype=float)
    which = np.minimum((p * bins).astype(int), bins - 1)
    rows = np.bincount(which, minlength=bins)
    gap = np.abs(np.bincount(which, p, bins) - np.bincount(which, y, bins))
    return float(gap.sum() / max(rows.sum(), 1))


def fit_calibration(scores: np.ndarray, targets: np.ndarray, predicted: np.ndarray, method: str = "isotonic",
                    *, seed: int = 0) -> ScoreCalibration:
    """Fit the calibration on the reference's labelled rows; its reliability is measured out of fold
    (an isotonic fit scored on its own rows would look perfect)."""
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
                            reference_quality=realized_quality(targets, predicted, scores))


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


def estimate_quality(probabilities: np.ndarray, predicted: np.ndarray, scores: np.ndarray, *,
                     confidence: float = 0.95, draws: int = DRAWS, seed: int = 0,
                     ranks: np.ndarray | None = None, label_draw_cells: int = LABEL_DRAW_CELLS
                     ) -> dict[str, Estimate]:
    """The expected accuracy, precision, recall, F1 and ROC AUC of a window and the band in which
    the realized value lies with probability `confidence`, given each row's calibrated probability
    of the positive class, its logged predicted label and its raw score (for the AUC's ranks;
    `ranks`: those ranks, when already known)."""
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
    predicted_positive = int(yhat.sum())
    expected = _from_sums(*(p @ a), predicted_positive, n)
    drawn = _from_sums(*_draw_sums(p, a, draws, np.random.default_rng(seed), label_draw_cells).T, predicted_positive, n)
    tail = (1 - confidence) / 2
    for metric in ("recall", "f1", "roc_auc"):
        value, sample = float(expected[metric]), drawn[metric][np.isfinite(drawn[metric])]
        if math.isfinite(value) and len(sample) >= draws // 2:
            lower, upper = np.quantile(sample, [tail, 1 - tail])
            out[metric] = Estimate(value, float(min(lower, value)), float(max(upper, value)))
    return {m: out[m] for m in METRICS if m in out}


def estimate(calibration: ScoreCalibration, scores: np.ndarray, predicted: np.ndarray,
             targets: np.ndarray | None = None, *, min_labelled_rows: int = 1, confidence: float = 0.95,
             draws: int = DRAWS, seed: int = 0) -> Estimation:
    """A window's estimation: over all its rows, and (with at least `min_labelled_rows` labels,
    `targets` NaN where none landed) the estimate on the labelled rows against the realized quality."""
    scores = np.asarray(scores, dtype=float)
    predicted = np.asarray(predicted, dtype=float)
    p = calibration.probabilities(scores)
    estimates = estimate_quality(p, predicted, scores, confidence=confidence, draws=draws, seed=seed)
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
