"""Train the driver ranker on normal traffic and write the versioned artifact, manifest and reference.

`python -m serving.train` writes to the model directory (default var/model/):
  model-<version>.pkl   the fitted scikit-learn pipeline (pickle)
  manifest.json         model_name, model_version, features, created, artifact, reference, holdout
                        metrics, training-set statistics
  reference.parquet     the rows serving would have logged for REFERENCE_REQUESTS fresh normal requests
                        (a seed of their own, never trained on): for each request the candidate the
                        model picks, with conv_rate, acc_rate, avg_daily_trips, prediction,
                        prediction_score and target. The log processor compares live events with it,
                        so it is built exactly the way serving chooses a driver. It is large (20 000
                        labelled rows) because what the processor derives from it is only as sure as
                        its size: the score calibration behind estimated quality carries a bias of
                        about sqrt(p (1 - p) / rows) into every window (docs/benchmarks.md#estimated-quality).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, log_loss, precision_score, recall_score, roc_auc_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from common.schema import FEATURE_NAMES
from serving import data
from serving.model import MANIFEST, MODEL_NAME, sha256_file
from serving.settings import ServingSettings

TRAINING_REQUESTS = 5000
TRAINING_SEED = 11
REFERENCE_REQUESTS = 20_000
REFERENCE_SEED_OFFSET = 1_000     # the reference's seed: the training seed plus this
HOLDOUT_SHARE = 0.4
REFERENCE_FILE = "reference.parquet"


def split_by_request(frame: pd.DataFrame, holdout_share: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Whole requests go to one side, so the holdout's best-of-candidates rows are complete."""
    cut = int(frame["request_index"].max() * (1.0 - holdout_share))
    return frame[frame["request_index"] <= cut], frame[frame["request_index"] > cut]


def fit(train: pd.DataFrame) -> Pipeline:
    """Logistic regression on standardised features: its score is monotone in a linear function.

    Fitted on a plain float array in FEATURE_NAMES order (the manifest's `features`): scoring a
    small array then skips pandas and feature-name checks, which cost more than the model itself.
    """
    model = make_pipeline(StandardScaler(), LogisticRegression())
    return model.fit(feature_matrix(train), train["trip_completed"].to_numpy())


def feature_matrix(frame: pd.DataFrame) -> np.ndarray:
    return frame[list(FEATURE_NAMES)].to_numpy(dtype=float)


def quality(target: pd.Series, score: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    label = (score >= threshold).astype(int)
    metrics = {
        "rows": int(len(target)),
        "accuracy": accuracy_score(target, label),
        "precision": precision_score(target, label, zero_division=0),
        "recall": recall_score(target, label, zero_division=0),
        "f1": f1_score(target, label, zero_division=0),
        "positive_share": float(np.mean(target)),
    }
    if target.nunique() == 2:
        metrics["roc_auc"] = roc_auc_score(target, score)
        metrics["log_loss"] = log_loss(target, score, labels=[0, 1])
    return {k: (round(float(v), 4) if isinstance(v, float) else v) for k, v in metrics.items()}


def chosen_rows(candidates: pd.DataFrame, score: np.ndarray, threshold: float = 0.5) -> pd.DataFrame:
    """Per request the highest-scoring candidate, in the reference.parquet column layout."""
    scored = candidates.assign(prediction_score=score)
    best = scored.loc[scored.groupby("request_index")["prediction_score"].idxmax()]
    return pd.DataFrame({
        "conv_rate": best["conv_rate"].astype(float).to_numpy(),
        "acc_rate": best["acc_rate"].astype(float).to_numpy(),
        "avg_daily_trips": best["avg_daily_trips"].astype(np.int64).to_numpy(),
        "prediction": (best["prediction_score"] >= threshold).astype(np.int64).to_numpy(),
        "prediction_score": best["prediction_score"].astype(float).to_numpy(),
        "target": best["trip_completed"].astype(np.int64).to_numpy(),
    })


def feature_statistics(frame: pd.DataFrame) -> dict[str, dict[str, float]]:
    stats = {}
    for name in FEATURE_NAMES:
        col = frame[name].astype(float)
        stats[name] = {"mean": col.mean(), "std": col.std(), "min": col.min(), "p50": col.quantile(0.5),
                       "p05": col.quantile(0.05), "p95": col.quantile(0.95), "max": col.max()}
        stats[name] = {k: round(float(v), 6) for k, v in stats[name].items()}
    return stats


def _write_atomic(path: Path, write) -> None:
    """Write through a temp file + rename, so a reader never sees half a file."""
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as tmp:
        tmp_path = Path(tmp.name)
    try:
        write(tmp_path)
        tmp_path.chmod(0o644)
        tmp_path.replace(path)
    finally:
        tmp_path.unlink(missing_ok=True)


def version_of(blob: bytes, created: datetime | None = None) -> str:
    """The training date and the artifact's hash: deterministic training changes only the date."""
    return f"{(created or datetime.now(timezone.utc)):%Y.%m.%d}-{hashlib.sha256(blob).hexdigest()[:7]}"


def write_artifacts(model_dir: Path, version: str, blob: bytes, reference: pd.DataFrame) -> tuple[Path, Path]:
    """The pickled model and its reference, each written atomically; returns their paths."""
    artifact = model_dir / f"model-{version}.pkl"
    _write_atomic(artifact, lambda p: p.write_bytes(blob))
    reference_path = model_dir / REFERENCE_FILE
    _write_atomic(reference_path, lambda p: reference.to_parquet(p, index=False))
    return artifact, reference_path


def train(model_dir: Path, driver_stats: pd.DataFrame, *, n_requests: int = TRAINING_REQUESTS,
          seed: int = TRAINING_SEED, reference_requests: int = REFERENCE_REQUESTS, threshold: float = 0.5,
          log=print) -> dict[str, Any]:
    """Fit, evaluate, write artifact + reference + manifest; returns the manifest."""
    model_dir.mkdir(parents=True, exist_ok=True)
    log(f"train: generating {n_requests} normal requests (seed {seed})")
    frame = data.generate_training_frame(n_requests, seed, driver_stats=driver_stats)
    train_rows, holdout_rows = split_by_request(frame, HOLDOUT_SHARE)
    log(f"train: fitting on {len(train_rows)} candidate rows, holdout {len(holdout_rows)}")
    estimator = fit(train_rows)
    holdout_score = estimator.predict_proba(feature_matrix(holdout_rows))[:, 1]
    holdout_chosen = chosen_rows(holdout_rows, holdout_score, threshold)
    reference_seed = seed + REFERENCE_SEED_OFFSET
    log(f"train: building the reference from {reference_requests} fresh normal requests (seed {reference_seed})")
    fresh = data.generate_training_frame(reference_requests, reference_seed, driver_stats=driver_stats)
    reference = chosen_rows(fresh, estimator.predict_proba(feature_matrix(fresh))[:, 1], threshold)

    blob = pickle.dumps(estimator, protocol=pickle.HIGHEST_PROTOCOL)
    created, version = datetime.now(timezone.utc), version_of(blob)
    artifact, reference_path = write_artifacts(model_dir, version, blob, reference)

    manifest = {
        "model_name": MODEL_NAME,
        "model_version": version,
        "features": list(FEATURE_NAMES),
        "created": created.isoformat(timespec="seconds"),
        "decision_threshold": threshold,
        "artifact": {"path": artifact.name, "sha256": sha256_file(artifact)},
        "reference": {"path": REFERENCE_FILE, "rows": len(reference), "sha256": sha256_file(reference_path),
                      "requests": reference_requests, "seed": reference_seed,
                      "built_from": "chosen candidate of each fresh normal request (as serving logs it)"},
        "holdout": {"candidates": quality(holdout_rows["trip_completed"], holdout_score, threshold),
                    "chosen": quality(holdout_chosen["target"], holdout_chosen["prediction_score"].to_numpy(),
                                      threshold)},
        "reference_quality": quality(reference["target"], reference["prediction_score"].to_numpy(), threshold),
        "training": {"requests": n_requests, "seed": seed, "rows": len(train_rows),
                     "holdout_share": HOLDOUT_SHARE, "statistics": feature_statistics(train_rows)},
        "reference_statistics": feature_statistics(reference),
    }
    _write_atomic(model_dir / MANIFEST, lambda p: p.write_text(json.dumps(manifest, indent=2) + "\n"))
    return manifest


def format_quality(manifest: dict[str, Any]) -> str:
    lines = [f"model {manifest['model_name']} {manifest['model_version']}"]
    for part, metrics in manifest["holdout"].items():
        shown = ", ".join(f"{k}={v}" for k, v in metrics.items())
        lines.append(f"  holdout {part:<10} {shown}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.train", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=TRAINING_REQUESTS, help="normal requests to simulate")
    parser.add_argument("--seed", type=int, default=TRAINING_SEED)
    parser.add_argument("--reference-requests", type=int, default=REFERENCE_REQUESTS,
                        help="fresh normal requests whose chosen rows make reference.parquet")
    args = parser.parse_args(argv)
    settings = ServingSettings.from_env()
    stats_path = settings.driver_stats_path
    if stats_path.exists():
        stats = pd.read_parquet(stats_path)
    else:
        print(f"train: {stats_path} missing, generating driver stats (seed {settings.seed})")
        stats = data.generate_driver_stats(settings.seed)
    manifest = train(settings.path("model"), stats, n_requests=args.requests, seed=args.seed,
                     reference_requests=args.reference_requests, threshold=settings.decision_threshold)
    print(format_quality(manifest))
    print(f"train: wrote {settings.path('model')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
