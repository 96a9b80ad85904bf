"""The model artifacts: what train.py / train_duration.py write to a model directory and what serving loads back."""
from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

MODEL_NAME = "driver_ranker"
DURATION_MODEL_NAME = "trip_duration"
MANIFEST = "manifest.json"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def feature_matrix(rows: pd.DataFrame | Sequence[Mapping[str, float]], features: Sequence[str]) -> np.ndarray:
    """Rows as a float array in the manifest's feature order: the estimators were fitted on such an
    array, so scoring skips pandas and feature-name checks (they cost more than the model)."""
    if isinstance(rows, pd.DataFrame):
        return rows[list(features)].to_numpy(dtype=float)
    return np.array([[row[name] for name in features] for row in rows], dtype=float)


class ModelNotFound(RuntimeError):
    """No usable artifact in the model directory (run `python -m serving.bootstrap`)."""


@dataclass(frozen=True)
class Model:
    """A fitted classifier plus its identity; `score` returns P(trip_completed) per row."""

    name: str
    version: str
    features: tuple[str, ...]
    estimator: Any
    threshold: float = 0.5

    def score(self, rows: pd.DataFrame | Sequence[Mapping[str, float]]) -> np.ndarray:
        """Scores for a frame, or for a list of feature dicts (the fast path serving uses)."""
        return self.estimator.predict_proba(feature_matrix(rows, self.features))[:, 1]

    def label(self, scores: np.ndarray) -> np.ndarray:
        return (np.asarray(scores) >= self.threshold).astype(int)


def read_manifest(model_dir: Path) -> dict[str, Any]:
    path = Path(model_dir) / MANIFEST
    if not path.exists():
        raise ModelNotFound(f"{path} not found; run `python -m serving.bootstrap` first")
    return json.loads(path.read_text())


@dataclass(frozen=True)
class RegressionModel:
    """A fitted regressor plus its identity; `predict` returns the trip's duration in minutes per row."""

    name: str
    version: str
    features: tuple[str, ...]
    estimator: Any

    def predict(self, rows: pd.DataFrame | Sequence[Mapping[str, float]]) -> np.ndarray:
        """Predictions for a frame, or for a list of feature dicts (the fast path serving uses)."""
        return np.asarray(self.estimator.predict(feature_matrix(rows, self.features)), dtype=float)


def _load_estimator(model_dir: Path) -> tuple[dict[str, Any], Any]:
    """manifest.json and the artifact it names, refusing one whose sha256 does not match."""
    manifest = read_manifest(model_dir)
    artifact = Path(model_dir) / manifest["artifact"]["path"]
    if not artifact.exists():
        raise ModelNotFound(f"{artifact} (named in {MANIFEST}) not found")
    if sha256_file(artifact) != manifest["artifact"]["sha256"]:
        raise ModelNotFound(f"{artifact}: sha256 differs from {MANIFEST}; retrain")
    with open(artifact, "rb") as handle:
        return manifest, pickle.load(handle)


def load_model(model_dir: Path, threshold: float = 0.5) -> Model:
    """The ranker (classifier) of `model_dir`."""
    manifest, estimator = _load_estimator(model_dir)
    return Model(name=manifest["model_name"], version=manifest["model_version"],
                 features=tuple(manifest["features"]), estimator=estimator, threshold=threshold)


def load_regression_model(model_dir: Path) -> RegressionModel:
    """The regressor of `model_dir` (var/model/trip_duration/); refuses a manifest of another task."""
    manifest, estimator = _load_estimator(model_dir)
    if manifest.get("task") != "regression":
        raise ModelNotFound(f"{Path(model_dir) / MANIFEST}: task is {manifest.get('task')!r}, not 'regression'")
    return RegressionModel(name=manifest["model_name"], version=manifest["model_version"],
                           features=tuple(manifest["features"]), estimator=estimator)
