"""serving/train_duration.py: the trip_duration artifact, manifest and reference, and its quality
falling on the drift traffic (the figures of docs/serving.md#trip-duration)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ks_2samp

from serving import data, train_duration
from serving.model import ModelNotFound, load_model, load_regression_model, sha256_file


@pytest.fixture(scope="module")
def stats() -> pd.DataFrame:
    return data.generate_driver_stats()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, stats):
    model_dir = tmp_path_factory.mktemp("trip_duration")
    return model_dir, train_duration.train(model_dir, stats, log=lambda line: None)


def replay(model_dir, stats, variant: str, n: int, seed: int) -> dict[str, float]:
    """Quality of the model on replayed duration traffic, predicted as serving does."""
    model = load_regression_model(model_dir)
    frame = data.generate_duration_frame(n, seed, variant, driver_stats=stats)
    rows = frame[list(model.features)].to_dict("records")
    return train_duration.quality(frame["duration_minutes"], model.predict(rows)) | {
        "prediction_mean": float(model.predict(rows).mean())}


def test_writes_manifest_artifact_and_reference(trained):
    model_dir, manifest = trained
    assert json.loads((model_dir / "manifest.json").read_text()) == manifest
    assert (manifest["model_name"], manifest["task"]) == ("trip_duration", "regression")
    assert manifest["target"] == {"name": "duration_minutes", "unit": "minutes"}
    assert manifest["features"] == ["conv_rate", "acc_rate", "avg_daily_trips"]
    assert manifest["artifact"]["sha256"] == sha256_file(model_dir / manifest["artifact"]["path"])
    assert manifest["model_version"] in manifest["artifact"]["path"]
    assert manifest["reference"]["sha256"] == sha256_file(model_dir / "reference.parquet")
    assert not list(model_dir.glob(".*"))   # no temp file left behind by the atomic writes


def test_reference_layout_is_the_contracts(trained):
    model_dir, manifest = trained
    reference = pd.read_parquet(model_dir / "reference.parquet")
    assert list(reference.columns) == ["conv_rate", "acc_rate", "avg_daily_trips", "prediction", "target"]
    assert len(reference) == manifest["reference"]["rows"] == manifest["holdout"]["requests"]["rows"] == 2000
    assert reference["avg_daily_trips"].dtype == np.int64
    assert reference["prediction"].dtype == np.float64 and reference["target"].dtype == np.float64
    assert reference["conv_rate"].isin(data.latest_features(data.generate_driver_stats())["conv_rate"]).all()


def test_reference_predictions_are_what_serving_answers(trained):
    model_dir, _ = trained
    reference = pd.read_parquet(model_dir / "reference.parquet")
    model = load_regression_model(model_dir)
    served = model.predict(reference[list(model.features)].to_dict("records"))
    np.testing.assert_allclose(reference["prediction"], served, rtol=0, atol=1e-12)


def test_holdout_quality_is_useful(trained):
    _, manifest = trained
    holdout = manifest["holdout"]["requests"]
    assert holdout["mae"] < 3.0 and holdout["r2"] > 0.5 and abs(holdout["mean_error"]) < 0.5
    assert holdout["rmse"] >= holdout["mae"]
    assert "trip_duration" in train_duration.format_quality(manifest)


def test_training_is_deterministic_in_everything_but_the_clock(tmp_path, stats, trained):
    _, manifest = trained
    again = train_duration.train(tmp_path, stats, log=lambda line: None)
    assert again["artifact"]["sha256"] == manifest["artifact"]["sha256"]
    assert again["reference"]["sha256"] == manifest["reference"]["sha256"]


def test_normal_traffic_matches_the_reference_and_drift_moves_target_and_quality(trained, stats):
    model_dir, manifest = trained
    reference = pd.read_parquet(model_dir / "reference.parquet")
    normal, drift = (replay(model_dir, stats, variant, 600, seed=77) for variant in data.VARIANTS)
    ref_mae = manifest["holdout"]["requests"]["mae"]
    assert normal["mae"] < 1.2 * ref_mae
    assert drift["mae"] > 2.5 * normal["mae"] and drift["rmse"] > 2.5 * normal["rmse"]
    assert drift["mae"] > 1.5 * ref_mae                      # RegressionQualityDegraded's ratio
    assert drift["mean_error"] < -5                          # the normal model under-predicts the longer trips
    assert drift["target_mean"] - normal["target_mean"] > 5  # target drift
    normal_frame = data.generate_duration_frame(600, 77, "normal", driver_stats=stats)
    drift_frame = data.generate_duration_frame(600, 77, "drift", driver_stats=stats)
    assert ks_2samp(reference["target"], normal_frame["duration_minutes"]).pvalue > 0.01
    assert ks_2samp(reference["target"], drift_frame["duration_minutes"]).pvalue < 1e-12
    assert ks_2samp(reference["avg_daily_trips"], drift_frame["avg_daily_trips"]).pvalue > 0.01
    assert ks_2samp(reference["conv_rate"], drift_frame["conv_rate"]).pvalue < 1e-12


def test_the_loaders_do_not_mix_the_two_models(trained, tmp_path):
    model_dir, _ = trained
    with pytest.raises(ModelNotFound, match="serving.bootstrap"):
        load_regression_model(tmp_path)
    manifest = json.loads((model_dir / "manifest.json").read_text())
    (tmp_path / manifest["artifact"]["path"]).write_bytes((model_dir / manifest["artifact"]["path"]).read_bytes())
    (tmp_path / "manifest.json").write_text(json.dumps({**manifest, "task": "binary_classification"}))
    with pytest.raises(ModelNotFound, match="not 'regression'"):
        load_regression_model(tmp_path)
    assert load_model(model_dir).name == "trip_duration"   # the generic loader reads any artifact
