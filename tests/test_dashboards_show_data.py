"""Dashboards and saved searches show data after a real demo run, not only parse.

One run of the demo's story (demo/runner.py) on the embedded stack, with the test's store (the
`store_url` fixture: osmem-server, or the real engine where conftest provides it) in place of the
demo's own. Serving, the shipper, the log processor and a real Prometheus run as in `make demo`.
On top of the normal and drifted traffic the run gets what an operator's searches look for: bad
requests (4xx, ml.request_error events) and one prediction made slow by a client that sends its
body late. Serving's JSON log lines are indexed into logs-serving-* as Filebeat would.

Then every query of every Grafana panel and variable runs against that Prometheus, with the
template variables substituted as Grafana substitutes them (every value of `$monitor` one by one,
and "All"); the Grafana Elasticsearch panel and every Kibana saved search run against the store.
Each must return something; a failure names the dashboard, panel and query.
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
from pathlib import Path

import pytest
from elasticsearch import helpers

from common.schema import LOGS_INDEX_PREFIX, daily_index
from common.store import StoreSettings, connect
from demo.__main__ import monitor_name
from demo.alerting_stack import missing_binaries
from demo.report import StatusWriter
from demo.runner import Story
from demo.settings import DemoSettings
from demo.stack import EmbeddedStack
from demo.traffic import post_json
from tests.test_compose_grafana import DASHBOARDS, _datasource_uids, _es_targets, _panels
from tests.test_compose_kibana import _by_type, _search_source

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bool(missing_binaries()),
                       reason=f"not installed: {', '.join(missing_binaries())} (make system-deps)"),
]

SLOW_BODY_PAUSE = 0.4  # seconds; the slow-predictions saved search starts at 250 ms


class StackOnTestStore(EmbeddedStack):
    """The demo's embedded stack, writing to the test's store instead of starting its own."""

    test_store_url = ""

    def _start_store(self) -> None:
        self.urls.store = self.test_store_url  # the fixture already applied the index templates


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
        story = Story(stack, monitor_name(), StatusWriter(io.StringIO()))
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


def test_every_panel_query_and_saved_search_returns_data_after_a_demo_run(demo_run):
    stack, es = demo_run
    prometheus = stack.prometheus.url
    empty, checked = [], 0
    scrape_interval = _datasource_uids()["prometheus-ml"]["jsonData"]["timeInterval"]

    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        builtins = builtin_variables(board, scrape_interval)
        targets = [(panel["title"], target["expr"]) for panel in _panels(board) for target in panel.get("targets", [])
                   if target.get("datasource", panel.get("datasource", {})).get("type") == "prometheus"]
        choices = monitor_values(board, prometheus)
        if len(choices) < 2:
            empty.append(f"{path.name} / variable monitor: label_values found no monitor")
        for title, expr in targets:
            for selected, text in choices:
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
    assert not empty, f"{len(empty)} of {checked} queries came back empty:\n" + "\n".join(empty)

