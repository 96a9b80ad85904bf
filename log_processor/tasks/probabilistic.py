"""Probabilistic quality: how good the scores are as probabilities, for the binary monitor (its
positive-class score) and the multi-class monitor that logs a score vector.

ROC AUC and log loss are Evidently's (`RocAuc`, `LogLoss`; multi-class: one-vs-rest macro AUC); Evidently
0.7 has no Brier score, calibration error or calibration curve, so those are computed here:
- brier: mean squared distance between the score vector and the one-hot target (binary: (p - y)²);
- calibration_error: expected calibration error over 10 equal-width bins (`calibration_error`, which the score calibration of evaluate/estimation.py
  reports too);
- calibration curve: per bin, the mean predicted probability and the observed share of hits.
Multi-class calibration is top-label calibration: the predicted probability is the highest score and a
hit is that class being the realized one.
"""
from __future__ import annotations

import numpy as np
from evidently.metrics import LogLoss, RocAuc


BINS = 10
PROBAS = "probas"       # the name of the Evidently classification that reads the scores
PREFIX = "p:"           # this family's metrics, in the one Report a task runs with its own


def evidently_metrics(classes_present: int, classes: int) -> dict:
    """ROC AUC needs every class among the labelled rows (else it is undefined); log loss always.
    Keyed "p:<name>", so that `split` tells them from the task's own metrics."""
    metrics = {"log_loss": LogLoss(classification_name=PROBAS)}
    if classes_present == classes:
        metrics["roc_auc"] = RocAuc(classification_name=PROBAS)
    return {PREFIX + name: metric for name, metric in metrics.items()}


def split(raw: dict) -> tuple[dict, dict]:
    """A task report's raw values: (the task's own metrics, this family's without their prefix)."""
    own = {k: v for k, v in raw.items() if not k.startswith(PREFIX)}
    return own, {k[len(PREFIX):]: v for k, v in raw.items() if k.startswith(PREFIX)}


def by_hand(probabilities: np.ndarray, hits: np.ndarray, scores: np.ndarray, onehot: np.ndarray
            ) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """(brier and calibration_error, the calibration curve by bin "0".."9").

    `probabilities`, `hits`: one per row, what is calibrated (binary: the score and y; multi-class: the
    top score and whether its class was realized); `scores`, `onehot`: (rows, classes) for the Brier score."""
    p, y = np.asarray(probabilities, dtype=float), np.asarray(hits, dtype=float)
    values = {"brier": float(np.mean(np.sum((scores - onehot) ** 2, axis=1))) if len(p) else float("nan"),
              "calibration_error": calibration_error(p, y, BINS) if len(p) else float("nan")}
    which = np.minimum((np.clip(p, 0.0, 1.0) * BINS).astype(int), BINS - 1)
    rows = np.bincount(which, minlength=BINS)
    predicted, observed = np.bincount(which, p, BINS), np.bincount(which, y, BINS)
    curve = {str(b): (float(predicted[b] / rows[b]), float(observed[b] / rows[b])) for b in range(BINS) if rows[b]}
    return values, curve


def calibration_error(probabilities: np.ndarray, targets: np.ndarray, bins: int = BINS) -> float:
    """Expected calibration error: over equal-width probability bins, the row-weighted
    |mean predicted probability - share of positives|."""
    p, y = np.asarray(probabilities, dtype=float), np.asarray(targets, dtype=float)
    which = np.minimum((p * bins).astype(int), bins - 1)
    rows = np.bincount(which, minlength=bins)
    gap = np.abs(np.bincount(which, p, bins) - np.bincount(which, y, bins))
    return float(gap.sum() / max(rows.sum(), 1))
