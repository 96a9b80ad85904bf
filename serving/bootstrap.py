"""`python -m serving.bootstrap`: data -> models -> Feast apply + materialize, each step only when stale.

The models are the ranker (var/model/, serving/train.py) and trip_duration (var/model/trip_duration/,
serving/train_duration.py), two steps with keys of their own so retraining one leaves the other alone.

A step is redone when its inputs changed: the stamp file (var/bootstrap.json) records a key per step
made of the seed, the code that produces the step's output and the hash of its input file. A second
run with nothing changed only reads the stamp and checks that the outputs still exist.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from serving import data
from serving.model import ModelNotFound, load_model, load_regression_model, sha256_file
from serving.settings import ServingSettings

STAMP = "bootstrap.json"
_HERE = Path(__file__).resolve().parent


def _key(*parts: str | Path) -> str:
    """Hash of strings and of the bytes of files (source code, inputs)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.read_bytes() if isinstance(part, Path) else part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def write_driver_stats(path: Path, seed: int) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    data.generate_driver_stats(seed).to_parquet(tmp, index=False)
    tmp.replace(path)
    return sha256_file(path)


def publish_features(feast_dir: Path, stats_path: Path) -> int:
    """Feast apply + materialize of the whole stats file; returns the number of drivers online."""
    from serving.feature_repo import definitions, feature_store

    stats = pd.read_parquet(stats_path, columns=["driver_id", "event_timestamp"])
    store = feature_store(feast_dir)
    store.apply(definitions(stats_path))
    start = stats["event_timestamp"].min().to_pydatetime() - timedelta(hours=1)
    end = stats["event_timestamp"].max().to_pydatetime() + timedelta(hours=1)
    store.materialize(start_date=start, end_date=end)
    return int(stats["driver_id"].nunique())


def _model_ok(model_dir: Path, load: Callable[[Path], Any] = load_model) -> bool:
    try:
        load(model_dir)
        return True
    except (ModelNotFound, OSError, KeyError, ValueError):
        return False


def bootstrap(settings: ServingSettings, *, force: bool = False,
              log: Callable[[str], None] = print) -> dict[str, Any]:
    """Bring data, model and Feast state up to date; returns the new stamp."""
    var_dir = settings.var_dir
    var_dir.mkdir(parents=True, exist_ok=True)
    stamp_path = var_dir / STAMP
    stamp = {} if force or not stamp_path.exists() else json.loads(stamp_path.read_text())
    stats_path = settings.driver_stats_path
    model_dir, feast_dir = settings.path("model"), settings.path("feast")

    def step(name: str, key: str, done: bool, run: Callable[[], Any]) -> None:
        if stamp.get(name, {}).get("key") == key and done:
            log(f"bootstrap: {name:<8} up to date")
            return
        started = time.perf_counter()
        log(f"bootstrap: {name:<8} building ...")
        result = run()
        stamp[name] = {"key": key, "result": result}
        stamp_path.write_text(json.dumps(stamp, indent=2) + "\n")
        log(f"bootstrap: {name:<8} done in {time.perf_counter() - started:.1f}s ({result})")

    step("data", _key(f"seed={settings.seed}", Path(data.__file__)), stats_path.exists(),
         lambda: write_driver_stats(stats_path, settings.seed))
    stats_sha = sha256_file(stats_path)

    def run_train() -> str:
        from serving.train import format_quality, train

        manifest = train(model_dir, pd.read_parquet(stats_path), threshold=settings.decision_threshold, log=log)
        log(format_quality(manifest))
        return manifest["model_version"]

    step("model", _key(stats_sha, Path(data.__file__), _HERE / "train.py", str(settings.decision_threshold)),
         _model_ok(model_dir), run_train)
    duration_dir = settings.path("duration_model")

    def run_train_duration() -> str:
        from serving.train_duration import format_quality, train

        manifest = train(duration_dir, pd.read_parquet(stats_path), log=log)
        log(format_quality(manifest))
        return manifest["model_version"]

    step("duration", _key(stats_sha, Path(data.__file__), _HERE / "train_duration.py", _HERE / "train.py"),
         _model_ok(duration_dir, load_regression_model), run_train_duration)
    step("features", _key(stats_sha, str(stats_path.resolve()), str(feast_dir.resolve()),
                          *sorted((_HERE / "feature_repo").glob("*.py"))),
         (feast_dir / "online_store.db").exists() and (feast_dir / "registry.db").exists(),
         lambda: f"{publish_features(feast_dir, stats_path)} drivers online")
    return stamp


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.bootstrap", description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rebuild every step")
    args = parser.parse_args(argv)
    settings = ServingSettings.from_env()
    bootstrap(settings, force=args.force)
    print(f"bootstrap: ready under {settings.var_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
