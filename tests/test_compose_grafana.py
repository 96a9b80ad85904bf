"""grafana/: provisioning and dashboards.

Every Prometheus expression of every panel (template variables substituted) is sent to a real
Prometheus started on a loopback port with an empty TSDB: a parse or type error fails the test.
Every metric it names must be in docs/metrics.md or be a recording rule of prometheus/rules/.
The Elasticsearch panel's Lucene query runs against the real osmem-server."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml
from elasticsearch import helpers

from common.schema import daily_index, format_timestamp, utc_now
from tests.conftest import free_port

REPO = Path(__file__).resolve().parent.parent
DASHBOARDS = sorted((REPO / "grafana" / "dashboards").glob("*.json"))
DATASOURCES = REPO / "grafana" / "provisioning" / "datasources" / "datasources.yml"

# Grafana's built-in variables -> values Prometheus accepts; `$monitor` is our only custom one.
SUBSTITUTIONS = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h", "$monitor": ".*"}
PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
                   "unless", "offset", "inf", "nan"}


def substitute(expr: str) -> str:
    for variable, value in SUBSTITUTIONS.items():
        expr = expr.replace(variable, value)
    leftover = re.findall(r"\$\w+", expr)
    assert not leftover, f"unknown template variable {leftover} in {expr}"
    return expr


def metric_names(expr: str) -> set[str]:
    """Series names a PromQL expression selects (functions, keywords, labels and numbers removed)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", s):
        before = s[match.start() - 1] if match.start() else " "
        if before.isdigit() or before == ".":
            continue  # the `e` of 1e-9
        if s[match.end():].lstrip().startswith("(") or match.group().lower() in PROMQL_KEYWORDS:
            continue
        names.add(match.group())
    return names


def contract_names() -> set[str]:
    """docs/metrics.md series (histograms expand to _bucket/_sum/_count) + recording rule names."""
    names = set()
    for name, kind in re.findall(r"^\|\s*`([a-z_:]+)`\s*\|\s*([a-z]+)", (REPO / "docs" / "metrics.md").read_text(), re.M):
        names.add(name)
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    for path in (REPO / "prometheus" / "rules").glob("*.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            names |= {rule["record"] for rule in group["rules"] if "record" in rule}
    return names


def _panels(board: dict) -> list[dict]:
    out = []
    for panel in board["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def prometheus_queries() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, expression) for every Prometheus target and variable."""
    queries = []
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        for panel in _panels(board):
            for target in panel.get("targets", []):
                if target.get("datasource", panel.get("datasource", {})).get("type") == "prometheus":
                    queries.append((path.name, panel["title"], target["expr"]))
        for variable in board["templating"]["list"]:
            if variable["type"] == "query":
                match = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", variable["definition"])
                assert match, f"{path.name}: variable {variable['name']}: unsupported {variable['definition']}"
                queries.append((path.name, f"variable {variable['name']}", match[1]))
    return queries


def _datasource_uids() -> dict[str, dict]:
    return {d["uid"]: d for d in yaml.safe_load(DATASOURCES.read_text())["datasources"]}


def test_dashboards_parse_and_have_unique_uids_and_titles():
    boards = [json.loads(p.read_text()) for p in DASHBOARDS]
    assert sorted(b["title"] for b in boards) == ["Drift", "Model quality", "Service health"]
    assert len({b["uid"] for b in boards}) == len(boards)
    for board in boards:
        ids = [p["id"] for p in _panels(board)]
        assert len(ids) == len(set(ids)), board["title"]


def test_panels_refer_to_provisioned_datasources_by_uid():
    uids = _datasource_uids()
    assert {d["type"] for d in uids.values()} == {"prometheus", "elasticsearch"}
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        refs = [p["datasource"] for p in _panels(board) if "datasource" in p]
        refs += [t["datasource"] for p in _panels(board) for t in p.get("targets", []) if "datasource" in t]
        refs += [v["datasource"] for v in board["templating"]["list"] if "datasource" in v]
        assert refs
        for ref in refs:
            assert ref["uid"] in uids and uids[ref["uid"]]["type"] == ref["type"], f"{path.name}: {ref}"


def test_provisioning_files_parse_and_point_at_the_mounted_dashboards():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    mounts = dict(v.split(":")[:2] for v in compose["services"]["grafana"]["volumes"])
    providers = yaml.safe_load((REPO / "grafana/provisioning/dashboards/dashboards.yml").read_text())["providers"]
    assert [p["type"] for p in providers] == ["file"]
    assert mounts["./grafana/dashboards"] == providers[0]["options"]["path"]
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    es = next(d for d in _datasource_uids().values() if d["type"] == "elasticsearch")
    assert es["jsonData"]["timeField"] == "@timestamp"
    assert es["secureJsonData"]["basicAuthPassword"] == "$GRAFANA_ES_PASSWORD"
    assert "GRAFANA_ES_PASSWORD" in compose["services"]["grafana"]["environment"]


def test_every_metric_a_panel_uses_is_in_the_contract():
    known = contract_names()
    queries = prometheus_queries()
    assert len(queries) >= 30
    for dashboard, title, expr in queries:
        unknown = metric_names(substitute(expr)) - known
        assert not unknown, f"{dashboard} / {title}: {sorted(unknown)} not in docs/metrics.md or recording rules"


def test_the_name_check_catches_what_it_should():
    assert metric_names('histogram_quantile(0.99, sum by (le) (rate(x_bucket{a="b"}[5m]))) / 1e-9') == {"x_bucket"}
    assert metric_names("time() - y offset 5m and on(monitor) z") == {"y", "z"}
    assert "mlmon_made_up" not in contract_names()
    assert {"mlmon_evaluation_duration_seconds_bucket", "mlmon_dataset_drift"} <= contract_names()


@pytest.mark.parametrize("needle, dashboard", [
    ("mlmon_dataset_drift", "drift.json"), ("mlmon_drifted_features_share", "drift.json"),
    ("mlmon_feature_drift_score", "drift.json"), ("mlmon_feature_drift_threshold", "drift.json"),
    ("mlmon_prediction_drift_score", "drift.json"),
    ("mlmon_classification_quality", "model_quality.json"), ("mlmon_label_coverage_ratio", "model_quality.json"),
    ("mlmon_class_share", "model_quality.json"), ("mlmon_confusion_matrix", "model_quality.json"),
    ("mlmon_estimated_classification_quality", "model_quality.json"), ("mlmon_estimation_error", "model_quality.json"),
    ("mlmon_regression_quality", "model_quality.json"), ("mlmon_reference_regression_quality", "model_quality.json"),
    ("mlmon_class_quality", "model_quality.json"), ("mlmon_probabilistic_quality", "model_quality.json"),
    ("mlmon_reference_probabilistic_quality", "model_quality.json"), ("mlmon_calibration_curve", "model_quality.json"),
    ("mlmon_target_drift_score", "drift.json"), ("mlmon_target_drift_threshold", "drift.json"),
    ("serving_requests_total", "service_health.json"), ("serving_request_duration_seconds_bucket", "service_health.json"),
    ("serving_events_dropped_total", "service_health.json"),
    ("mlmon_evaluation_duration_seconds_bucket", "service_health.json"),
    ("mlmon_last_success_timestamp_seconds", "service_health.json"),
])
def test_each_dashboard_shows_what_it_is_for(needle, dashboard):
    used = {name for file, _, expr in prometheus_queries() if file == dashboard for name in metric_names(substitute(expr))}
    assert needle in used


def rows_of(board: dict) -> dict[str, list[dict]]:
    """Row title -> the panels under it (a row's panels follow it in `panels` until the next row)."""
    rows: dict[str, list[dict]] = {}
    current = None
    for panel in board["panels"]:
        if panel["type"] == "row":
            current = rows.setdefault(panel["title"], [])
        elif current is not None:
            current.append(panel)
    return rows


@pytest.mark.parametrize("row, series, metrics", [
    ("Regression", {"mlmon_regression_quality", "mlmon_reference_regression_quality"},
     {"mae", "rmse", "mape", "r2", "mean_error", "abs_error_p50", "abs_error_p90"}),
    ("Multi-class", {"mlmon_classification_quality", "mlmon_reference_classification_quality", "mlmon_class_quality"},
     {"accuracy", "precision_macro", "recall_macro", "f1_macro", "f1"}),
    ("Probabilistic", {"mlmon_probabilistic_quality", "mlmon_reference_probabilistic_quality", "mlmon_calibration_curve"},
     {"roc_auc", "log_loss", "brier", "calibration_error"}),
])
def test_model_quality_has_a_row_per_new_kind_showing_each_metric_against_its_reference(row, series, metrics):
    """Each metric of the contract's set is on a panel of its row, and every panel there but the
    per-class ones and the calibration curve sets the window beside the reference."""
    rows = rows_of(json.loads((REPO / "grafana" / "dashboards" / "model_quality.json").read_text()))
    (title,) = [t for t in rows if t.startswith(row)]
    exprs = [[t["expr"] for t in panel["targets"]] for panel in rows[title]]
    assert series <= {name for panel in exprs for expr in panel for name in metric_names(substitute(expr))}
    shown = {m for panel in exprs for expr in panel
             for group in re.findall(r'metric=~?"([^"]+)"', expr) for m in group.split("|")}
    assert metrics <= shown, sorted(metrics - shown)
    for panel, targets in zip(rows[title], exprs):
        names = {name for expr in targets for name in metric_names(substitute(expr))}
        if names & {"mlmon_class_quality", "mlmon_calibration_curve"}:
            continue
        assert any(n.startswith("mlmon_reference_") for n in names), f"{panel['title']}: no reference beside it"


def test_target_drift_panels_show_every_task_s_target():
    """No method or column matcher on the target-drift queries: a regression monitor's wasserstein series
    (target.duration_minutes) shows beside a classifier's jensenshannon one."""
    rows = rows_of(json.loads((REPO / "grafana" / "dashboards" / "drift.json").read_text()))
    (title,) = [t for t in rows if t.startswith("Target")]
    exprs = [t["expr"] for panel in rows[title] for t in panel["targets"]]
    assert {"mlmon_target_drift_score", "mlmon_target_drift_threshold", "mlmon_target_drift_detected"} <= {
        name for expr in exprs for name in metric_names(substitute(expr))}
    assert not [e for e in exprs if re.search(r"\b(method|column)\s*=", e)], exprs
    assert all("{{method}}" in t["legendFormat"] for panel in rows[title] for t in panel["targets"])


# --- real Prometheus ---

@pytest.fixture(scope="module")
def prometheus_url(tmp_path_factory):
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus not installed (Debian package `prometheus`; scripts/ensure-system-packages.sh)")
    workdir = tmp_path_factory.mktemp("prometheus")
    (workdir / "prometheus.yml").write_text("global:\n  scrape_interval: 1h\n")
    port = free_port()
    log = open(workdir / "prometheus.log", "wb")
    process = subprocess.Popen([binary, f"--config.file={workdir / 'prometheus.yml'}",
                                f"--storage.tsdb.path={workdir / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                               stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(url + "/-/ready", timeout=1) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"prometheus did not start: {(workdir / 'prometheus.log').read_text()[-2000:]}")
        time.sleep(0.1)
    yield url
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


def _query(url: str, expr: str) -> tuple[int, dict]:
    data = urllib.parse.urlencode({"query": expr}).encode()
    try:
        with urllib.request.urlopen(url + "/api/v1/query", data=data, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_every_panel_query_is_accepted_by_prometheus(prometheus_url):
    failures = []
    for dashboard, title, expr in prometheus_queries():
        status, body = _query(prometheus_url, substitute(expr))
        if status != 200 or body.get("status") != "success":
            failures.append(f"{dashboard} / {title}: {body.get('error')}  <- {expr}")
    assert not failures, "\n".join(failures)


def test_prometheus_rejects_a_broken_expression(prometheus_url):
    """The check above can fail: a typo'd panel would be reported."""
    status, body = _query(prometheus_url, "sum by (le (rate(serving_requests_total[1m]))")
    assert status == 400 and body["errorType"] == "bad_data"
    status, body = _query(prometheus_url, "rate(serving_requests_total)")  # type error, not syntax
    assert status == 400


# --- the Elasticsearch panel ---

def _es_targets() -> list[tuple[str, str, str]]:
    out = []
    for path in DASHBOARDS:
        for panel in _panels(json.loads(path.read_text())):
            for target in panel.get("targets", []):
                if target.get("datasource", {}).get("type") == "elasticsearch":
                    out.append((path.name, panel["title"], target["query"]))
    return out


def test_elasticsearch_panel_query_finds_evaluations_with_a_verdict(es):
    es_source = next(d for d in _datasource_uids().values() if d["type"] == "elasticsearch")
    now = format_timestamp(utc_now())
    docs = {
        "drift": {"@timestamp": now, "monitor": "driver_ranker", "status": "ok", "dataset_drift": True, "drift_share": 0.67},
        "calm": {"@timestamp": now, "monitor": "driver_ranker", "status": "ok", "dataset_drift": False, "drift_share": 0.0},
        "empty": {"@timestamp": now, "monitor": "driver_ranker", "status": "insufficient_data"},
    }
    helpers.bulk(es, [{"_op_type": "create", "_index": daily_index("ml-monitoring-", now), "_id": key, "_source": doc}
                      for key, doc in docs.items()], refresh=True)
    targets = _es_targets()
    assert targets
    for dashboard, title, query in targets:
        result = es.search(index=es_source["jsonData"]["index"], query={"query_string": {"query": query}})
        assert {h["_id"] for h in result["hits"]["hits"]} == {"drift", "calm"}, f"{dashboard} / {title}"
