"""Dashboards and saved searches show data after a real demo run, not only parse.

One run of the demo's story (demo/runner.py) on the embedded stack, with the test's store (the
`store_url` fixture: osmem-server, or the real engine where conftest provides it) in place of the
demo's own. Serving, the shipper, the log processor and a real Prometheus run as in `make demo`.
On top of the normal and drifted traffic the run gets what an operator's searches look for: bad
requests (4xx, ml.request_error events) and one prediction made slow by a client that sends its
body late. Serving's JSON log lines are indexed into logs-serving-* as Filebeat would.

A multi-class monitor (`trip_type`, benchmarks/synthetic.py's events with class scores, its reference
written beside the run's monitors.yaml) is added to the run, since serving has no multi-class model;
the regression monitor (`trip_duration`) is the demo's own.

Then every query of every Grafana panel and variable runs against that Prometheus, with the
template variables substituted as Grafana substitutes them (every value of `$monitor` one by one,
and "All"); the Grafana Elasticsearch panel and every Kibana saved search run against the store.
A panel is asked only of the monitors whose task exports what it shows (`panel_tasks`: the
series it uses and the row it sits in; `mlmon_monitor_task` says each monitor's task), and every panel
must have at least one such monitor in the run. Each must return something; a failure names the
dashboard, panel and query.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import socket
import time
import urllib.parse
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from elasticsearch import helpers

import yaml

from benchmarks import synthetic
from common.schema import LOGS_INDEX_PREFIX, daily_index, utc_now
from common.store import StoreSettings, connect
from demo import exporters
from demo.alerting_stack import missing_binaries
from demo.report import StatusWriter
from demo.runner import Story
from demo.settings import DemoSettings
from demo.stack import EmbeddedStack
from demo.traffic import post_json
from tests.test_compose_grafana import DASHBOARDS, _datasource_uids, _es_targets, _panels, metric_names, rows_of
from tests.test_compose_kibana import _by_type, _search_source

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bool(missing_binaries()),
                       reason=f"not installed: {', '.join(missing_binaries())} (make system-deps)"),
]

SLOW_BODY_PAUSE = 0.4  # seconds; the slow-predictions saved search starts at 250 ms


MULTICLASS_ROWS = 300     # more than the demo's latest-N window (its shorter phase, 200 here)


class StackOnTestStore(EmbeddedStack):
    """The demo's embedded stack, writing to the test's store instead of starting its own, with a
    multi-class monitor beside the demo's."""

    test_store_url = ""

    def _start_store(self) -> None:
        self.urls.store = self.test_store_url  # the fixture already applied the index templates

    def _monitors_file(self) -> Path:
        """The demo's monitors plus `trip_type` (contract shape; window, interval and row limits as the
        demo gives its own monitors), reading synthetic.multiclass_reference_frame()."""
        path = super()._monitors_file()
        config = yaml.safe_load(path.read_text())
        reference = self.settings.state_dir / "trip_type_reference.parquet"
        synthetic.multiclass_reference_frame().to_parquet(reference)
        # This run's window is 200 rows: ~20 per city, below segments.min_rows (50). Keeping the two
        # largest cities and pooling the rest as `other` (~150 rows) gives driver_ranker a tested segment.
        config["monitors"][0]["segments"]["max_segments"] = 2
        trip_type = {key: value for key, value in config["monitors"][0].items() if key != "estimation"}
        trip_type.update(name=synthetic.MULTICLASS_MODEL, task="multiclass_classification",
                         model_name=synthetic.MULTICLASS_MODEL, classes=list(synthetic.CLASSES),
                         prediction={"label": "prediction.class", "scores": "prediction.class_scores"},
                         target="target.class", reference={"parquet": str(reference)})
        config["monitors"].append(trip_type)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path


def index_multiclass_events(es) -> None:
    """trip_type's predictions of the last minute, every one labelled a second later."""
    end = utc_now()
    rows = synthetic.multiclass_rows("normal", MULTICLASS_ROWS, 77)
    events = synthetic.task_events(rows, "multiclass_classification", end - timedelta(seconds=60), end,
                                   delay_seconds=1.0, seed=77)
    helpers.bulk(es, synthetic.bulk_actions(events), refresh=True)


# --- which monitors a panel is asked of ----------------------------------------------------------

CLASSIFIERS = {"binary_classification", "multiclass_classification"}
TASKS = CLASSIFIERS | {"regression"}
SERIES_TASKS = {   # the tasks whose monitors export a series (docs/metrics.md); unlisted: every task
    "mlmon_regression_quality": {"regression"}, "mlmon_reference_regression_quality": {"regression"},
    "mlmon_class_quality": {"multiclass_classification"},
    "mlmon_classification_quality": CLASSIFIERS, "mlmon_reference_classification_quality": CLASSIFIERS,
    "mlmon_class_share": CLASSIFIERS, "mlmon_confusion_matrix": CLASSIFIERS,
    # scored classifiers: the binary monitor's score, trip_type's class_scores
    "mlmon_probabilistic_quality": CLASSIFIERS, "mlmon_reference_probabilistic_quality": CLASSIFIERS,
    "mlmon_calibration_curve": CLASSIFIERS,
    # `estimation` is binary-only
    "mlmon_estimated_classification_quality": {"binary_classification"},
    "mlmon_estimated_classification_quality_lower": {"binary_classification"},
    "mlmon_estimated_classification_quality_upper": {"binary_classification"},
    "mlmon_estimation_error": {"binary_classification"}, "mlmon_score_calibration_error": {"binary_classification"},
}
# the series only a monitor with `segments:` in monitors.yaml exports (docs/metrics.md)
SEGMENT_SERIES = {"mlmon_segments", "mlmon_segment_rows", "mlmon_segment_traffic_share",
                  "mlmon_segment_drift_detected", "mlmon_segment_quality_degraded",
                  "mlmon_segment_min_adjusted_p_value", "mlmon_segment_drifted_column", "mlmon_segment_quality",
                  "mlmon_segment_estimated_quality"}
ROW_TASKS = {"Regression": {"regression"}, "Multi-class": {"multiclass_classification"}, "Probabilistic": CLASSIFIERS}


def panel_tasks(board: dict) -> dict[int, set[str]]:
    """Panel id -> the tasks whose monitors it must show data for: every series it uses must be
    exported for them, and a panel in a task's row (ROW_TASKS, by the row title's first word) is
    that task's."""
    row_of = {panel["id"]: title for title, panels in rows_of(board).items() for panel in panels}
    tasks = {}
    for panel in _panels(board):
        allowed = set(TASKS)
        for target in panel.get("targets", []):
            for name in metric_names(target.get("expr", "")):
                allowed &= SERIES_TASKS.get(name, TASKS)
        row = row_of.get(panel["id"], "")
        allowed &= next((t for prefix, t in ROW_TASKS.items() if row.startswith(prefix)), TASKS)
        tasks[panel["id"]] = allowed
    return tasks


def test_panel_tasks_follow_the_series_and_the_row():
    """The selection above is not vacuous: the new rows go to their task's monitors, the rest to all."""
    board = json.loads(next(p for p in DASHBOARDS if p.name == "model_quality.json").read_text())
    by_title = {panel["title"]: panel_tasks(board)[panel["id"]] for panel in _panels(board)}
    assert by_title["MAE / RMSE vs reference"] == {"regression"}
    assert by_title["Per-class precision / recall / F1 (latest window)"] == {"multiclass_classification"}
    assert by_title["Macro precision / recall / F1 and accuracy vs reference"] == {"multiclass_classification"}
    assert by_title["ROC AUC vs reference"] == CLASSIFIERS
    assert by_title["Estimated vs realized: accuracy / F1"] == {"binary_classification"}
    assert by_title["Confusion matrix (latest window)"] == CLASSIFIERS
    assert by_title["Label coverage"] == TASKS
    assert all(tasks for tasks in by_title.values()), "a panel no task can fill"


# --- Grafana's variable substitution -------------------------------------------------------------

def _seconds(duration: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([smhd])", duration).groups()
    return int(number) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


def builtin_variables(board: dict, scrape_interval: str, max_points: int = 1000) -> dict[str, str]:
    """$__range, $__interval and $__rate_interval for the board's default time range, as Grafana computes them.

    $__interval is the range over the panel's data points, never below the datasource's scrape
    interval; $__rate_interval is max($__interval + scrape interval, 4 x scrape interval).
    """
    range_s = _seconds(board["time"]["from"].removeprefix("now-"))
    scrape = _seconds(scrape_interval)
    interval = max(scrape, round(range_s / max_points))
    return {"$__rate_interval": f"{max(interval + scrape, 4 * scrape)}s", "$__interval": f"{interval}s",
            "$__range": f"{range_s}s"}


def monitor_values(board: dict, prometheus_url: str) -> list[tuple[str, str]]:
    """(what was selected, the text Grafana puts for `$monitor`): each value alone, then "All"."""
    (variable,) = [v for v in board["templating"]["list"] if v["name"] == "monitor"]
    metric, label = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", variable["definition"]).groups()
    values = sorted({series["metric"][label] for series in prom_query(prometheus_url, metric)})
    choices = [(value, re.escape(value)) for value in values]
    if variable.get("includeAll"):
        choices.append(("All", variable.get("allValue") or "(" + "|".join(map(re.escape, values)) + ")"))
    return choices


def prom_query(url: str, expr: str) -> list[dict]:
    data = urllib.parse.urlencode({"query": expr}).encode()
    with urllib.request.urlopen(url + "/api/v1/query", data=data, timeout=10) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    return body["data"]["result"]


# --- traffic an operator's searches look for ------------------------------------------------------

def slow_prediction(serving_url: str, pause: float) -> None:
    """A /predict whose client sends the body `pause` seconds after the headers (serving times it)."""
    host, port = urllib.parse.urlsplit(serving_url).netloc.split(":")
    body = json.dumps({"request_id": "slow-client", "driver_ids": [1001, 1002]}).encode()
    head = (f"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head + body[:10])
        time.sleep(pause)
        sock.sendall(body[10:])
        status_line = sock.makefile("rb").readline()
    assert b" 200 " in status_line, status_line


def ship_log_lines(es, log_file: Path) -> int:
    """Serving's stdout JSON lines into logs-serving-YYYY.MM.DD, as filebeat/filebeat.yml ships them.

    Fields are lifted to the top level (the ndjson parser, target ""), the daily index comes from the
    line's @timestamp, the _id is a fingerprint of file and byte offset, the operation is create.
    """
    actions, offset = [], 0
    for raw in log_file.read_bytes().splitlines(keepends=True):
        doc = json.loads(raw)
        doc["log"] = {**doc.get("log", {}), "offset": offset, "file": {"path": str(log_file)}}
        actions.append({"_op_type": "create", "_index": daily_index(LOGS_INDEX_PREFIX, doc["@timestamp"]),
                        "_id": hashlib.sha256(f"{log_file}:{offset}".encode()).hexdigest(), "_source": doc})
        offset += len(raw)
    helpers.bulk(es, actions, refresh=True)
    return len(actions)


# --- the run ------------------------------------------------------------------------------------

@pytest.fixture
def demo_run(store_url, tmp_path):
    """A finished demo story on a running stack; yields (stack, store client) and stops everything."""
    settings = DemoSettings(normal_requests=200, drift_requests=200, rate=100.0, feedback_delay=0.5,
                            eval_interval=1.0, alert_timeout=1.0, recovery=False, state_dir=tmp_path / "state",
                            mail_dir=tmp_path / "mail", notifications_dir=tmp_path / "notifications",
                            log_dir=tmp_path / "log")
    stack = StackOnTestStore(settings, say=lambda line: None)
    stack.test_store_url = store_url
    es = connect(StoreSettings(url=store_url))
    try:
        stack.start()
        index_multiclass_events(es)
        story = Story(stack, stack.monitors(), StatusWriter(io.StringIO()))
        story.run()
        # the alert messages are tests/test_demo_e2e.py's business; here only the data matters
        waits = [note for note in story.notes if "e-mail" not in note and "message" not in note]
        assert not waits, waits
        serving = stack.urls.serving
        assert post_json(serving + "/predict", {"driver_ids": [99999999999999999999999]}, 5)[0] == 400
        assert post_json(serving + "/predict", {"request_id": "r-unknown", "driver_ids": [42]}, 5)[0] == 422
        slow_prediction(serving, SLOW_BODY_PAUSE)
        deadline = time.monotonic() + 30
        while not (stack.shipper.stats.lag_bytes == 0 and es.count(
                index="ml-events-*", query={"term": {"event.dataset": "ml.request_error"}})["count"] >= 2
                and es.count(index="ml-events-*", query={"term": {"request_id": "slow-client"}})["count"]):
            assert time.monotonic() < deadline, "the extra events were not shipped within 30 s"
            time.sleep(0.3)
        assert ship_log_lines(es, stack.log_file("serving")) > 400
        time.sleep(3)  # a few more scrapes, so rates over the last interval see the extra requests
        yield stack, es
    finally:
        es.close()
        stack.stop()


def unavailable_series(prometheus: str, store_backend: str) -> tuple[set[str], set[str]]:
    """(series prefixes, series names) the run cannot have, and why not: an exporter not installed
    here, or the JVM series of a store without _nodes/stats (osmem). OpenSearch must have them."""
    prefixes = {"node_": exporters.NODE_EXPORTER, "elasticsearch_": exporters.ELASTICSEARCH_EXPORTER}
    missing = {prefix for prefix, binary in prefixes.items() if exporters.find(binary) is None}
    names = set()
    if "elasticsearch_" not in missing:
        node_stats = any(s["value"][1] == "1" for s in prom_query(prometheus, "elasticsearch_node_stats_up"))
        assert node_stats or store_backend == "osmem", "the store exporter got no _nodes/stats from OpenSearch"
        if not node_stats:
            names |= {"elasticsearch_jvm_memory_used_bytes", "elasticsearch_jvm_memory_max_bytes"}
    return missing, names


def test_every_panel_query_and_saved_search_returns_data_after_a_demo_run(demo_run, store_backend):
    stack, es = demo_run
    prometheus = stack.prometheus.url
    empty, checked = [], 0
    missing_prefixes, missing_names = unavailable_series(prometheus, store_backend)
    not_asked = []
    scrape_interval = _datasource_uids()["prometheus-ml"]["jsonData"]["timeInterval"]

    task_of = {series["metric"]["monitor"]: series["metric"]["task"] for series in prom_query(prometheus, "mlmon_monitor_task")}
    # a segment panel is asked of the monitors with `segments:` that tested a segment (the demo's
    # driver_ranker, and trip_type copied from it: its events carry no city, one segment `unknown`)
    segmented = {series["metric"]["monitor"] for series in prom_query(prometheus, 'mlmon_segments{state="evaluated"} > 0')}
    assert "driver_ranker" in segmented and "trip_duration" not in segmented, segmented
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        builtins = builtin_variables(board, scrape_interval)
        tasks = panel_tasks(board)
        targets = [(panel["title"], tasks[panel["id"]], target["expr"]) for panel in _panels(board)
                   for target in panel.get("targets", [])
                   if target.get("datasource", panel.get("datasource", {})).get("type") == "prometheus"]
        choices = monitor_values(board, prometheus)
        if len(choices) < 2:
            empty.append(f"{path.name} / variable monitor: label_values found no monitor")
        empty += [f"{path.name} / variable monitor: {value} has no mlmon_monitor_task"
                  for value, _ in choices if value != "All" and value not in task_of]
        for title, panel_task, expr in targets:
            used = metric_names(expr)
            if used & missing_names or any(name.startswith(tuple(missing_prefixes)) for name in used):
                not_asked.append(f"{path.name} / {title}")
                continue
            asked = [(selected, text) for selected, text in choices
                     if selected == "All" or (task_of.get(selected) in panel_task
                                              and (selected in segmented or not used & SEGMENT_SERIES))]
            if len(asked) < 2:
                empty.append(f"{path.name} / {title}: no monitor of task {sorted(panel_task)} in the run")
            for selected, text in asked:
                query = expr.replace("$monitor", text)
                for name, value in builtins.items():
                    query = query.replace(name, value)
                assert "$" not in query, f"{path.name} / {title}: unsubstituted variable in {query}"
                checked += 1
                if not prom_query(prometheus, query):
                    empty.append(f"{path.name} / {title} (monitor={selected}): no data  <- {query}")

    es_source = next(d for d in _datasource_uids().values() if d["type"] == "elasticsearch")
    for dashboard, title, query in _es_targets():
        checked += 1
        hits = es.search(index=es_source["jsonData"]["index"], query={"query_string": {"query": query}})
        if not hits["hits"]["total"]["value"]:
            empty.append(f"{dashboard} / {title}: no documents  <- {query}")

    views = _by_type("index-pattern")
    for search_id, search in sorted(_by_type("search").items()):
        source = _search_source(search)
        ref = next(r for r in search["references"] if r["name"] == source["indexRefName"])
        index = views[ref["id"]]["attributes"]["title"]
        checked += 1
        hits = es.search(index=index, query={"query_string": {"query": source["query"]["query"]}})
        if not hits["hits"]["total"]["value"]:
            empty.append(f"kibana saved search {search_id!r} on {index}: no documents  <- {source['query']['query']}")

    # the check can fail: a series nobody exports and a search nothing matches come back empty
    assert not prom_query(prometheus, 'mlmon_dataset_drift{monitor="no_such_monitor"}')
    assert not es.search(index="ml-events-*", query={"query_string": {"query": "latency_ms:>=100000"}})[
        "hits"]["total"]["value"]
    assert checked >= 80
    # only the store's heap on osmem (no _nodes/stats) may go unasked, where both exporters are installed
    allowed = {"service_health.json / Store JVM heap used"} if store_backend == "osmem" else set()
    if not missing_prefixes:
        assert set(not_asked) <= allowed, not_asked
    assert not empty, f"{len(empty)} of {checked} queries came back empty:\n" + "\n".join(empty)

