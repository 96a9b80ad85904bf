"""The Evidently UI as the processor's dashboard (docs/evidently-ui.md): the real `evidently ui` on
loopback, fed by a real Processor over osmem; every provisioned panel of every monitor must have data
through the UI's own HTTP API; a UI that is down or refuses writes costs no cycle and is counted;
retention; the settings that must fail at start."""
from __future__ import annotations

import dataclasses
import json
import time
import urllib.error
import urllib.request
from datetime import timedelta

import pytest
from elasticsearch import helpers
from evidently.core.serialization import SnapshotModel
from evidently.sdk.models import DashboardModel

from benchmarks import synthetic
from common.evidently_ui import EvidentlyUI
from common.store import StoreSettings
from log_processor.__main__ import main as processor_main
from log_processor.export.evidently_dashboard import dashboard, panels, project_id, series_filter
from log_processor.evaluate.evaluation import evaluate
from log_processor.export.evidently_snapshot import snapshot_body, snapshot_of, snapshot_samples
from log_processor.export.evidently_workspace import (LocalWorkspace, RemoteUI, SnapshotCounters, SnapshotWriter,
                                                      backend_for)
from log_processor.export.metrics import DRIFTED_SHARE
from log_processor.monitors import load_monitors
from log_processor.tasks.base import Series
from log_processor.processor import Processor
from log_processor.settings import ProcessorSettings
from prometheus_client import CollectorRegistry
from tests.conftest import REPO_ROOT, free_port
from tests.test_log_processor_store import now

SECRET = "test-secret-not-a-real-one"


@pytest.fixture
def store_backend() -> str:
    return "osmem"      # the UI is the subject here; the store's backends have their own tests


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    base = tmp_path_factory.mktemp("evidently")
    with EvidentlyUI(base / "workspace", base / "ui.log", port=free_port(), secret=SECRET) as running:
        yield running


def api(ui: EvidentlyUI, path: str, body=None, method: str | None = None, secret: str | None = None):
    request = urllib.request.Request(ui.url + path, data=None if body is None else json.dumps(body).encode(),
                                     method=method or ("GET" if body is None else "POST"))
    request.add_header("Content-Type", "application/json")
    if secret:
        request.add_header("evidently-secret", secret)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"null")


def monitors(tmp_path, interval: float = 0.3):
    """driver_ranker (binary, with estimation) and trip_duration (regression) of monitors.yaml, on
    their references of `make setup` (drift thresholds and score calibration cached beside them)."""
    return tuple(dataclasses.replace(m, min_rows=200, min_labelled_rows=50)
                 for m in load_monitors(REPO_ROOT / "log_processor/monitors.yaml", interval_override=interval))


def feed(es, variant: str, n: int, seed: int, minutes_ago: tuple[float, float]) -> None:
    start, end = (now() - timedelta(minutes=m) for m in minutes_ago)
    docs = [*synthetic.events(synthetic.chosen_rows(variant, n, seed), start, end, feedback_share=0.6, seed=seed),
            *synthetic.task_events(synthetic.regression_rows(variant, n, seed), "regression", start, end,
                                   feedback_share=0.6, seed=seed)]
    helpers.bulk(es, synthetic.bulk_actions(iter(docs)), refresh=True)


def wait_for(predicate, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} not reached in {timeout:g}s")


def snapshot_count(ui: EvidentlyUI, monitor: str) -> int:
    try:
        return len(api(ui, f"/api/projects/{project_id(monitor)}/snapshots"))
    except urllib.error.HTTPError as exc:
        if exc.code == 404:      # not provisioned yet
            return 0
        raise


def errors(processor: Processor, reason: str) -> float:
    return sum(processor.exporter.registry.get_sample_value("mlmon_snapshot_errors_total",
                                                            {"monitor": m.name, "reason": reason}) or 0
               for m in processor.monitors)


def test_every_provisioned_panel_has_data_after_a_short_story(ui, es, store_url, tmp_path):
    feed(es, "normal", 400, 1, (6, 3))
    settings = ProcessorSettings(store=StoreSettings(url=store_url), write_summaries=False,
                                 evidently_workspace=ui.url, evidently_secret=SECRET, snapshot_interval=0.5)
    proc = Processor(settings, monitors(tmp_path))
    proc.start()
    try:
        wait_for(lambda: all(snapshot_count(ui, m.name) >= 2 for m in proc.monitors), 90, "two normal snapshots")
        feed(es, "drift", 800, 2, (3, 0.5))
        seen = {m.name: snapshot_count(ui, m.name) for m in proc.monitors}
        wait_for(lambda: all(snapshot_count(ui, m.name) >= seen[m.name] + 2 for m in proc.monitors), 60,
                 "two snapshots after the drift")
    finally:
        proc.stop()
    for monitor in proc.monitors:
        pid = project_id(monitor.name)
        assert api(ui, f"/api/projects/{pid}/info")["name"] == monitor.name
        provisioned = DashboardModel.parse_obj(api(ui, f"/api/v2/dashboards/{pid}"))
        assert provisioned == DashboardModel.parse_obj(dashboard(monitor))
        assert [p.title for p in provisioned.panels] == [p.title for p in panels(monitor)]
        plots = [p for p in panels(monitor) if p.series]
        assert len(plots) >= 11 and len(provisioned.panels) == len(plots) + 2     # and two section titles
        for panel in plots:
            batch = api(ui, f"/api/v2/snapshots/{pid}/data_series_batch",
                        {"series_filter": [series_filter(s) for s in panel.series]})
            for i, series in enumerate(panel.series):
                values = [v for s in batch["series"] if s["filter_index"] == i for v in s["values"] if v is not None]
                assert values, f"{monitor.name}: panel {panel.title!r}: no data for {series.family}"
        # the drifted traffic shows as dataset drift on the latest points (the synthetic "normal" traffic
        # is not the real reference's world, so the first points may show drift already)
        share = api(ui, f"/api/v2/snapshots/{pid}/data_series_batch",
                    {"series_filter": [series_filter(Series("mlmon_dataset_drift"))]})
        drift = [v for s in share["series"] for v in s["values"] if v is not None]
        assert len(drift) >= 4 and drift[-1] == 1, drift
        # a point leads to its run's report: a verdict and the table of the values
        last = api(ui, f"/api/projects/{pid}/snapshots")[-1]["id"]
        page = api(ui, f"/api/projects/{pid}/{last}/data")
        assert page["widgets"][0]["params"]["counters"][0]["value"].startswith("dataset drift on ")
        assert len(page["widgets"][1]["params"]["data"]) >= 20
    assert errors(proc, "refused") == errors(proc, "unreachable") == 0


@pytest.mark.parametrize("where", ["down", "refusing"])
def test_a_ui_down_or_refusing_writes_costs_no_cycle_and_is_counted(where, ui, es, store_url, tmp_path):
    feed(es, "normal", 400, 3, (5, 1))
    url, secret = (f"http://127.0.0.1:{free_port()}", SECRET) if where == "down" else (ui.url, "wrong")
    settings = ProcessorSettings(store=StoreSettings(url=store_url), write_summaries=False,
                                 evidently_workspace=url, evidently_secret=secret, snapshot_interval=0.01)
    proc = Processor(settings, monitors(tmp_path, interval=0.2))
    proc.start()
    try:
        reason = "unreachable" if where == "down" else "refused"
        wait_for(lambda: errors(proc, reason) >= 1, 60, f"a {reason} error counted")
        ok_before = {name: proc.exporter.registry.get_sample_value(
            "mlmon_evaluations_total", {"monitor": name, "outcome": "ok"}) for name in proc.runners}
        wait_for(lambda: all(proc.exporter.registry.get_sample_value(
            "mlmon_evaluations_total", {"monitor": name, "outcome": "ok"}) >= ok_before[name] + 3
            for name in proc.runners), 60, "three more good cycles while the UI fails")
    finally:
        proc.stop()
    assert all(r.snapshot().status == "ok" for r in proc.runners.values())
    assert not proc.snapshots.provisioned and proc.snapshots.last_error
    assert len(proc.snapshots.queue) <= proc.snapshots.queue_size
    assert proc.snapshots.queue       # what the cycles offered waits for the UI (the oldest go past queue_size)
    if where == "refusing":
        assert "HTTP 403" in proc.snapshots.last_error


def offers(writer: SnapshotWriter, monitor: str, n: int) -> None:
    """n snapshots a minute apart, each holding one value: its index as the drifted share."""
    for i in range(n):
        writer.offer(monitor, {DRIFTED_SHARE: [((), float(i))]}, 1_700_000_000.0 + 60 * i)


@pytest.mark.parametrize("kind", ["remote", "local"])
def test_retention_keeps_the_newest_snapshots(kind, ui, tmp_path):
    monitor = dataclasses.replace(monitors(tmp_path)[0], name=f"retention_{kind}")
    backend = RemoteUI(ui.url, SECRET, 5.0) if kind == "remote" else LocalWorkspace(str(tmp_path / "ws"))
    counters = SnapshotCounters(CollectorRegistry(), [monitor.name])
    writer = SnapshotWriter(backend, [monitor], counters, interval=60, retention=3)
    writer.provision()
    offers(writer, monitor.name, 5)
    while writer.write_next():
        pass
    pid = project_id(monitor.name)
    kept = backend.list_snapshots(pid)
    assert len(kept) == 3 and list(writer.kept[monitor.name]) == kept
    if kind == "remote":
        values = [s["values"] for s in api(ui, f"/api/v2/snapshots/{pid}/data_series_batch", {"series_filter": [
            {"tags": [], "metadata": {}, "metric": "evidently:metric_v2:mlmon_drifted_features_share",
             "metric_labels": {}}]})["series"]]
        assert values == [[2.0, 3.0, 4.0]]
    # provisioning again changes nothing and sees what is kept
    writer.provision()
    assert len(backend.list_snapshots(pid)) == 3 and len(writer.kept[monitor.name]) == 3
    assert counters.written.labels(monitor.name)._value.get() == 5


def test_snapshot_is_small_scalars_evidently_reads(tmp_path, es, store_url):
    """The snapshot body parses as Evidently's SnapshotModel, holds only finite scalars and stays small."""
    feed(es, "drift", 800, 4, (5, 1))
    settings = ProcessorSettings(store=StoreSettings(url=store_url), write_summaries=False)
    proc = Processor(settings, monitors(tmp_path))
    for runner in proc.runners.values():
        assert runner.run_once() == "ok"
        # what the runner offers (the exporter's samples) is what the window's own samples give
        offered = snapshot_of(runner.monitor, proc.exporter.latest(runner.monitor.name))
        window = runner.fetch_window(time.time())
        evaluation = evaluate(runner.reference(), window.frame, runner.monitor)
        assert set(offered) == set(snapshot_samples(runner.monitor, runner.reference(), window, evaluation))
        body = snapshot_body(runner.monitor.name, offered, time.time())
        model = SnapshotModel.parse_obj(body)
        assert len(model.metric_results) >= 30
        assert all(isinstance(r.value, float) for r in model.metric_results.values())
        assert len(json.dumps(body)) < 30_000
    proc.stop()


@pytest.mark.parametrize("env, message", [
    ({"LOGPROC_EVIDENTLY_WORKSPACE": "/nonexistent/evidently/workspace"}, "/nonexistent/evidently does not exist"),
    ({"LOGPROC_EVIDENTLY_WORKSPACE": "ftp://127.0.0.1:21"}, "must be http:// or https://"),
    ({"LOGPROC_EVIDENTLY_WORKSPACE": "http://127.0.0.1:8001", "LOGPROC_EVIDENTLY_SECRET_FILE": "/nonexistent/secret"},
     "LOGPROC_EVIDENTLY_SECRET_FILE='/nonexistent/secret': No such file or directory"),
    ({"LOGPROC_SNAPSHOT_INTERVAL": "soon"}, "LOGPROC_SNAPSHOT_INTERVAL='soon' is not a number"),
    ({"LOGPROC_SNAPSHOT_RETENTION": "0"}, "LOGPROC_SNAPSHOT_RETENTION='0' must be at least 1"),
])
def test_bad_ui_settings_stop_the_processor_at_start(env, message, monkeypatch, capsys):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert processor_main([]) == 2
    err = capsys.readouterr().err
    assert "bad configuration" in err and message in err


def test_an_empty_secret_file_is_an_error(monkeypatch, capsys, tmp_path):
    (tmp_path / "secret").write_text("\n")
    monkeypatch.setenv("LOGPROC_EVIDENTLY_WORKSPACE", "http://127.0.0.1:8001")
    monkeypatch.setenv("LOGPROC_EVIDENTLY_SECRET_FILE", str(tmp_path / "secret"))
    assert processor_main([]) == 2
    assert "the file is empty" in capsys.readouterr().err


def test_backend_for_picks_by_scheme(tmp_path):
    assert isinstance(backend_for("http://127.0.0.1:1", None, 1.0), RemoteUI)
    assert isinstance(backend_for(str(tmp_path), None, 1.0), LocalWorkspace)


def test_compose_runs_the_pinned_ui_with_its_secret_from_a_file(tmp_path):
    """docker-compose.yml's evidently-ui: the installed evidently's version, telemetry off, the secret read
    from the file `make compose-env` writes (never on the command line), and the processor pointed at it."""
    import importlib.metadata
    import subprocess
    import sys
    import yaml
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())["services"]
    ui_service = compose["evidently-ui"]
    assert ui_service["image"] == f"evidently/evidently-service:{importlib.metadata.version('evidently')}"
    assert ui_service["environment"]["DO_NOT_TRACK"] == "1"
    script = ui_service["command"][0]
    assert "EVIDENTLY_SECRET=" in script and "--secret" not in script
    assert "/run/secrets/evidently/evidently_secret" in script
    assert "./secrets/evidently:/run/secrets/evidently:ro" in ui_service["volumes"]
    assert compose["log_processor"]["environment"]["LOGPROC_EVIDENTLY_WORKSPACE"] == "http://evidently-ui:8000"
    result = subprocess.run([sys.executable, str(REPO_ROOT / "scripts/compose_env.py"), "--output",
                             str(tmp_path / ".env"), "--secrets", str(tmp_path / "secrets")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    secret = (tmp_path / "secrets/evidently/evidently_secret").read_text()
    assert len(secret.strip()) >= 40
    # the entrypoint's check: a missing secret file stops the start, named
    check = subprocess.run(["sh", "-c", script.replace("$$", "$").replace(
        "/run/secrets/evidently/evidently_secret", str(tmp_path / "nope")).replace("exec evidently ui", "exec true")],
        capture_output=True, text=True)
    assert check.returncode == 2 and "missing or empty" in check.stderr


def test_a_ui_that_does_not_answer_is_a_timeout_counted_not_a_wait(tmp_path):
    """A UI that accepts the connection and never answers: each request ends at the timeout, counted as
    `timeout`, and the offers meanwhile only queue (the writer's thread is the one that waits)."""
    import socket
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)          # connections land in the backlog; nothing ever reads them
        monitor = monitors(tmp_path)[0]
        counters = SnapshotCounters(CollectorRegistry(), [monitor.name])
        writer = SnapshotWriter(RemoteUI(f"http://127.0.0.1:{silent.getsockname()[1]}", SECRET, 0.3), [monitor],
                                counters, interval=60, retention=3)
        writer.start()
        try:
            offers(writer, monitor.name, 5)
            wait_for(lambda: counters.errors.labels(monitor.name, "timeout")._value.get() >= 1, 30, "a timeout")
        finally:
            writer.stop()
    assert len(writer.queue) == 5 and not writer.provisioned and "no answer in 0.3s" in writer.last_error
