"""Monitor configuration: the shipped file loads; each kind of mistake gets a message naming file, line and key."""
import subprocess
import sys
from pathlib import Path

import pytest

from demo.settings import DemoSettings
from log_processor.monitors import ConfigError, load_monitors, parse_duration
from log_processor.settings import ProcessorSettings
from serving.settings import ServingSettings
from tests.conftest import REPO_ROOT

GOOD = """\
monitors:
  - name: m1
    features:
      conv_rate: {field: features.conv_rate}
      hour: {field: features.hour, type: categorical}
    prediction: {label: prediction.label, score: prediction.score}
    target: target.trip_completed
    window: {span: 10m}
    reference: {parquet: ref.parquet}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "monitors.yaml"
    path.write_text(text)
    return path


def test_shipped_monitors_file_loads_with_the_documented_defaults():
    m, duration = load_monitors(REPO_ROOT / "log_processor/monitors.yaml")
    assert (duration.name, duration.task, duration.model_name) == ("trip_duration", "regression", "trip_duration")
    assert (duration.prediction_value, duration.target) == ("prediction.value", "target.duration_minutes")
    assert duration.quality_alert_ratio == 1.5 and duration.estimation is None
    assert duration.reference.parquet == REPO_ROOT / "var/model/trip_duration/reference.parquet"
    assert m.name == "driver_ranker" and m.index == "ml-events-*" and m.task == "binary_classification"
    assert m.feature_names == ("conv_rate", "acc_rate", "avg_daily_trips")
    assert (m.prediction_label, m.prediction_score, m.target, m.join_key) == (
        "prediction.label", "prediction.score", "target.trip_completed", "request_id")
    assert (m.window_seconds, m.window_last, m.interval_seconds) == (900.0, 50000, 60.0)
    assert m.reference.parquet == REPO_ROOT / "var/model/reference.parquet"
    assert m.drift.rule("acc_rate").method == "wasserstein"
    assert (m.estimation.calibration, m.estimation.confidence, m.estimation.alert_margin) == ("platt", 0.95, 0.05)


def test_minimal_file_gets_defaults_and_relative_paths_resolve_against_base(tmp_path):
    (m,) = load_monitors(write(tmp_path, GOOD), base_dir=tmp_path, interval_override=1.5)
    assert m.interval_seconds == 1.5
    assert m.reference.parquet == tmp_path / "ref.parquet"
    assert [f.type for f in m.features] == ["numerical", "categorical"]
    assert (m.min_rows, m.max_rows, m.drift.drift_share) == (100, 200_000, 0.5)
    assert m.estimation is None
    (m,) = load_monitors(write(tmp_path, GOOD + "    estimation: {alert_margin: 0.1}\n"), base_dir=tmp_path)
    assert (m.estimation.calibration, m.estimation.confidence, m.estimation.alert_margin) == ("isotonic", 0.95, 0.1)


@pytest.mark.parametrize("old, new, expected", [
    ("    target: target.trip_completed\n", "    target: target.trip_completed\n    windw: 5m\n",
     r"monitors.yaml:8: monitors\[0\]\.windw: unknown key"),
    ("    target: target.trip_completed\n", "", r"monitors.yaml:2: monitors\[0\]: missing required key 'target'"),
    ("{span: 10m}", "{span: ten minutes}", r"monitors.yaml:8: monitors\[0\]\.window\.span: must be a positive duration"),
    ("{span: 10m}", "{}", r"monitors.yaml:8: monitors\[0\]\.window: needs 'span'"),
    ("{field: features.conv_rate}", "{field: features.conv_rate, type: float}",
     r"monitors.yaml:4: monitors\[0\]\.features\.conv_rate\.type: must be one of numerical, categorical"),
    ("    window:", "    drift: {method: t-test}\n    window:",
     r"monitors.yaml:8: monitors\[0\]\.drift\.method: must be one of ks, "),
    ("    window:", "    drift: {columns: {acc_rate: {method: ks}}}\n    window:",
     r"monitors.yaml:8: monitors\[0\]\.drift\.columns\.acc_rate: not a feature of this monitor"),
    ("    window:", "    min_rows: -3\n    window:", r"monitors.yaml:8: monitors\[0\]\.min_rows: must be an integer > 0"),
    ("{parquet: ref.parquet}", "{parquet: ref.parquet, store: {start: 2026-01-01T00:00:00Z, end: 2026-01-02T00:00:00Z}}",
     r"monitors.yaml:9: monitors\[0\]\.reference: needs exactly one of"),
    ("{parquet: ref.parquet}", "{store: {start: '2026-01-02T00:00:00Z', end: '2026-01-01T00:00:00Z'}}",
     r"monitors.yaml:9: monitors\[0\]\.reference\.store\.end: must be after start"),
    ("  - name: m1", "  - name: 'm 1'", r"monitors.yaml:2: monitors\[0\]\.name: must match"),
    ("    window:", "    estimation: {calibration: bayes}\n    window:",
     r"monitors.yaml:8: monitors\[0\]\.estimation\.calibration: must be one of isotonic, platt, got 'bayes'"),
    ("    window:", "    estimation:\n      confidence: 1.5\n    window:",
     r"monitors.yaml:9: monitors\[0\]\.estimation\.confidence: must be a number in \[0.5, 1\), got 1.5"),
    ("    window:", "    estimation: {margin: 0.1}\n    window:",
     r"monitors.yaml:8: monitors\[0\]\.estimation\.margin: unknown key \(allowed: calibration, confidence, alert_margin\)"),
    ("    window:", "    estimation: platt\n    window:",
     r"monitors.yaml:8: monitors\[0\]\.estimation: must be a mapping"),
    ("    features:", "    prediction: {label: x, score: y}\n    features:",
     r"monitors.yaml:\d+: monitors\[0\]\.prediction: duplicate key"),
])
def test_each_config_mistake_names_file_line_and_key(tmp_path, old, new, expected):
    assert old in GOOD
    with pytest.raises(ConfigError, match=expected):
        load_monitors(write(tmp_path, GOOD.replace(old, new, 1)), base_dir=tmp_path)


def test_invalid_yaml_names_the_line(tmp_path):
    with pytest.raises(ConfigError, match=r"monitors.yaml:3: not valid YAML"):
        load_monitors(write(tmp_path, "monitors:\n  - name: x\n  bad: [unclosed\n"))


def test_duplicate_monitor_names_and_empty_lists_are_rejected(tmp_path):
    twice = GOOD + GOOD.split("monitors:\n", 1)[1]
    with pytest.raises(ConfigError, match=r"monitors\[1\]\.name: duplicate monitor name 'm1'"):
        load_monitors(write(tmp_path, twice))
    with pytest.raises(ConfigError, match=r"monitors: must be a non-empty list"):
        load_monitors(write(tmp_path, "monitors: []\n"))
    with pytest.raises(ConfigError, match=r"cannot read monitors file"):
        load_monitors(tmp_path / "absent.yaml")


def test_durations():
    assert [parse_duration(v) for v in (90, "90s", "15m", "2h", "1d", "500ms")] == [90, 90, 900, 7200, 86400, 0.5]
    assert parse_duration("soon") is None and parse_duration(True) is None


def test_settings_from_env():
    s = ProcessorSettings.from_env({"LOGPROC_PORT": "9999", "LOGPROC_INTERVAL": "2",
                                    "LOGPROC_MONITORS_FILE": "x/m.yaml", "ELASTICSEARCH_URL": "http://h:1"})
    assert (s.port, s.interval, s.monitors_file, s.store.url) == (9999, 2.0, REPO_ROOT / "x/m.yaml", "http://h:1")
    assert ProcessorSettings.from_env({}).port == 8309
    reads = ProcessorSettings.from_env({"LOGPROC_INCREMENTAL": "false", "LOGPROC_READ_OVERLAP": "2.5",
                                        "LOGPROC_FULL_READ_EVERY": "600", "LOGPROC_PAGE_SIZE": ""})
    assert (reads.incremental, reads.read_overlap, reads.full_read_every, reads.page_size) == (False, 2.5, 600.0, None)


@pytest.mark.parametrize("value, meant", [("1", True), ("TRUE", True), ("yes", True), (" on ", True),
                                          ("0", False), ("False", False), ("no", False), ("OFF", False),
                                          ("", True)])      # empty: the default
def test_yes_no_settings_read_alike_everywhere(value, meant):
    """One rule for every part's yes/no variables (common.env.flag)."""
    processor = ProcessorSettings.from_env({"LOGPROC_INCREMENTAL": value, "LOGPROC_WRITE_SUMMARIES": value,
                                            "ELASTICSEARCH_VERIFY_CERTS": value})
    assert (processor.incremental, processor.write_summaries, processor.store.verify_certs) == (meant,) * 3
    assert ServingSettings.from_env({"SERVING_ACCESS_LOG": value}).access_log is meant
    demo = DemoSettings.from_env({"DEMO_ALERTS": value, "DEMO_ONCE": value})
    assert demo.alerts is meant and demo.once is (meant if value else False)        # --once is off by default


@pytest.mark.parametrize("name, value, says", [
    ("LOGPROC_PORT", "eighty", "is not an integer"), ("LOGPROC_PORT", "70000", "must be between 1 and 65535"),
    ("LOGPROC_READ_OVERLAP", "10s", "is not a number"), ("LOGPROC_READ_OVERLAP", "-1", "must be at least 0"),
    ("LOGPROC_FULL_READ_EVERY", "hourly", "is not a number"), ("LOGPROC_PAGE_SIZE", "0", "must be between 1"),
    ("LOGPROC_INTERVAL", "0", "must be at least 0.01"), ("ELASTICSEARCH_TIMEOUT", "30 s", "is not a number"),
    ("LOGPROC_INCREMENTAL", "maybe", "not a yes/no value"), ("ELASTICSEARCH_VERIFY_CERTS", "flase", "not a yes/no value")])
def test_a_setting_out_of_its_type_or_range_is_refused_naming_the_variable(name, value, says):
    with pytest.raises(ValueError, match=f"^{name}='{value}':? {says}"):
        ProcessorSettings.from_env({name: value})


def test_cli_refuses_a_bad_setting_with_exit_code_2_and_the_variable_named():
    result = subprocess.run([sys.executable, "-m", "log_processor"], cwd=REPO_ROOT, capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "LOGPROC_READ_OVERLAP": "ten"}, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "log_processor: bad configuration: LOGPROC_READ_OVERLAP='ten' is not a number" in result.stderr


def test_cli_refuses_a_bad_file_with_exit_code_2_and_the_file_named(tmp_path):
    bad = write(tmp_path, GOOD.replace("    target:", "    taget:"))
    result = subprocess.run([sys.executable, "-m", "log_processor"], cwd=REPO_ROOT, capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "LOGPROC_MONITORS_FILE": str(bad)}, timeout=60)
    assert result.returncode == 2
    assert f"{bad}:7: monitors[0].taget: unknown key" in result.stderr


def _prepare(monitors_file: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "log_processor", "prepare"], cwd=REPO_ROOT, capture_output=True,
                          text=True, env={"PATH": "/usr/bin:/bin", "LOGPROC_MONITORS_FILE": str(monitors_file)},
                          timeout=600)


@pytest.mark.slow
def test_prepare_caches_the_drift_thresholds_beside_the_reference(tmp_path):
    """`make setup` runs it, so the first cycle of a fresh checkout does not spend tens of seconds on it."""
    shipped = (REPO_ROOT / "log_processor/monitors.yaml").read_text()
    reference = tmp_path / "reference.parquet"
    reference.write_bytes((REPO_ROOT / "var/model/reference.parquet").read_bytes())
    monitors = tmp_path / "monitors.yaml"
    monitors.write_text(shipped.replace("parquet: var/model/reference.parquet", f"parquet: {reference}")
                        .replace("manifest: var/model/manifest.json", f"manifest: {REPO_ROOT / 'var/model/manifest.json'}"))
    result = _prepare(monitors)
    assert result.returncode == 0, result.stderr
    assert "drift thresholds and score calibration ready" in result.stdout
    assert (tmp_path / "reference.parquet.drift_thresholds.npz").is_file()
    assert (tmp_path / "reference.parquet.score_calibration.npz").is_file()
    # and the model's feature importance (root causes rank drifted features by drift x importance)
    assert (tmp_path / "reference.parquet.importance.npz").is_file()


def test_prepare_names_a_missing_reference_and_exits_1(tmp_path):
    monitors = tmp_path / "monitors.yaml"
    missing = tmp_path / "nowhere.parquet"
    monitors.write_text((REPO_ROOT / "log_processor/monitors.yaml").read_text()
                        .replace("parquet: var/model/reference.parquet", f"parquet: {missing}"))
    result = _prepare(monitors)
    assert result.returncode == 1 and str(missing) in result.stderr


def test_an_unknown_command_gets_the_usage_and_exit_code_2():
    result = subprocess.run([sys.executable, "-m", "log_processor", "serve-now"], cwd=REPO_ROOT, capture_output=True,
                            text=True, env={"PATH": "/usr/bin:/bin"}, timeout=60)
    assert result.returncode == 2 and "usage: python -m log_processor [prepare]" in result.stderr
