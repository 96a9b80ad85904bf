"""The alerting configuration checked by the real tools: promtool (config, rules, rule unit tests) and amtool.

Both the compose files in prometheus/ and the loopback variants rendered by demo/alerting_stack.py
must pass, and the rules may only use series from docs/metrics.md. The tools are the ones at compose's
versions (promtool 2.55.1, amtool 0.28.1, built by `make go-tools`); the Prometheus checks also run
with Debian's promtool 2.42, the Prometheus the demo runs, and the Alertmanager fallback's rendering
is checked with Debian's amtool 0.25 (docs/alerts.md#versions).
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from common import go_tools
from demo.alerting_stack import (DEMO, FAST, FILE_FIELDS_SINCE, PRODUCTION, SecretFileError, Timings,
                                 alertmanager_version, find_alertmanager, render_alertmanager_config,
                                 render_prometheus_config, secret_file_fields)
from demo.notification_sink import write_secret
from tests.conftest import pinned_tool

REPO = Path(__file__).resolve().parent.parent
PROM = REPO / "prometheus"
RULE_FILES = sorted((PROM / "rules").glob("*.yml"))
ISSUE_ALERTS = {
    "DataDriftDetected", "FeatureDrift", "PredictionDrift", "ModelQualityDegraded", "LabelCoverageLow",
    "MonitoringStale", "LogProcessorDown", "ServingDown", "ServingHighErrorRate", "ServingHighLatency",
    "EventsDropped", "EstimatedQualityDrop", "RegressionQualityDegraded",
    "EventsNotArriving", "PipelineLagHigh", "EventsLost",
}
# issue 32: the platform under the stack and the alerting path itself (prometheus/rules/platform.yml)
PLATFORM_ALERTS = {"Watchdog", "AlertmanagerDown", "TargetDown", "HostDiskWillFill", "ProcessMemoryHigh",
                   "StoreClusterNotGreen", "StoreHeapHigh"}

DEBIAN_PACKAGES = {"promtool": "prometheus", "amtool": "prometheus-alertmanager"}


def debian_tool(name: str) -> Path:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (Debian package: {DEBIAN_PACKAGES[name]})")
    return Path(path)


@pytest.fixture(params=["compose", "debian"])
def promtool(request) -> Path:
    """promtool at compose's Prometheus version and Debian's (the Prometheus the demo runs): every
    check must pass on both."""
    return pinned_tool("promtool") if request.param == "compose" else debian_tool("promtool")


@pytest.fixture
def amtool() -> Path:
    """amtool at compose's Alertmanager version, the one the demo runs too."""
    return pinned_tool("amtool")


@pytest.fixture
def debian_amtool() -> Path:
    """Debian's amtool (0.25), for the fallback where the pinned Alertmanager is not built."""
    return debian_tool("amtool")


def run(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=60)


def assert_ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, f"{result.args} failed:\n{result.stdout}\n{result.stderr}"


def all_rules() -> list[dict]:
    return [rule for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"]
            for rule in group["rules"]]


# --- the files as committed (compose) ------------------------------------------------------------

def test_compose_prometheus_config_is_valid_including_its_rule_files(promtool):
    # Relative rule paths resolve next to the file, so the full check (not --syntax-only) works here.
    result = run(promtool, "check", "config", PROM / "prometheus.yml")
    assert_ok(result)
    assert f"{len(RULE_FILES)} rule files found" in result.stdout


def test_rule_files_are_valid(promtool):
    assert_ok(run(promtool, "check", "rules", *RULE_FILES))


def test_promtool_rule_unit_tests_pass(promtool):
    """Each alert fires on its series and stays silent on the near misses (prometheus/tests/*.yml)."""
    tests = sorted((PROM / "tests").glob("*.yml"))
    assert tests
    assert_ok(run(promtool, "test", "rules", *tests))


@pytest.mark.parametrize("before, after, alert", [
    ("< 0.70", "< 0.60", "ModelQualityDegraded"),                       # a loosened threshold
    ('metric=~"f1|f1_macro"', 'metric="f1"', "ModelQualityDegraded"),   # multi-class macro F1 forgotten
    ('{metric="mae"} * 1.5\n', '{metric="mae"} * 1.4\n', "RegressionQualityDegraded"),   # the default ratio, tighter ...
    ('{metric="mae"} * 1.5\n', '{metric="mae"} * 1.9\n', "RegressionQualityDegraded"),   # ... and looser
    ("* on (monitor, job, instance) mlmon_regression_quality_alert_ratio", "* 1.5",     # the monitor's own ratio ignored
     "RegressionQualityDegraded"),
    ('(mlmon_window_rows{kind="labelled"} >= 200)\n        for: 15m\n        labels:\n          severity: critical\n          metric: mae',
     '(mlmon_window_rows{kind="labelled"} >= 100)\n        for: 15m\n        labels:\n          severity: critical\n          metric: mae',
     "RegressionQualityDegraded"),                                     # too few labelled rows let through
])
def test_promtool_unit_tests_catch_a_changed_threshold(tmp_path, promtool, before, after, alert):
    """The unit tests are not vacuous: moving one threshold of an alert makes them fail on that alert."""
    (tmp_path / "rules").mkdir()
    source = (PROM / "rules" / "ml_monitoring.yml").read_text()
    assert source.count(before) == 1, before
    (tmp_path / "rules" / "ml_monitoring.yml").write_text(source.replace(before, after))
    (tmp_path / "tests").mkdir()
    shutil.copy(PROM / "tests" / "ml_monitoring_test.yml", tmp_path / "tests")
    result = run(promtool, "test", "rules", tmp_path / "tests" / "ml_monitoring_test.yml")
    assert result.returncode != 0
    assert f"alertname: {alert}" in result.stdout + result.stderr


SECRET_NAMES = ("slack_api_url", "webhook_url", "telegram_bot_token", "heartbeat_url")


@pytest.fixture
def secrets(tmp_path) -> Path:
    """The secret files prometheus/alertmanager.yml reads, as `make compose-env` writes them."""
    directory = tmp_path / "secrets"
    directory.mkdir()
    for name, value in zip(SECRET_NAMES, ("http://127.0.0.1:9/slack/T/B/x", "http://127.0.0.1:9/hook/y", "1:abc",
                                          "http://127.0.0.1:9/heartbeat/z")):
        write_secret(directory / name, value)
    return directory


def test_compose_alertmanager_config_as_shipped_passes_amtool_at_the_compose_version(amtool):
    """The file compose mounts, unrendered: amtool at its version accepts every *_file field, and the template
    glob (one pattern, resolved beside the file) parses."""
    version = run(amtool, "--version")
    assert f"version {go_tools.pin('amtool').reports}" in version.stdout + version.stderr
    result = run(amtool, "check-config", PROM / "alertmanager.yml")
    assert_ok(result)
    assert "1 templates" in result.stdout and "4 receivers" in result.stdout and "5 inhibit rules" in result.stdout   # + SegmentDrift, SegmentQualityDegraded (segments), EventsNotArriving


def test_the_demo_runs_the_pinned_alertmanager_and_renders_the_secrets_as_files(tmp_path, secrets, amtool):
    """The demo's Alertmanager is the pinned build (compose's version): its rendered copy keeps every
    secret in its file (no secret in the copy), and amtool at that version accepts it."""
    binary = find_alertmanager()
    assert binary == str(pinned_tool("alertmanager"))
    assert ".".join(map(str, alertmanager_version(binary))) == go_tools.pin("alertmanager").reports
    path = render_alertmanager_config(tmp_path / "out", "mailpit:1025", secrets_dir=secrets,
                                      version=alertmanager_version(binary))
    text = path.read_text()
    assert not [secret.read_text() for secret in secrets.iterdir() if secret.read_text() in text]
    fields = [(where, key, value[key]) for where, value, key in secret_file_fields(yaml.safe_load(text))]
    shipped = [(where, key) for where, _, key in secret_file_fields(yaml.safe_load((PROM / "alertmanager.yml").read_text()))]
    assert [(where, key) for where, key, _ in fields] == shipped
    assert {Path(path).parent for _, _, path in fields} == {secrets}
    result = run(amtool, "check-config", path)
    assert_ok(result)
    assert "4 templates" in result.stdout and "4 receivers" in result.stdout


def test_debian_amtool_rejects_exactly_the_file_fields_it_is_too_old_for(debian_amtool):
    """Why the fallback inlines: amtool 0.25 refuses url_file and bot_token_file by name (and nothing
    else in the file)."""
    version = alertmanager_version(str(debian_amtool))
    if version is None or version >= (0, 26, 0):
        pytest.skip(f"the installed amtool is {version}, not older than the *_file fields")
    result = run(debian_amtool, "check-config", PROM / "alertmanager.yml")
    assert result.returncode != 0
    rejected = set(re.findall(r"field (\w+) not found", result.stdout + result.stderr))
    assert rejected == set(FILE_FIELDS_SINCE)


def test_the_fallback_copy_for_debian_s_alertmanager_passes_its_amtool(tmp_path, secrets, debian_amtool):
    """Debian's 0.25 (the fallback): url_file and bot_token_file inlined into the 0600 copy, which its
    amtool accepts with all four templates."""
    path = render_alertmanager_config(tmp_path / "out", "mailpit:1025", secrets_dir=secrets,
                                      version=alertmanager_version(str(debian_amtool)))
    result = run(debian_amtool, "check-config", path)
    assert_ok(result)
    assert "4 templates" in result.stdout and "4 receivers" in result.stdout and "5 inhibit rules" in result.stdout   # + SegmentDrift, SegmentQualityDegraded (segments), EventsNotArriving
    assert path.stat().st_mode & 0o777 == 0o600


def test_secret_file_fields_are_used_for_every_chat_secret_and_nothing_is_inline():
    config = yaml.safe_load((PROM / "alertmanager.yml").read_text())
    for receiver in config["receivers"]:
        for integration in receiver.get("slack_configs", []):
            assert "api_url" not in integration and integration["api_url_file"].endswith("/slack_api_url")
        for integration in receiver.get("webhook_configs", []):
            secret = "/heartbeat_url" if receiver["name"] == "heartbeat" else "/webhook_url"
            assert "url" not in integration and integration["url_file"].endswith(secret)
        for integration in receiver.get("telegram_configs", []):
            assert "bot_token" not in integration and integration["bot_token_file"].endswith("/telegram_bot_token")


@pytest.mark.parametrize("version, inlined", [((0, 25, 0), True), ((0, 27, 0), False)])
def test_secrets_are_inlined_only_for_an_alertmanager_without_the_file_field(tmp_path, secrets, version, inlined):
    path = render_alertmanager_config(tmp_path, "127.0.0.1:2525", secrets_dir=secrets, version=version)
    config = yaml.safe_load(path.read_text())
    ml = next(r for r in config["receivers"] if r["name"] == "ml-oncall")
    assert ml["slack_configs"][0]["api_url_file"] == str(secrets / "slack_api_url")   # 0.25 has this one
    if inlined:
        assert ml["webhook_configs"][0]["url"] == "http://127.0.0.1:9/hook/y" and "url_file" not in ml["webhook_configs"][0]
        assert ml["telegram_configs"][0]["bot_token"] == "1:abc"
    else:
        assert ml["webhook_configs"][0]["url_file"] == str(secrets / "webhook_url")
        assert ml["telegram_configs"][0]["bot_token_file"] == str(secrets / "telegram_bot_token")
    assert path.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("name, field", [("slack_api_url", "slack_configs[0].api_url_file"),
                                         ("webhook_url", "webhook_configs[0].url_file"),
                                         ("telegram_bot_token", "telegram_configs[0].bot_token_file")])
@pytest.mark.parametrize("broken", ["missing", "empty"])
@pytest.mark.parametrize("version", [(0, 27, 0), (0, 25, 0)], ids=["native", "fallback"])
def test_a_missing_or_empty_secret_file_is_an_error_naming_it(tmp_path, secrets, name, field, broken, version):
    """Alertmanager (from 0.26) reads the files itself, and would only fail when it sends: the check before
    start names the file either way."""
    (secrets / name).unlink() if broken == "missing" else (secrets / name).write_text("  \n")
    problem = "does not exist" if broken == "missing" else "is empty"
    with pytest.raises(SecretFileError, match=re.escape(f"receivers[ml-oncall].{field}: secret file "
                                                        f"{secrets / name} {problem}")):
        render_alertmanager_config(tmp_path / "out", "127.0.0.1:2525", secrets_dir=secrets, version=version)
    assert not (tmp_path / "out" / "alertmanager.yml").exists()


# --- the routing tree, by amtool at compose's version on the file as shipped ------------------------

@pytest.mark.parametrize("labels, receiver", [
    ({"alertname": "DataDriftDetected", "team": "ml", "monitor": "m", "severity": "warning"}, "ml-oncall"),
    ({"alertname": "ModelQualityDegraded", "team": "ml", "monitor": "m", "severity": "critical"}, "ml-oncall"),
    ({"alertname": "RegressionQualityDegraded", "team": "ml", "monitor": "trip_duration", "severity": "critical",
      "metric": "mae"}, "ml-oncall"),
    ({"alertname": "TargetDrift", "team": "ml", "monitor": "trip_duration", "severity": "warning",
      "column": "target.duration_minutes", "method": "wasserstein"}, "ml-oncall"),
    ({"alertname": "FeatureDrift", "team": "ml", "monitor": "m", "severity": "info"}, "ml-chat"),
    ({"alertname": "LogProcessorDown", "team": "ml", "severity": "critical"}, "ml-oncall"),
    ({"alertname": "ServingDown", "team": "platform", "severity": "critical"}, "platform-oncall"),
    ({"alertname": "DataDriftDetected", "monitor": "m", "severity": "warning"}, "platform-oncall"),  # no team
    ({"alertname": "Watchdog", "severity": "info"}, "heartbeat"),
    ({"alertname": "HostDiskWillFill", "job": "node", "severity": "warning"}, "platform-oncall"),
    ({"alertname": "StoreClusterNotGreen", "job": "elasticsearch", "severity": "critical"}, "platform-oncall"),
    ({"alertname": "TargetDown", "job": "shipper", "severity": "warning"}, "platform-oncall"),
])
def test_amtool_routes_each_alert_to_its_receiver(amtool, labels, receiver):
    result = run(amtool, "config", "routes", "test", f"--config.file={PROM / 'alertmanager.yml'}",
                 f"--verify.receivers={receiver}",
                 *(f"{k}={v}" for k, v in labels.items()))
    assert_ok(result)
    assert result.stdout.strip() == receiver


def test_ml_alerts_group_per_monitor_and_the_others_per_alert_and_instance():
    route = yaml.safe_load((PROM / "alertmanager.yml").read_text())["route"]
    assert route["group_by"] == ["alertname", "job", "instance"]
    ml = route["routes"][0]
    assert ml["matchers"] == ['team="ml"', 'monitor=~".+"'] and ml["group_by"] == ["monitor"]
    assert ml["routes"][0]["matchers"] == ['severity="info"'] and "group_by" not in ml["routes"][0]


def test_log_processor_down_inhibits_every_alert_on_the_processor_s_verdicts():
    """Each alert computed from mlmon_* series (so frozen while the processor cannot be scraped) is in the
    inhibition's target regex: a new verdict alert left out of it would page beside LogProcessorDown."""
    rules = yaml.safe_load((PROM / "alertmanager.yml").read_text())["inhibit_rules"]
    (down,) = [r for r in rules if r["source_matchers"] == ['alertname="LogProcessorDown"']]
    assert down["equal"] == ["job", "instance"]
    (matcher,) = down["target_matchers"]
    pattern = re.fullmatch(r'alertname=~"(.+)"', matcher)[1]
    # ProcessorShardsIncomplete counts the replicas themselves (no job/instance to be equal on): it must
    # fire while one is down, as the replicas no longer cover every shard
    verdicts = {rule["alert"] for rule in all_rules() if "alert" in rule and "mlmon_" in rule["expr"]} \
        - {"ProcessorShardsIncomplete"}
    assert {"RegressionQualityDegraded", "ModelQualityDegraded", "TargetDrift"} <= verdicts
    assert {name for name in verdicts if not re.fullmatch(pattern, name)} == set()
    assert not re.fullmatch(pattern, "LogProcessorDown") and not re.fullmatch(pattern, "ServingDown")


def test_events_not_arriving_mutes_every_verdict_and_delivery_alert_of_its_monitor():
    """While a monitor is blind its verdict is the last one observed: every alert computed from that
    monitor's mlmon_* series (but the blind alert itself) is muted, for that monitor only."""
    rules = yaml.safe_load((PROM / "alertmanager.yml").read_text())["inhibit_rules"]
    (blind,) = [r for r in rules if r["source_matchers"] == ['alertname="EventsNotArriving"']]
    assert blind["equal"] == ["monitor", "job", "instance"]
    (matcher,) = blind["target_matchers"]
    pattern = re.fullmatch(r'alertname=~"(.+)"', matcher)[1]
    muted = {rule["alert"] for rule in all_rules() if "alert" in rule and "mlmon_" in rule["expr"]
             and "$labels.monitor" in str(rule["annotations"])} - {"EventsNotArriving"}      # about one monitor
    assert {"DataDriftDetected", "ModelQualityDegraded", "PipelineLagHigh", "EventsLost"} <= muted
    assert {name for name in muted if not re.fullmatch(pattern, name)} == set()
    assert not re.fullmatch(pattern, "EventsNotArriving") and not re.fullmatch(pattern, "ServingDown")


def test_data_drift_inhibits_feature_drift_of_the_same_monitor_only():
    rules = yaml.safe_load((PROM / "alertmanager.yml").read_text())["inhibit_rules"]
    drift = [r for r in rules if r["source_matchers"] == ['alertname="DataDriftDetected"']]
    # FeatureDrift, and SegmentDrift (prometheus/rules/segments.yml): the dataset message carries both
    assert drift == [{"source_matchers": ['alertname="DataDriftDetected"'],
                      "target_matchers": [f'alertname="{name}"'], "equal": ["monitor", "job", "instance"]}
                     for name in ("FeatureDrift", "SegmentDrift")]


# --- contents ---------------------------------------------------------------------------------------

def test_every_alert_of_the_issue_exists_with_severity_numbers_and_runbook():
    alerts = {rule["alert"]: rule for rule in all_rules() if "alert" in rule}
    assert ISSUE_ALERTS | PLATFORM_ALERTS <= set(alerts)
    headings = {re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
                for line in (REPO / "docs" / "alerts.md").read_text().splitlines() if line.startswith("## ")}
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], name
        assert "{{" in annotations["summary"] + annotations["description"], f"{name}: no numbers in the text"
        path, _, anchor = annotations["runbook_url"].partition("#")
        assert path == "docs/alerts.md" and anchor in headings, f"{name}: runbook anchor #{anchor} not in docs/alerts.md"


def test_rules_use_only_series_from_the_metric_contract():
    contract = set(re.findall(r"^\| `([a-z_]+)`", (REPO / "docs" / "metrics.md").read_text(), re.M))
    allowed = contract | {"up"} | {f"{name}_{suffix}" for name in contract for suffix in ("bucket", "sum", "count")}
    used = set()
    for rule in all_rules():
        text = rule["expr"] + " ".join(rule.get("annotations", {}).values())
        tokens = re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", text)
        used |= {t for t in tokens if ":" not in t and t.startswith(("mlmon_", "serving_"))}
    assert used, "no series found in the rules"
    assert used <= allowed, f"not in docs/metrics.md: {sorted(used - allowed)}"


def test_e_mail_dashboard_links_name_existing_grafana_dashboards():
    dashboards = sorted((REPO / "grafana" / "dashboards").glob("*.json"))
    if not dashboards:
        pytest.skip("grafana/dashboards/ not present yet")
    uids = {json.loads(path.read_text())["uid"] for path in dashboards}
    linked = {rule["annotations"]["dashboard"] for rule in all_rules() if "alert" in rule}
    assert linked <= uids, f"no Grafana dashboard with uid {sorted(linked - uids)}"


def test_drift_alerts_name_the_drifted_features():
    alerts = {rule["alert"]: rule for rule in all_rules() if "alert" in rule}
    for name in ("DataDriftDetected", "FeatureDrift"):
        assert "feature" in alerts[name]["annotations"]["features"]


# --- rendered for loopback --------------------------------------------------------------------------

@pytest.mark.parametrize("timings", [PRODUCTION, FAST], ids=["production", "fast"])
def test_rendered_prometheus_config_is_valid_and_points_at_loopback(tmp_path, promtool, timings):
    path = render_prometheus_config(
        tmp_path, {"serving": ["127.0.0.1:18000"], "log_processor": ["127.0.0.1:18309"]}, ["127.0.0.1:19093"],
        external_labels={"log_processor_url": "http://127.0.0.1:18309"}, timings=timings)
    assert_ok(run(promtool, "check", "config", path))
    config = yaml.safe_load(path.read_text())
    jobs = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
    assert jobs == {"serving": ["127.0.0.1:18000"], "log_processor": ["127.0.0.1:18309"]}
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["127.0.0.1:19093"]
    assert config["global"]["external_labels"]["log_processor_url"] == "http://127.0.0.1:18309"
    assert config["global"]["external_labels"]["grafana_url"]  # kept from the compose file
    assert all(Path(p).is_absolute() and Path(p).exists() for p in config["rule_files"])
    assert len(config["rule_files"]) == len(RULE_FILES)


def test_rendering_with_a_for_override_rewrites_every_alert_and_leaves_the_source_alone(tmp_path):
    before = [p.read_text() for p in RULE_FILES]
    path = render_prometheus_config(tmp_path, {}, timings=Timings(evaluation_interval="1s", alert_for="3s"))
    rendered = [yaml.safe_load(Path(p).read_text()) for p in yaml.safe_load(path.read_text())["rule_files"]]
    rules = [rule for doc in rendered for group in doc["groups"] for rule in group["rules"]]
    alerts = [rule for rule in rules if "alert" in rule]
    assert {rule["alert"] for rule in alerts} >= ISSUE_ALERTS
    assert {rule["for"] for rule in alerts} == {"3s"}
    # but an alert the timings except keeps their own `for:` (EventsNotArriving and a pipeline catching up)
    path = render_prometheus_config(tmp_path / "demo", {}, timings=DEMO)
    rendered = [yaml.safe_load(Path(p).read_text()) for p in yaml.safe_load(path.read_text())["rule_files"]]
    fors = {rule["alert"]: rule["for"] for doc in rendered for group in doc["groups"] for rule in group["rules"]
            if "alert" in rule}
    assert fors.pop("EventsNotArriving") == "8s" and set(fors.values()) == {"2s"}
    assert {group["interval"] for doc in rendered for group in doc["groups"]} == {"1s"}
    assert [p.read_text() for p in RULE_FILES] == before


def test_rendering_an_unknown_job_names_the_file_and_the_job(tmp_path):
    with pytest.raises(ValueError, match=r"prometheus\.yml: no scrape job named fluent_bit"):
        render_prometheus_config(tmp_path, {"fluent_bit": ["127.0.0.1:24224"]})


def test_rendered_alertmanager_config_is_valid_and_uses_the_given_smarthost(tmp_path, amtool):
    path = render_alertmanager_config(tmp_path, "127.0.0.1:2525", timings=FAST)
    assert_ok(run(amtool, "check-config", path))
    config = yaml.safe_load(path.read_text())
    assert config["global"]["smtp_smarthost"] == "127.0.0.1:2525"
    assert config["route"]["group_wait"] == "1s"
    assert config["route"]["routes"][0]["group_wait"] == "1s"   # the timings reach the sub-routes that set one
    assert "group_wait" not in config["route"]["routes"][1]
    assert all(Path(p).is_absolute() and Path(p).exists() for p in config["templates"])
    # without a secrets directory: e-mail only
    assert all(set(r) <= {"name", "email_configs"} for r in config["receivers"])


def test_demo_timings_collect_an_incident_into_one_message():
    # alerts of one incident start within group_wait (~11 s apart measured) and clear ~10-23 s after
    # the firing message: the first flush after it (group_interval) must come after the last clearing,
    # with room for a loaded machine (docs/demo.md#timings, demo/alerting_stack.py)
    assert DEMO.group_wait == "15s" and DEMO.group_interval == "40s" and DEMO.alert_for == "2s"


# --- the e-mail template, rendered by amtool (the running stack sends it for real in test_alerting_stack) ---

def render_template(amtool: Path, tmp_path: Path, name: str, alerts: list[dict], status: str = "firing") -> str:
    def common(key: str) -> dict:
        first = alerts[0][key]
        return {k: v for k, v in first.items() if all(a[key].get(k) == v for a in alerts)}
    data = {"receiver": "email", "status": status, "alerts": [
        {"status": status, "startsAt": "2026-11-23T09:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
         "generatorURL": "http://prometheus.test/graph", "fingerprint": str(i), **alert}
        for i, alert in enumerate(alerts)],
        "groupLabels": {}, "commonLabels": common("labels"), "commonAnnotations": common("annotations"),
        "externalURL": "http://alertmanager.test:9093"}
    data_file = tmp_path / "data.json"
    data_file.write_text(json.dumps(data))
    result = run(amtool, "template", "render", f"--template.glob={PROM / 'templates' / '*.tmpl'}",
                 f"--template.text={{{{ template \"{name}\" . }}}}", f"--template.data={data_file}")
    assert_ok(result)
    return result.stdout


LINK_LABELS = {"grafana_url": "http://grafana.test", "kibana_url": "http://kibana.test",
               "log_processor_url": "http://lp.test"}


def test_template_for_a_serving_alert_has_no_monitor_features_or_report(tmp_path, amtool):
    alert = {"labels": {"alertname": "ServingDown", "severity": "critical", "job": "serving",
                        "instance": "serving:8000", **LINK_LABELS},
             "annotations": {"summary": "Serving serving:8000 is down", "dashboard": "ml-service-health"}}
    subject = render_template(amtool, tmp_path, "mlmon.email.subject", [alert])
    assert subject.strip() == "[FIRING:1] ServingDown instance=serving:8000"
    body = render_template(amtool, tmp_path, "mlmon.email.text", [alert])
    assert "Monitor:  -\n" in body and "Features: -\n" in body
    assert "Grafana:       http://grafana.test/d/ml-service-health\n" in body
    assert "Drift report" not in body and "grafana_url" not in body


def test_template_lists_each_feature_of_a_feature_drift_group(tmp_path, amtool):
    alerts = [{"labels": {"alertname": "FeatureDrift", "monitor": "m1", "feature": f, "severity": "info",
                          **LINK_LABELS},
               "annotations": {"summary": f"Feature {f} drifted", "features": f, "dashboard": "ml-drift",
                               "description": f"{f} score 0.{i + 4}"}}
              for i, f in enumerate(["acc_rate", "conv_rate"])]
    subject = render_template(amtool, tmp_path, "mlmon.email.subject", alerts, status="resolved")
    assert subject.strip() == "[RESOLVED] FeatureDrift monitor=m1 features: acc_rate, conv_rate"
    body = render_template(amtool, tmp_path, "mlmon.email.text", alerts, status="resolved")
    assert "acc_rate score 0.4" in body and "conv_rate score 0.5" in body
    assert "Grafana:       http://grafana.test/d/ml-drift?var-monitor=m1" in body
    assert "Drift report:  http://lp.test/report?monitor=m1" in body


# --- the alerting path checks itself (issue 32, point 5) ------------------------------------------

def test_the_watchdog_goes_only_to_the_heartbeat_receiver_with_its_own_timers(tmp_path, secrets, amtool):
    """Always firing, so it must never reach a person: its route comes before the default, its receiver
    has the heartbeat webhook only, and the demo's incident timers (DEMO) leave its repeat alone."""
    alerts = {rule["alert"]: rule for rule in all_rules() if "alert" in rule}
    assert alerts["Watchdog"]["expr"] == "vector(1)" and "for" not in alerts["Watchdog"]
    assert "team" not in alerts["Watchdog"]["labels"]
    path = render_alertmanager_config(tmp_path / "out", "127.0.0.1:2525", timings=DEMO, secrets_dir=secrets,
                                      version=(0, 28, 1))
    assert_ok(run(amtool, "check-config", path))
    result = run(amtool, "config", "routes", "test", f"--config.file={path}", "alertname=Watchdog", "severity=info")
    assert_ok(result)
    assert result.stdout.strip() == "heartbeat"
    config = yaml.safe_load(path.read_text())
    (route,) = [r for r in config["route"]["routes"] if r["receiver"] == "heartbeat"]
    assert (route["group_wait"], route["group_interval"], route["repeat_interval"]) == ("5s", "1m", "1m")
    assert config["route"]["routes"][0]["group_wait"] == DEMO.group_wait   # the others still get the demo's
    (heartbeat,) = [r for r in config["receivers"] if r["name"] == "heartbeat"]
    assert set(heartbeat) == {"name", "webhook_configs"}
    assert heartbeat["webhook_configs"][0]["url_file"] == str(secrets / "heartbeat_url")
    assert heartbeat["webhook_configs"][0]["send_resolved"] is False


def test_down_alerts_cover_every_scrape_job_once():
    """up == 0 of every job of prometheus.yml is some alert's business, and of one alert only."""
    jobs = {job["job_name"] for job in yaml.safe_load((PROM / "prometheus.yml").read_text())["scrape_configs"]}
    alerts = {rule["alert"]: rule["expr"] for rule in all_rules() if "alert" in rule}
    own = {"serving": "ServingDown", "log_processor": "LogProcessorDown", "alertmanager": "AlertmanagerDown"}
    for job, alert in own.items():
        assert f'up{{job="{job}"}} == 0' in alerts[alert]
    excluded = re.search(r'up\{job!~"([^"]+)"\} == 0', alerts["TargetDown"])[1].split("|")
    assert sorted(excluded) == sorted(own)
    assert {"fluentd", "shipper", "node", "elasticsearch"} <= jobs


def test_a_firing_message_is_titled_by_its_firing_alerts_only(tmp_path, amtool):
    """An incident that opens again within 15 minutes of resolving still holds the resolved alerts
    (Prometheus re-sends them): the title names what fires now; the body lists both."""
    alerts = [{"status": "resolved", "labels": {"alertname": "DataDriftDetected", "monitor": "m1", "severity": "critical",
                                                **LINK_LABELS},
               "annotations": {"summary": "Data drift on m1", "features": "acc_rate, conv_rate", "dashboard": "ml-drift",
                               "window": "600 rows, of the drift", "window_range": "1000 2000 a b"}},
              {"labels": {"alertname": "SegmentDrift", "monitor": "m1", "field": "context.city", "segment": "Springfield",
                          "severity": "warning", **LINK_LABELS},
               "annotations": {"summary": "Segment context.city=Springfield of monitor m1 drifted", "features": "conv_rate",
                               "dashboard": "ml-drift", "window": "600 rows, of the city", "window_range": "5000 6000 c d"}}]
    subject = render_template(amtool, tmp_path, "mlmon.email.subject", alerts)
    assert subject.strip() == "[FIRING:1] SegmentDrift monitor=m1 features: conv_rate"
    for title in ("mlmon.slack.title", "mlmon.telegram.message"):
        text = render_template(amtool, tmp_path, title, alerts)
        assert "SegmentDrift" in text and "DataDriftDetected" not in text.split("\n")[0], text
    body = render_template(amtool, tmp_path, "mlmon.email.text", alerts)
    assert "== RESOLVED: Data drift on m1" in body and "== FIRING: Segment context.city=Springfield" in body
    # the incident's context and links are the firing alerts' (the resolved ones describe an older window)
    assert "Window:   600 rows, of the city" in body and "of the drift" not in body
    assert "http://grafana.test/d/ml-drift?var-monitor=m1&from=5000&to=6000" in body
    # a resolved message still names every alert it resolves
    resolved = render_template(amtool, tmp_path, "mlmon.email.subject", [{**a, "status": "resolved"} for a in alerts],
                               status="resolved")
    assert resolved.strip() == "[RESOLVED] DataDriftDetected, SegmentDrift monitor=m1 features: acc_rate, conv_rate, conv_rate"
