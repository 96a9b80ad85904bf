"""Feast round trip (real local store in a tmp dir) and the idempotent bootstrap."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from serving import data
from serving.bootstrap import bootstrap
from serving.features import OnlineFeatures
from serving.settings import REPO_ROOT
from tests.serving_support import world


@pytest.fixture(scope="module")
def serving_world():
    return world()


@pytest.fixture(scope="module")
def online(serving_world):
    return OnlineFeatures.open(serving_world.settings.path("feast"))


def test_online_features_are_the_latest_statistics(serving_world, online):
    stats = pd.read_parquet(serving_world.settings.driver_stats_path)
    latest = data.latest_features(stats)
    ids = [1001, 1250, 1500, 5001, 5377]
    found = online.get(ids)
    assert found.driver_ids == ids and found.missing == []
    for driver_id, row in zip(ids, found.rows):
        assert row["conv_rate"] == pytest.approx(latest.loc[driver_id, "conv_rate"])
        assert row["acc_rate"] == pytest.approx(latest.loc[driver_id, "acc_rate"])
        assert row["avg_daily_trips"] == latest.loc[driver_id, "avg_daily_trips"]
        assert isinstance(row["avg_daily_trips"], int) and isinstance(row["conv_rate"], float)


def test_unknown_ids_are_reported_not_guessed(online):
    found = online.get([1001, 42, 999_999, 5001])
    assert found.driver_ids == [1001, 5001]
    assert found.missing == [42, 999_999]


def test_every_generated_driver_is_online(online):
    ids = list(data.driver_ids("normal")) + list(data.driver_ids("drift"))
    assert online.get(ids).missing == []


def test_open_without_registry_says_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="serving.bootstrap"):
        OnlineFeatures.open(tmp_path)


def test_bootstrap_second_run_is_a_no_op(serving_world):
    lines: list[str] = []
    stamp_before = (serving_world.var_dir / "bootstrap.json").read_text()
    bootstrap(serving_world.settings, log=lines.append)
    assert lines == [f"bootstrap: {step:<8} up to date" for step in ("data", "model", "duration", "features")]
    assert (serving_world.var_dir / "bootstrap.json").read_text() == stamp_before


def test_bootstrap_rebuilds_only_what_is_missing(tmp_path):
    from serving.settings import ServingSettings

    settings = ServingSettings(var_dir=tmp_path)
    bootstrap(settings, log=lambda line: None)
    manifest = json.loads((settings.path("model") / "manifest.json").read_text())
    (settings.path("model") / manifest["artifact"]["path"]).unlink()
    lines: list[str] = []
    bootstrap(settings, log=lines.append)
    assert "bootstrap: data     up to date" in lines
    assert "bootstrap: model    building ..." in lines
    assert "bootstrap: features up to date" in lines


def test_bootstrap_cli_works_from_another_directory(tmp_path, serving_world):
    env = {**os.environ, "SERVING_VAR_DIR": str(serving_world.var_dir), "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run([sys.executable, "-m", "serving.bootstrap"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "features up to date" in result.stdout and "ready under" in result.stdout
