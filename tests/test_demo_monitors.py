"""A third monitor in the monitors file needs no demo code: the stack reads it and hands it to the
log processor, the story reads its verdict and waits for its evaluations and its incident, its table
and its story follow from its task, and the incident rule holds for it as for the others."""
from __future__ import annotations

import copy
import io
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from demo.report import CHANNELS, PhaseResult, StatusWriter, monitor_table, story_failures
from demo.runner import Story
from demo.settings import DemoSettings
from demo.stack import EmbeddedStack
from demo.verdicts import Verdict
from tests.conftest import REPO_ROOT

# A second binary monitor over the ranker's own events (model_name: driver_ranker), on two of its
# three features: what a team adds to watch the drifting rates alone.
THIRD = "ranker_rates"


@pytest.fixture
def monitors_file(tmp_path: Path) -> Path:
    config = yaml.safe_load((REPO_ROOT / "log_processor/monitors.yaml").read_text())
    third = copy.deepcopy(config["monitors"][0])
    third["name"] = THIRD
    third["features"] = {name: spec for name, spec in third["features"].items() if name != "avg_daily_trips"}
    config["monitors"].append(third)
    path = tmp_path / "monitors.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture
def stack(tmp_path: Path, monitors_file: Path) -> EmbeddedStack:
    settings = DemoSettings(monitors_file=monitors_file, state_dir=tmp_path / "state", normal_requests=300,
                            drift_requests=200, eval_interval=1.5)
    settings.state_dir.mkdir()
    return EmbeddedStack(settings)


def test_the_stack_reads_every_monitor_of_the_file_and_gives_each_the_demos_window(stack):
    monitors = stack.monitors()
    assert [(m.name, m.task, m.model_name) for m in monitors] == [
        ("driver_ranker", "binary_classification", "driver_ranker"), ("trip_duration", "regression", "trip_duration"),
        (THIRD, "binary_classification", "driver_ranker")]
    written = yaml.safe_load(stack._monitors_file().read_text())["monitors"]
    assert [m["name"] for m in written] == ["driver_ranker", "trip_duration", THIRD]
    assert {(m["interval"], m["window"]["last"], m["min_rows"]) for m in written} == {("1.5s", 200, 200)}


def test_a_bad_monitors_file_is_refused_before_anything_starts(tmp_path, monitors_file):
    config = yaml.safe_load(monitors_file.read_text())
    config["monitors"][2]["task"] = "ranking"
    monitors_file.write_text(yaml.safe_dump(config, sort_keys=False))
    result = subprocess.run([sys.executable, "-m", "demo", "--once", "--monitors-file", str(monitors_file)],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
                            env={"PATH": "/usr/bin:/bin", "DEMO_LOG_DIR": str(tmp_path / "log"),
                                 "DEMO_STATE_DIR": str(tmp_path / "state")})
    assert result.returncode == 2, result.stderr
    assert f"{monitors_file}:" in result.stderr and "monitors[2].task" in result.stderr
    assert not (tmp_path / "state").exists()


# /metrics of a log processor running the three monitors (the contract of docs/metrics.md)
METRICS = "".join(
    f'mlmon_verdict_available{{monitor="{m}"}} 1.0\n'
    f'mlmon_dataset_drift{{monitor="{m}"}} 1.0\n'
    f'mlmon_feature_drift_detected{{feature="conv_rate",method="ks",monitor="{m}"}} 1.0\n'
    f'mlmon_feature_drift_detected{{feature="acc_rate",method="ks",monitor="{m}"}} 1.0\n'
    f'mlmon_window_rows{{kind="evaluated",monitor="{m}"}} 200.0\n'
    f'mlmon_evaluations_total{{monitor="{m}",outcome="ok"}} {n}.0\n'
    for m, n in (("driver_ranker", 7), ("trip_duration", 6), (THIRD, 5))
) + 'mlmon_regression_quality{metric="mae",monitor="trip_duration"} 8.79\n' \
    'mlmon_classification_quality{metric="accuracy",monitor="ranker_rates"} 0.31\n'


@pytest.fixture
def log_processor():
    """A real HTTP server answering GET /metrics with METRICS."""
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = METRICS.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


class _Sinks:
    """What the mail and chat sinks received, as the story reads it."""

    def __init__(self) -> None:
        self.mail: list[SimpleNamespace] = []
        self.chat: dict[str, list[SimpleNamespace]] = {c: [] for c in CHANNELS if c != "email"}

    def receive(self, monitor: str, status: str, at: float, channels=CHANNELS) -> None:
        tag = "FIRING:1" if status == "firing" else "RESOLVED"
        if "email" in channels:
            self.mail.append(SimpleNamespace(subject=f"[{tag}] DataDriftDetected monitor={monitor}",
                                             path=SimpleNamespace(name=f"{int(at * 1e9)}-1.eml"), body=""))
        for channel, received in self.chat.items():
            if channel in channels:
                received.append(SimpleNamespace(text=f"[{status.upper()}] monitor {monitor}: x", status=status,
                                                body={"commonLabels": {"monitor": monitor}}, received_at=at))


def test_the_story_reads_waits_for_and_tables_a_third_monitor_like_the_others(stack, log_processor):
    monitors = stack.monitors()
    sinks = _Sinks()
    fake = SimpleNamespace(settings=stack.settings, urls=SimpleNamespace(log_processor=log_processor),
                           shipper=SimpleNamespace(stats=SimpleNamespace(
                               snapshot=lambda: {"shipped": 10, "lag_bytes": 0, "store_available": True})),
                           mail=SimpleNamespace(messages=lambda: list(sinks.mail)),
                           notifications=SimpleNamespace(messages=lambda channel: list(sinks.chat[channel])))
    out = io.StringIO()
    story = Story(fake, monitors, StatusWriter(out))

    # its verdict is read with the others', and the status line shows it
    story.refresh()
    assert {m: v.evaluations for m, v in story.verdicts.items()} == {"driver_ranker": 7, "trip_duration": 6, THIRD: 5}
    assert f"| {THIRD}: DRIFT on acc_rate, conv_rate, realized acc 0.310" in out.getvalue()

    # the drift phase waits for its incident too: a firing message on every channel about it
    for monitor in ("driver_ranker", "trip_duration"):
        sinks.receive(monitor, "firing", at=10.0)
    sinks.receive(THIRD, "firing", at=10.0, channels=("email", "slack", "webhook"))
    assert not story._every_incident_opened(started=5.0)
    sinks.receive(THIRD, "firing", at=11.0, channels=("telegram",))
    assert story._every_incident_opened(started=5.0)
    assert story._opened_since(5.0) == ["driver_ranker", "trip_duration", THIRD]   # the recovery waits for 3
    assert story._every_channel_has("firing", 5.0, THIRD) and not story._every_channel_has("resolved", 5.0, THIRD)

    # its table: the columns of its task, its model's requests, its own alerts and messages
    ranker, duration, third = (Verdict(m.name, available=True, dataset_drift=False, rows={"evaluated": 200})
                               for m in monitors)
    traffic = {"ok": 200, "sent": 200, "errors": 0, "planned": 200, "feedback_sent": 400,
               "models": {"driver_ranker": {"ok": 199, "sent": 200}, "trip_duration": {"ok": 200, "sent": 200}}}
    normal = PhaseResult("normal", traffic, {m.name: v for m, v in zip(monitors, (ranker, duration, third))})
    drift = PhaseResult("drift", traffic, dict(story.verdicts), alerts=[("DataDriftDetected", THIRD)],
                        messages=story._messages_since(5.0))
    table = monitor_table([normal, drift], monitors[2]).splitlines()
    assert table[0] == f"{THIRD} (binary_classification):"
    assert [c.strip() for c in table[1].split("|")][:3] == ["phase", "driver_ranker requests ok", "rows evaluated"]
    assert [c.strip() for c in table[4].split("|")] == [
        "drift", "199/200", "200", "yes", "acc_rate, conv_rate", "-", "-", "0.310", "-", "-", "DataDriftDetected",
        "1 (1 firing)", "1 (1 firing)", "1 (1 firing)", "1 (1 firing)"]

    # the incident rule and the drift story hold per monitor, the third included
    shifted = {"conv_rate", "acc_rate"}
    failures = story_failures([normal, drift], monitors, shifted, False, CHANNELS)
    assert [f for f in failures if THIRD in f] == []
    sinks.chat["slack"].append(SimpleNamespace(text=f"monitor {THIRD}: x", status="firing",
                                               body={"commonLabels": {"monitor": THIRD}}, received_at=12.0))
    drift.messages = story._messages_since(5.0)
    assert (f"slack ({THIRD}): drift phase got 2 firing message(s), the one-message-per-incident rule allows 1"
            in story_failures([normal, drift], monitors, shifted, False, CHANNELS))
    drift.verdicts[THIRD] = Verdict(THIRD, available=True, dataset_drift=True, drifted_features=("conv_rate",))
    assert f"{THIRD}: drift phase: shifted feature(s) not flagged: acc_rate" in story_failures(
        [normal, drift], monitors, shifted, False)
