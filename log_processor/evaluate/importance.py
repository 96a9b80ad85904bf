"""How much the monitor's model depends on each feature, computed once on the reference (and cached
beside it): permutation importance on the model's output.

Each feature's column of the reference is shuffled (`REPEATS` times, a fixed seed) and the importance
is the mean absolute change of the model's output it causes: the scores of every class for a
classifier (`predict_proba`), the predicted value for a regressor (`predict`). It needs no labels,
so it works for any task and any reference; normalised to sum to 1 over the monitor's features.
The model is the artifact the reference's manifest names (sha256-checked, like serving loads it);
a reference without one (a store range) has no importance, and root causes rank by drift alone
(evaluate/root_cause.py).
"""
from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

REPEATS = 3
MAX_ROWS = 5000          # a uniform sample of the reference: importance is a mean, 5 000 rows pin it well
VERSION = "v1"


class ModelUnavailable(RuntimeError):
    """The manifest names no usable model artifact."""


def model_of(manifest_path: Path) -> tuple[Callable[[np.ndarray], np.ndarray], tuple[str, ...], str]:
    """(predict: feature matrix -> outputs, the model's feature order, the artifact's sha256)."""
    try:
        manifest = json.loads(manifest_path.read_text())
        artifact = manifest_path.parent / manifest["artifact"]["path"]
        expected = manifest["artifact"]["sha256"]
        features = tuple(manifest["features"])
        blob = artifact.read_bytes()
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelUnavailable(f"{manifest_path}: no model artifact to compute feature importance ({exc})") from None
    digest = hashlib.sha256(blob).hexdigest()
    if digest != expected:
        raise ModelUnavailable(f"{artifact}: sha256 differs from {manifest_path}")
    estimator = pickle.loads(blob)     # the project's own artifact, checked against its manifest
    if hasattr(estimator, "predict_proba"):
        return (lambda x: np.asarray(estimator.predict_proba(x), dtype=float)), features, digest
    return (lambda x: np.asarray(estimator.predict(x), dtype=float).reshape(len(x), -1)), features, digest


def permutation_importance(predict: Callable[[np.ndarray], np.ndarray], frame: pd.DataFrame,
                           model_features: tuple[str, ...], features: tuple[str, ...], *,
                           repeats: int = REPEATS, seed: int = 0, max_rows: int = MAX_ROWS) -> dict[str, float]:
    """feature -> share of the model's output change when it is shuffled (module docstring); a monitor
    feature the model does not take gets 0."""
    rng = np.random.default_rng(seed)
    rows = frame if len(frame) <= max_rows else frame.iloc[np.sort(rng.choice(len(frame), max_rows, replace=False))]
    x = rows[list(model_features)].to_numpy(dtype=float)
    base = predict(x)
    raw: dict[str, float] = {}
    for name in features:
        if name not in model_features:
            raw[name] = 0.0
            continue
        j = model_features.index(name)
        changes = []
        for _ in range(repeats):
            shuffled = x.copy()
            shuffled[:, j] = rng.permutation(shuffled[:, j])
            changes.append(float(np.abs(predict(shuffled) - base).sum(axis=1).mean()))
        raw[name] = float(np.mean(changes))
    total = sum(raw.values())
    return {name: (v / total if total > 0 else 0.0) for name, v in raw.items()}


def importance_key(reference_sha256: str, model_sha256: str, features: tuple[str, ...]) -> str:
    return f"{VERSION}|{reference_sha256}|{model_sha256}|{','.join(features)}|repeats:{REPEATS}|rows:{MAX_ROWS}|seed:0"


def as_arrays(importance: dict[str, float]) -> dict[str, Any]:
    return {"names": np.array(list(importance)), "values": np.array(list(importance.values()), dtype=float)}


def from_arrays(data: dict[str, np.ndarray]) -> dict[str, float]:
    return {str(n): float(v) for n, v in zip(data["names"], data["values"])}
