"""`task:` in monitors.yaml: the contract's two new monitors load, and each task's wrong or missing key
is one error naming monitors.yaml:LINE and the key; the CLI exits 2 on it."""
from __future__ import annotations

import subprocess
import sys

import pytest

from log_processor.monitors import ConfigError, load_monitors
from tests import task_data as data
from tests.conftest import REPO_ROOT

BINARY = """\
monitors:
  - name: m1
    features:
      conv_rate: {field: features.conv_rate}
    prediction: {label: prediction.label, score: prediction.score}
    target: target.trip_completed
    window: {span: 10m}
    reference: {parquet: ref.parquet}
"""


def load(tmp_path, text):
    path = tmp_path / "monitors.yaml"
    path.write_text(text)
    return load_monitors(path, base_dir=tmp_path)


def test_the_contracts_regression_and_multiclass_monitors_load(tmp_path):
    (reg,) = load(tmp_path, data.REGRESSION_YAML)
    assert (reg.task, reg.prediction_value, reg.target, reg.quality_alert_ratio) == (
        "regression", "prediction.value", "target.duration_minutes", 1.5)
    assert reg.prediction_label is None and reg.prediction_score is None and reg.drift.prediction.method == "wasserstein"
    (mc,) = load(tmp_path, data.MULTICLASS_YAML)
    assert (mc.task, mc.classes, mc.prediction_label, mc.prediction_scores) == (
        "multiclass_classification", ("short", "medium", "long"), "prediction.class", "prediction.class_scores")
    assert mc.drift.prediction.method == "jensenshannon"
    (uncalibrated,) = load(tmp_path, data.MULTICLASS_YAML.replace("    drift: {alpha: 0.01}\n", ""))
    assert uncalibrated.drift.prediction.method == "jensenshannon"


def test_binary_is_the_default_task_and_unchanged(tmp_path):
    (m,) = load(tmp_path, BINARY)
    assert (m.task, m.classes, m.prediction_label, m.prediction_score) == (
        "binary_classification", ("0", "1"), "prediction.label", "prediction.score")
    (explicit,) = load(tmp_path, BINARY.replace("    target:", "    task: binary_classification\n    target:"))
    assert explicit == m


REG = data.REGRESSION_YAML
MC = data.MULTICLASS_YAML


@pytest.mark.parametrize("text, expected", [
    (BINARY.replace("    target:", "    task: ranking\n    target:"),
     r"monitors.yaml:6: monitors\[0\]\.task: must be one of binary_classification, multiclass_classification, "
     r"regression, got 'ranking'"),
    (BINARY.replace("{label: prediction.label, score: prediction.score}", "{label: prediction.label}"),
     r"monitors.yaml:5: monitors\[0\]\.prediction\.score: required for task binary_classification"),
    (REG.replace("{value: prediction.value}", "{label: prediction.label}"),
     r"monitors.yaml:9: monitors\[0\]\.prediction\.label: unknown key \(allowed: value\)"),
    (REG.replace("{value: prediction.value}", "{}"),
     r"monitors.yaml:9: monitors\[0\]\.prediction\.value: required for task regression"),
    (REG.replace("    target: target.duration_minutes\n", ""),
     r"monitors.yaml:2: monitors\[0\]: missing required key 'target'"),
    (REG.replace("{alert_ratio: 1.5}", "{alert_ratio: 0.5}"),
     r"monitors.yaml:16: monitors\[0\]\.quality\.alert_ratio: must be a number >= 1, got 0.5"),
    (REG + "    estimation: {calibration: platt}\n",
     r"monitors.yaml:17: monitors\[0\]\.estimation: only for task binary_classification"),
    (REG.replace("    task: regression\n", "    task: regression\n    classes: [a, b, c]\n"),
     r"monitors.yaml:4: monitors\[0\]\.classes: only for task multiclass_classification"),
    (MC.replace("    classes: [short, medium, long]\n", ""),
     r"monitors.yaml:2: monitors\[0\]: missing required key 'classes'"),
    (MC.replace("[short, medium, long]", "[short, long]"),
     r"monitors.yaml:5: monitors\[0\]\.classes: needs at least 3 distinct classes, got \['short', 'long'\]"),
    (MC.replace("[short, medium, long]", "[short, short, long]"),
     r"monitors.yaml:5: monitors\[0\]\.classes: needs at least 3 distinct classes"),
    (MC.replace("[short, medium, long]", "short"),
     r"monitors.yaml:5: monitors\[0\]\.classes: must be a list of class names, got 'short'"),
    (MC.replace("[short, medium, long]", "[short, medium, target]"),
     r"monitors.yaml:5: monitors\[0\]\.classes: 'target' is a column name"),
    (MC.replace("{label: prediction.class, scores: prediction.class_scores}", "{scores: prediction.class_scores}"),
     r"monitors.yaml:10: monitors\[0\]\.prediction\.label: required for task multiclass_classification"),
    (MC.replace("{label: prediction.class, scores: prediction.class_scores}",
                "{label: prediction.class, score: prediction.score}"),
     r"monitors.yaml:10: monitors\[0\]\.prediction\.score: unknown key \(allowed: label, scores\)"),
    (BINARY + "    quality: {alert_ratio: 1.5}\n",
     r"monitors.yaml:9: monitors\[0\]\.quality\.alert_ratio: only for task regression"),
], ids=["unknown-task", "binary-no-score", "regression-label", "regression-no-value", "regression-no-target",
        "ratio-below-1", "estimation-not-binary", "classes-not-multiclass", "multiclass-no-classes",
        "two-classes", "duplicate-class", "classes-not-a-list", "reserved-class", "multiclass-no-label",
        "multiclass-score", "ratio-not-regression"])
def test_each_wrong_task_key_names_its_line_and_key(tmp_path, text, expected):
    with pytest.raises(ConfigError, match=expected):
        load(tmp_path, text)


def test_the_cli_exits_2_on_a_wrong_task_key(tmp_path):
    path = tmp_path / "monitors.yaml"
    path.write_text(REG.replace("{value: prediction.value}", "{}"))
    result = subprocess.run([sys.executable, "-m", "log_processor"], cwd=REPO_ROOT, capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT),
                                 "LOGPROC_MONITORS_FILE": str(path)}, timeout=60)
    assert result.returncode == 2, result.stderr
    assert f"{path}:9: monitors[0].prediction.value: required for task regression" in result.stderr
