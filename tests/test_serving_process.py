"""`python -m serving` under gunicorn: answers, logs JSON lines on stdout, aggregates metrics over workers."""
from __future__ import annotations

import json
import os
import re
import sys
import urllib.error
import urllib.request

import pytest

from common.supervisor import Child, http_ok
from serving.settings import REPO_ROOT
from tests.conftest import free_port
from tests.serving_support import metric_value, wait_for, world


def call(url: str, body: dict | None = None) -> tuple[int, dict | str]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            raw, status, kind = response.read().decode(), response.status, response.headers.get_content_type()
    except urllib.error.HTTPError as exc:
        raw, status, kind = exc.read().decode(), exc.code, exc.headers.get_content_type()
    return status, json.loads(raw) if kind == "application/json" else raw


@pytest.fixture
def server(tmp_path):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "SERVING_VAR_DIR": str(world().var_dir),
           "SERVING_PORT": str(port), "SERVING_WORKERS": "2", "SERVING_THREADS": "4",
           "SERVING_EVENT_SINKS": "file", "SERVING_EVENTS_FILE": str(tmp_path / "events.jsonl")}
    child = Child("serving", [sys.executable, "-m", "serving"], tmp_path / "stdout.log", env=env, cwd=tmp_path)
    base = f"http://127.0.0.1:{port}"
    with child:
        child.wait_ready(lambda: http_ok(f"{base}/healthz", lambda status: status == 200), 60,
                         "GET /healthz answered 200")
        yield base, tmp_path


@pytest.mark.slow
def test_gunicorn_serves_logs_json_and_aggregates_metrics(server):
    base, tmp_path = server
    for i in range(20):
        status, body = call(f"{base}/predict", {"request_id": f"p{i}", "driver_ids": [1001 + i, 1200 + i]})
        assert status == 200 and body["request_id"] == f"p{i}"
    status, body = call(f"{base}/predict", {"driver_ids": []})
    assert status == 400 and body["error"]["field"] == "driver_ids"

    _, text = call(f"{base}/metrics")
    # Two workers answered; /metrics adds both up.
    assert metric_value(text, "serving_requests_total", endpoint="predict", status="200") == 20
    assert metric_value(text, "serving_events_emitted_total", sink="file") == 21
    # process series of the gunicorn master and of both workers, whichever worker answered
    rss = re.findall(r'^process_resident_memory_bytes\{pid="(\d+)",role="(\w+)"\} (\S+)$', text, re.M)
    assert sorted(role for _, role, _ in rss) == ["master", "worker", "worker"], rss
    assert all(float(value) > 10e6 for _, _, value in rss), rss
    pids = {pid for pid, _, _ in rss}
    for _ in range(4):  # another worker may answer the next scrape: the same processes
        _, again = call(f"{base}/metrics")
        assert set(re.findall(r'^process_open_fds\{pid="(\d+)"', again, re.M)) == pids
    assert re.search(r'^process_cpu_seconds_total\{pid="\d+",role="worker"\} ', text, re.M)
    assert "python_info{" in text

    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert sorted(e["request_id"] for e in events if e["event"]["dataset"] == "ml.prediction") == \
        sorted(f"p{i}" for i in range(20))

    def access_lines():
        logs = [json.loads(line) for line in (tmp_path / "stdout.log").read_text().splitlines() if line]
        return [doc for doc in logs if doc["log"]["logger"] == "serving.access"]

    lines = wait_for(lambda: len(access_lines()) >= 22 and access_lines())
    assert {doc["http"]["response"]["status_code"] for doc in lines} >= {200, 400}
    assert all(doc["service"]["name"] == "serving" and doc["@timestamp"].endswith("Z") for doc in lines)
