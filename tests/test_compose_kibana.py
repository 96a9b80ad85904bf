"""kibana/saved_objects.ndjson and its importer.

Every saved search's query (Lucene) runs as a `query_string` query against the real osmem-server,
over documents built the way the stack builds them (common.schema events, serving's JSON log
formatter, monitoring summaries), and must return exactly the expected documents. Kibana itself
does not run here; the importer is exercised against a small local stand-in that answers like
Kibana's import API (Kibana is not installable on this machine)."""
from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from datetime import datetime, timedelta, timezone
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from elasticsearch import helpers

from common.schema import (daily_index, feedback_event, format_timestamp, prediction_event,
                           request_error_event)
from common.store import StoreSettings
from kibana import import_saved_objects as importer
from benchmarks import synthetic
from log_processor.export.metrics import Exporter
from log_processor.monitors import load_monitors
from log_processor.runner import MonitorRunner
from log_processor.read.store import EventStore
from serving.logs import JsonFormatter

REPO = Path(__file__).resolve().parent.parent
NDJSON = REPO / "kibana" / "saved_objects.ndjson"


def now() -> datetime:
    """Taken when a test builds its data, so that a long suite cannot age it out of the searches' ranges."""
    return datetime.now(timezone.utc).replace(microsecond=0)


def _objects() -> list[dict]:
    return [json.loads(line) for line in NDJSON.read_text().splitlines() if line.strip()]


def _by_type(kind: str) -> dict[str, dict]:
    return {o["id"]: o for o in _objects() if o["type"] == kind}


def _search_source(obj: dict) -> dict:
    return json.loads(obj["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])


def test_every_line_is_a_saved_object_with_unique_id():
    objects = _objects()
    assert [o["type"] for o in objects].count("index-pattern") == 3
    assert len({(o["type"], o["id"]) for o in objects}) == len(objects)
    assert importer.read_objects(NDJSON)  # the importer's own check accepts the file


def test_data_views_cover_the_three_index_families_with_templates():
    templates = [p for f in (REPO / "elasticsearch").glob("*.index-template.json")
                 for p in json.loads(f.read_text())["index_patterns"]]
    titles = sorted(v["attributes"]["title"] for v in _by_type("index-pattern").values())
    assert titles == ["logs-serving-*", "ml-events-*", "ml-monitoring-*"]
    assert sorted(titles) == sorted(templates)
    for view in _by_type("index-pattern").values():
        assert view["attributes"]["timeFieldName"] == "@timestamp"


def test_references_resolve_within_the_file():
    ids = {(o["type"], o["id"]) for o in _objects()}
    for obj in _objects():
        names = [r["name"] for r in obj["references"]]
        assert len(names) == len(set(names)), obj["id"]
        for ref in obj["references"]:
            assert (ref["type"], ref["id"]) in ids, f"{obj['id']} references missing {ref}"
    for search in _by_type("search").values():
        source = _search_source(search)
        assert source["query"]["language"] == "lucene"
        assert source["indexRefName"] in [r["name"] for r in search["references"]]
    for dashboard in _by_type("dashboard").values():
        panels = json.loads(dashboard["attributes"]["panelsJSON"])
        ref_names = {r["name"] for r in dashboard["references"]}
        assert panels and {p["panelRefName"] for p in panels} == ref_names


def test_dashboard_shows_every_saved_search():
    (dashboard,) = _by_type("dashboard").values()
    assert {r["id"] for r in dashboard["references"]} == set(_by_type("search"))


# --- each saved search against the real store ---

def _prediction(request_id: str, latency_ms: float, minutes_ago: int = 1, city: str | None = None) -> dict:
    return prediction_event(model_name="driver_ranker", model_version="2026.11.1", request_id=request_id,
                            features={"conv_rate": 0.5, "acc_rate": 0.9, "avg_daily_trips": 10},
                            driver_id=1001, score=0.7, label=1, latency_ms=latency_ms,
                            timestamp=now() - timedelta(minutes=minutes_ago), city=city)


def _log_line(level: int, message: str, fields: dict | None = None) -> dict:
    """What Filebeat's ndjson parser lifts out of one serving stdout line."""
    record = logging.LogRecord("serving.access" if fields else "serving.app", level, __file__, 1, message, None, None)
    if fields:
        record.fields = fields
    return json.loads(JsonFormatter().format(record))


def _access(status: int, path: str = "/predict") -> dict:
    return _log_line(logging.INFO, f"POST {path} {status}", {
        "http": {"request": {"method": "POST"}, "response": {"status_code": status}},
        "url": {"path": path}, "event": {"dataset": "serving.access", "duration": 1_000_000}})


def _summary(status: str, drift: bool | None) -> dict:
    doc = {"@timestamp": format_timestamp(now()), "monitor": "driver_ranker", "status": status,
           "model": {"name": "driver_ranker", "version": "2026.11.1"},
           "rows": {"current": 500, "reference": 2000, "labelled": 300, "evaluated": 500}}
    if drift is not None:
        doc.update({"dataset_drift": drift, "drift_share": 0.67 if drift else 0.0,
                    "drifted_features": ["conv_rate", "acc_rate"] if drift else [],
                    "feature_drift": [{"feature": "conv_rate", "method": "ks", "score": 0.001,
                                       "threshold": 0.05, "detected": drift}]})
    return doc


@pytest.fixture
def loaded(es):
    """Documents of every kind, keyed by a name; each saved search must find exactly its own."""
    docs = {
        "fast": ("ml-events-", _prediction("fast", 12.0)),
        "slow": ("ml-events-", _prediction("slow", 480.0)),
        "borderline": ("ml-events-", _prediction("borderline", 250.0)),
        "springfield": ("ml-events-", _prediction("springfield", 15.0, city="Springfield")),
        "springfield_2": ("ml-events-", _prediction("springfield-2", 20.0, city="Springfield Heights")),
        "shelbyville": ("ml-events-", _prediction("shelbyville", 15.0, city="Shelbyville")),
        "feedback": ("ml-events-", feedback_event(model_name="driver_ranker", model_version="2026.11.1",
                                                  request_id="slow", trip_completed=1)),
        "request_error": ("ml-events-", request_error_event(model_name="driver_ranker", model_version="2026.11.1",
                                                            request_id="bad", error_type="validation",
                                                            message="driver_ids: must be a non-empty list")),
        "access_200": ("logs-serving-", _access(200)),
        "access_422": ("logs-serving-", _access(422)),
        "access_500": ("logs-serving-", _access(500)),
        "app_error": ("logs-serving-", _log_line(logging.ERROR, "feature store lookup failed")),
        "app_info": ("logs-serving-", _log_line(logging.INFO, "serving ready")),
        "drift": ("ml-monitoring-", _summary("ok", True)),
        "no_drift": ("ml-monitoring-", _summary("ok", False)),
        "too_few_rows": ("ml-monitoring-", _summary("insufficient_data", None)),
    }
    actions = [{"_op_type": "create", "_index": daily_index(prefix, doc["@timestamp"]), "_id": key, "_source": doc}
               for key, (prefix, doc) in docs.items()]
    ok, errors = helpers.bulk(es, actions, raise_on_error=False, refresh=True)
    assert (ok, errors) == (len(docs), [])
    return es


EXPECTED = {
    "ml-prediction-errors": {"request_error"},
    "serving-request-errors": {"access_422", "access_500", "app_error"},
    "drift-history": {"drift", "no_drift"},
    "slow-predictions": {"slow", "borderline"},
    # the segment is the keyword's exact value: another city, or a longer name containing it, is not it
    "segment-predictions": {"springfield"},
}


def test_every_saved_search_has_an_expectation():
    assert set(_by_type("search")) == set(EXPECTED)


@pytest.mark.parametrize("search_id", sorted(EXPECTED))
def test_saved_search_returns_exactly_its_documents(loaded, search_id):
    search = _by_type("search")[search_id]
    source = _search_source(search)
    ref = next(r for r in search["references"] if r["name"] == source["indexRefName"])
    index = _by_type("index-pattern")[ref["id"]]["attributes"]["title"]
    result = loaded.search(index=index, query={"query_string": {"query": source["query"]["query"]}}, size=100)
    assert {hit["_id"] for hit in result["hits"]["hits"]} == EXPECTED[search_id]


def test_saved_search_columns_exist_in_the_documents_they_show(loaded):
    for search_id, search in _by_type("search").items():
        source = _search_source(search)
        ref = next(r for r in search["references"] if r["name"] == source["indexRefName"])
        index = _by_type("index-pattern")[ref["id"]]["attributes"]["title"]
        mapping = loaded.indices.get_mapping(index=index)
        fields = set()

        def walk(props, prefix=""):
            for name, spec in props.items():
                fields.add(prefix + name)
                walk(spec.get("properties", {}), prefix + name + ".")
        for body in mapping.values():
            walk(body["mappings"].get("properties", {}))
        missing = [c for c in search["attributes"]["columns"] if c not in fields]
        assert not missing, f"{search_id}: columns {missing} are in no document of {index}"


# --- the importer ---

class _FakeKibana(BaseHTTPRequestHandler):
    answer: dict = {}
    received: list = []

    def log_message(self, *args):
        pass

    def _reply(self, status: int, body: dict) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self):
        self._reply(200, {"status": {"overall": {"level": "available"}}})

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((self.path, self.headers, body))
        self._reply(200, type(self).answer)


@pytest.fixture
def fake_kibana():
    handler = type("Handler", (_FakeKibana,), {"answer": {}, "received": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield handler, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_import_posts_the_file_as_multipart_with_xsrf_header(fake_kibana):
    handler, url = fake_kibana
    handler.answer = {"success": True, "successCount": 8, "errors": []}
    count = importer.run(importer.ImportSettings(url=url, username="elastic", password="pw", wait_seconds=5))
    assert count == 8
    (path, headers, body), = handler.received
    assert path == "/api/saved_objects/_import?overwrite=true"
    assert headers["kbn-xsrf"] == "true" and headers["Authorization"].startswith("Basic ")
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {headers['Content-Type']}\r\n\r\n".encode() + body)
    (part,) = list(message.iter_parts())
    assert part.get_param("name", header="content-disposition") == "file"
    assert part.get_payload(decode=True) == NDJSON.read_bytes()


def test_import_with_success_false_fails_naming_each_object(fake_kibana):
    handler, url = fake_kibana
    handler.answer = {"success": False, "successCount": 7, "errors": [
        {"id": "drift-history", "type": "search",
         "error": {"type": "missing_references", "references": [{"type": "index-pattern", "id": "ml-monitoring"}]}}]}
    with pytest.raises(importer.ImportFailed, match="search/drift-history: missing_references"):
        importer.run(importer.ImportSettings(url=url, wait_seconds=5))


def test_import_errors_without_detail_still_fail():
    assert importer.import_errors({"success": True, "successCount": 1}) == []
    assert importer.import_errors({"success": False})


def test_bad_ndjson_is_reported_with_file_and_line(tmp_path):
    bad = tmp_path / "objects.ndjson"
    bad.write_text('{"type": "search", "id": "a"}\n{"type": "search"}\n')
    with pytest.raises(importer.ImportFailed, match=r"objects.ndjson:2: a saved object needs `type` and `id`"):
        importer.read_objects(bad)
    bad.write_text('{"type": "search", "id": "a"}\nnot json\n')
    with pytest.raises(importer.ImportFailed, match=r"objects.ndjson:2: not JSON"):
        importer.read_objects(bad)


def test_unreachable_kibana_fails_after_the_wait(free_port_number):
    settings = importer.ImportSettings(url=f"http://127.0.0.1:{free_port_number}", wait_seconds=0)
    with pytest.raises(importer.ImportFailed, match="not available after 0s"):
        importer.run(settings)


@pytest.fixture
def free_port_number() -> int:
    from tests.conftest import free_port
    return free_port()


# --- against the summaries the real log processor writes ---

def test_drift_history_finds_real_processor_summaries_with_a_verdict(es, store_url, tmp_path):
    """The log processor runs one empty cycle (insufficient_data) and one drifted cycle; the saved
    search shows the drifted one only, and its columns are filled."""
    reference = tmp_path / "reference.parquet"
    synthetic.reference_frame(1000, seed=101).to_parquet(reference)
    base = load_monitors(REPO / "log_processor" / "monitors.yaml", interval_override=0.2)[0]
    monitor = dataclasses.replace(base, min_rows=200,
                                  reference=dataclasses.replace(base.reference, parquet=reference, manifest=None))
    runner = MonitorRunner(monitor, EventStore(StoreSettings(url=store_url, request_timeout=5), page_size=500),
                           Exporter([monitor.name]), backoff_max=1.0)
    assert runner.run_once() == "insufficient_data"
    rows = synthetic.chosen_rows("drift", 400, 5)
    docs = synthetic.events(rows, now() - timedelta(minutes=8), now() - timedelta(minutes=1), feedback_share=0.5, seed=2)
    helpers.bulk(es, synthetic.bulk_actions(docs), refresh=True)
    time.sleep(0.01)  # summary ids are per millisecond
    assert runner.run_once() == "ok", runner.state.last_error
    es.indices.refresh(index="ml-monitoring-*")
    assert es.count(index="ml-monitoring-*")["count"] == 2

    source = _search_source(_by_type("search")["drift-history"])
    hits = es.search(index="ml-monitoring-*", query={"query_string": {"query": source["query"]["query"]}})["hits"]["hits"]
    (hit,) = hits
    doc = hit["_source"]
    assert doc["status"] == "ok" and doc["dataset_drift"] is True
    for column in _by_type("search")["drift-history"]["attributes"]["columns"]:
        node = doc
        for part in column.split("."):
            node = node[part]
        assert node is not None, column
