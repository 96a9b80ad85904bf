"""Train the trip_duration regressor on normal duration requests; write its artifact, manifest and reference.

`python -m serving.train_duration` writes to the duration model directory (default var/model/trip_duration/):
  model-<version>.pkl   the fitted scikit-learn pipeline (pickle)
  manifest.json         model_name trip_duration, task regression, target duration_minutes (minutes),
                        model_version, features, created, artifact, reference, holdout metrics,
                        training-set statistics
  reference.parquet     one row per holdout request: conv_rate, acc_rate, avg_daily_trips (the
                        driver's online features), prediction (predicted minutes, float) and target
                        (realized minutes, float). Built the way serving predicts: the features Feast
                        serves (the driver's latest hour) through RegressionModel.predict.

Separate from train.py so the ranker's artifacts and their bootstrap key do not move with this model.
"""
from __future__ import annotations

import argparse
import json
import pickle
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from common.schema import FEATURE_NAMES
from serving import data
from serving.model import DURATION_MODEL_NAME, MANIFEST, RegressionModel, sha256_file
from serving.settings import ServingSettings
from serving.train import (REFERENCE_FILE, _write_atomic, feature_statistics, format_quality, version_of,
                           write_artifacts)

TRAINING_REQUESTS = 5000
TRAINING_SEED = 13
HOLDOUT_SHARE = 0.4
TARGET = "duration_minutes"


def fit(train: pd.DataFrame) -> Pipeline:
    """Ridge on standardised features, fitted on a plain float array in FEATURE_NAMES order (as the ranker)."""
    model = make_pipeline(StandardScaler(), Ridge(alpha=1.0))
    return model.fit(train[list(FEATURE_NAMES)].to_numpy(dtype=float), train[TARGET].to_numpy(dtype=float))


def quality(target: np.ndarray, prediction: np.ndarray) -> dict[str, float]:
    """The regression metrics the log processor exports (mae, rmse, mape, r2, mean_error = bias)."""
    target, prediction = np.asarray(target, dtype=float), np.asarray(prediction, dtype=float)
    error = prediction - target
    abs_error = np.abs(error)
    total = float(np.sum((target - target.mean()) ** 2))
    metrics = {
        "rows": int(len(target)),
        "mae": float(abs_error.mean()),
        "rmse": float(np.sqrt(np.mean(error ** 2))),
        "mape": float(np.mean(abs_error / np.maximum(np.abs(target), 1e-9))),
        "r2": 1.0 - float(np.sum(error ** 2)) / total if total > 0 else 0.0,
        "mean_error": float(error.mean()),
        "abs_error_p50": float(np.quantile(abs_error, 0.5)),
        "abs_error_p90": float(np.quantile(abs_error, 0.9)),
        "target_mean": float(target.mean()),
        "target_std": float(target.std(ddof=1)) if len(target) > 1 else 0.0,
    }
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in metrics.items()}


def reference_rows(rows: pd.DataFrame, prediction: np.ndarray) -> pd.DataFrame:
    """The reference.parquet layout of the contract: the three features, prediction, target."""
    return pd.DataFrame({
        "conv_rate": rows["conv_rate"].astype(float).to_numpy(),
        "acc_rate": rows["acc_rate"].astype(float).to_numpy(),
        "avg_daily_trips": rows["avg_daily_trips"].astype(np.int64).to_numpy(),
        "prediction": np.asarray(prediction, dtype=float),
        "target": rows[TARGET].astype(float).to_numpy(),
    })


def train(model_dir: Path, driver_stats: pd.DataFrame, *, n_requests: int = TRAINING_REQUESTS,
          seed: int = TRAINING_SEED, log=print) -> dict[str, Any]:
    """Fit, evaluate, write artifact + reference + manifest (each atomically); returns the manifest."""
    model_dir.mkdir(parents=True, exist_ok=True)
    log(f"train_duration: generating {n_requests} normal duration requests (seed {seed})")
    frame = data.generate_duration_frame(n_requests, seed, "normal", driver_stats=driver_stats)
    cut = int(len(frame) * (1.0 - HOLDOUT_SHARE))
    train_rows, holdout_rows = frame.iloc[:cut], frame.iloc[cut:]
    log(f"train_duration: fitting on {len(train_rows)} requests, holdout {len(holdout_rows)}")
    estimator = fit(train_rows)

    blob = pickle.dumps(estimator, protocol=pickle.HIGHEST_PROTOCOL)
    created, version = datetime.now(timezone.utc), version_of(blob)
    # Predicted through the class serving uses, on the rows Feast serves, so reference = what serving logs.
    served = RegressionModel(DURATION_MODEL_NAME, version, FEATURE_NAMES, estimator)
    holdout_rows_list = holdout_rows[list(FEATURE_NAMES)].to_dict("records")
    reference = reference_rows(holdout_rows, served.predict(holdout_rows_list))

    artifact, reference_path = write_artifacts(model_dir, version, blob, reference)
    manifest = {
        "model_name": DURATION_MODEL_NAME,
        "model_version": version,
        "task": "regression",
        "target": {"name": TARGET, "unit": "minutes"},
        "features": list(FEATURE_NAMES),
        "created": created.isoformat(timespec="seconds"),
        "artifact": {"path": artifact.name, "sha256": sha256_file(artifact)},
        "reference": {"path": REFERENCE_FILE, "rows": len(reference), "sha256": sha256_file(reference_path),
                      "built_from": "every holdout duration request (as serving predicts and logs it)"},
        "holdout": {"requests": quality(reference["target"], reference["prediction"])},
        "training": {"requests": n_requests, "seed": seed, "rows": len(train_rows),
                     "holdout_share": HOLDOUT_SHARE, "statistics": feature_statistics(train_rows)},
        "reference_statistics": feature_statistics(reference),
    }
    _write_atomic(model_dir / MANIFEST, lambda p: p.write_text(json.dumps(manifest, indent=2) + "\n"))
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.train_duration", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=TRAINING_REQUESTS, help="normal requests to simulate")
    parser.add_argument("--seed", type=int, default=TRAINING_SEED)
    args = parser.parse_args(argv)
    settings = ServingSettings.from_env()
    stats_path = settings.driver_stats_path
    stats = pd.read_parquet(stats_path) if stats_path.exists() else data.generate_driver_stats(settings.seed)
    model_dir = settings.path("duration_model")
    manifest = train(model_dir, stats, n_requests=args.requests, seed=args.seed)
    print(format_quality(manifest))
    print(f"train_duration: wrote {model_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
