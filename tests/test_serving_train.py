"""serving/train.py: artifact + manifest + reference, holdout quality, and reference vs replayed traffic."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ks_2samp

from serving import data, train
from serving.model import ModelNotFound, load_model, sha256_file


@pytest.fixture(scope="module")
def stats() -> pd.DataFrame:
    return data.generate_driver_stats()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, stats):
    model_dir = tmp_path_factory.mktemp("model")
    manifest = train.train(model_dir, stats, log=lambda line: None)
    return model_dir, manifest


def chosen(model_dir, stats, variant: str, n: int, seed: int) -> pd.DataFrame:
    """What serving would log for replayed traffic: the chosen driver's features and the outcome."""
    model = load_model(model_dir)
    candidates = data.explode_traffic(data.generate_traffic(variant, n, seed, driver_stats=stats), stats)
    score = model.score(candidates)
    return train.chosen_rows(candidates, score)


def test_writes_manifest_artifact_and_reference(trained):
    model_dir, manifest = trained
    on_disk = json.loads((model_dir / "manifest.json").read_text())
    assert on_disk == manifest
    assert manifest["model_name"] == "driver_ranker"
    assert manifest["features"] == ["conv_rate", "acc_rate", "avg_daily_trips"]
    assert (model_dir / manifest["artifact"]["path"]).exists()
    assert manifest["artifact"]["sha256"] == sha256_file(model_dir / manifest["artifact"]["path"])
    assert manifest["reference"]["sha256"] == sha256_file(model_dir / "reference.parquet")
    assert set(manifest["training"]["statistics"]) == set(manifest["features"])
    assert manifest["model_version"] in manifest["artifact"]["path"]


def test_reference_layout(trained):
    model_dir, manifest = trained
    reference = pd.read_parquet(model_dir / "reference.parquet")
    assert list(reference.columns) == ["conv_rate", "acc_rate", "avg_daily_trips", "prediction",
                                       "prediction_score", "target"]
    assert len(reference) == manifest["reference"]["rows"] > 1000
    assert reference["avg_daily_trips"].dtype == np.int64
    assert reference["conv_rate"].dtype == np.float64
    assert set(reference["prediction"].unique()) <= {0, 1} and set(reference["target"].unique()) == {0, 1}
    assert reference["prediction_score"].between(0, 1).all()
    assert (reference["prediction"] == (reference["prediction_score"] >= 0.5)).all()
    assert reference["conv_rate"].isin(data.latest_features(data.generate_driver_stats())["conv_rate"]).all()


def test_holdout_quality_is_reported_and_useful(trained):
    _, manifest = trained
    candidates = manifest["holdout"]["candidates"]
    assert candidates["roc_auc"] > 0.72 and candidates["accuracy"] > 0.65
    assert manifest["reference"]["rows"] == manifest["reference"]["requests"] == train.REFERENCE_REQUESTS
    assert manifest["reference"]["seed"] != manifest["training"]["seed"]    # never rows it was fitted on
    assert abs(manifest["reference_quality"]["accuracy"] - manifest["holdout"]["chosen"]["accuracy"]) < 0.03
    assert "holdout" in train.format_quality(manifest)


def test_training_is_deterministic_in_everything_but_the_clock(tmp_path, stats, trained):
    _, manifest = trained
    again = train.train(tmp_path, stats, log=lambda line: None)
    assert again["artifact"]["sha256"] == manifest["artifact"]["sha256"]
    assert again["reference"]["sha256"] == manifest["reference"]["sha256"]


def test_normal_traffic_is_indistinguishable_from_the_reference(trained, stats):
    model_dir, _ = trained
    reference = pd.read_parquet(model_dir / "reference.parquet")
    live = chosen(model_dir, stats, "normal", 400, seed=2024)
    for name in data.FEATURE_COLUMNS + ("prediction_score",):
        assert ks_2samp(reference[name], live[name]).pvalue > 0.05, name


def test_drift_traffic_shifts_exactly_the_documented_features(trained, stats):
    model_dir, _ = trained
    reference = pd.read_parquet(model_dir / "reference.parquet")
    live = chosen(model_dir, stats, "drift", 400, seed=2024)
    assert ks_2samp(reference["conv_rate"], live["conv_rate"]).pvalue < 1e-6
    assert ks_2samp(reference["acc_rate"], live["acc_rate"]).pvalue < 1e-6
    assert ks_2samp(reference["avg_daily_trips"], live["avg_daily_trips"]).pvalue > 0.05
    assert ks_2samp(reference["prediction_score"], live["prediction_score"]).pvalue < 1e-6


def test_model_quality_drops_under_drift(trained, stats):
    model_dir, _ = trained
    normal = chosen(model_dir, stats, "normal", 400, seed=77)
    drift = chosen(model_dir, stats, "drift", 400, seed=77)
    accuracy = {name: (rows["prediction"] == rows["target"]).mean() for name, rows in
                (("normal", normal), ("drift", drift))}
    assert accuracy["normal"] - accuracy["drift"] > 0.3


def test_load_model_refuses_a_tampered_artifact(tmp_path, stats):
    manifest = train.train(tmp_path, stats, n_requests=300, reference_requests=300, log=lambda line: None)
    with open(tmp_path / manifest["artifact"]["path"], "ab") as handle:
        handle.write(b"x")
    with pytest.raises(ModelNotFound, match="sha256"):
        load_model(tmp_path)


def test_load_model_without_manifest_says_what_to_run(tmp_path):
    with pytest.raises(ModelNotFound, match="serving.bootstrap"):
        load_model(tmp_path)
