"""Event sinks: the rotating JSON-lines file, Fluentd against a real forward receiver, and sink selection."""
from __future__ import annotations

import json
import threading

import pytest

from common import schema
from serving.app import create_app
from serving.event_sinks import EventLog, FileSink, FluentdSink, build_sinks, encode_line
from serving.metrics import ServingMetrics
from serving.settings import ServingSettings, parse_sinks
from tests.conftest import free_port
from tests.serving_support import (ForwardReceiver, metric_value, model, online,  # noqa: F401 (fixtures)
                                   serving_world, wait_for)


def feedback(i: int) -> dict:
    return schema.feedback_event(model_name="m", model_version="v", request_id=f"r{i}", trip_completed=i % 2)


def lines_of(*paths) -> list[dict]:
    found = []
    for path in paths:
        if path.exists():
            raw = path.read_bytes()
            assert raw == b"" or raw.endswith(b"\n"), f"{path} ends in half a line"
            found.extend(json.loads(line) for line in raw.decode().splitlines())
    return found


# ---------------------------------------------------------------- file sink

def test_file_sink_writes_one_json_line_per_event(tmp_path):
    path = tmp_path / "events" / "ml-events.jsonl"
    sink = FileSink(path)
    events = [feedback(i) for i in range(5)]
    for event in events:
        assert sink.emit(event) is True
    sink.close()
    assert lines_of(path) == events


def test_file_sink_rotates_by_size_and_keeps_backups(tmp_path):
    path = tmp_path / "ml-events.jsonl"
    line_size = len(encode_line(feedback(0)))
    sink = FileSink(path, max_bytes=line_size * 10, backups=2)
    events = [feedback(i) for i in range(35)]
    for event in events:
        sink.emit(event)
    sink.close()
    rotated = [path.with_name(f"ml-events.jsonl.{i}") for i in (2, 1)]
    assert all(p.exists() for p in rotated)
    assert not path.with_name("ml-events.jsonl.3").exists()  # only `backups` old files are kept
    for p in (*rotated, path):
        assert p.stat().st_size <= line_size * 10
    # Oldest first, .2, .1 and the current file hold the newest events, in order, without gaps.
    kept = [e["request_id"] for e in lines_of(*rotated, path)]
    assert len(kept) >= 25
    assert kept == [f"r{i}" for i in range(35 - len(kept), 35)]


def test_file_sink_lines_stay_whole_under_concurrent_writers(tmp_path):
    path = tmp_path / "ml-events.jsonl"
    sink = FileSink(path, max_bytes=20_000, backups=50)
    other = FileSink(path, max_bytes=20_000, backups=50)  # a second worker process on the same file

    def write(target: FileSink, base: int) -> None:
        for i in range(300):
            target.emit(feedback(base + i))

    threads = [threading.Thread(target=write, args=(s, n * 1000)) for n, s in enumerate([sink, sink, other, other])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sink.close()
    other.close()
    files = sorted(tmp_path.glob("ml-events.jsonl*"))
    ids = [e["request_id"] for e in lines_of(*[f for f in files if not f.name.endswith(".lock")])]
    assert len(ids) == 1200 and len(set(ids)) == 1200


def test_file_sink_failure_is_counted_and_logged_once(tmp_path, caplog):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    sink = FileSink(blocker / "ml-events.jsonl")  # parent is a file: every write fails
    metrics = ServingMetrics()
    log = EventLog([sink], metrics)
    with caplog.at_level("WARNING", logger="serving.events"):
        for i in range(3):
            log.emit(feedback(i))
    text = metrics.render().decode()
    assert metric_value(text, "serving_events_emitted_total", sink="file") == 3
    assert metric_value(text, "serving_events_dropped_total", sink="file") == 3
    assert len([r for r in caplog.records if "dropping events" in r.getMessage()]) == 1


# ---------------------------------------------------------------- fluentd sink

@pytest.fixture
def receiver():
    server = ForwardReceiver()
    yield server
    server.close()


def test_fluentd_sink_delivers_records_to_a_forward_receiver(receiver):
    sink = FluentdSink("127.0.0.1", receiver.port, "ml.events")
    events = [feedback(i) for i in range(20)]
    for event in events:
        assert sink.emit(event) is True
    records = receiver.wait_for_records(20)
    sink.close()
    assert [r[2] for r in records] == events
    assert {r[0] for r in records} == {"ml.events"}
    assert all(r[1] > 1_700_000_000 for r in records)


def test_fluentd_sink_buffers_while_the_receiver_is_down_then_delivers(tmp_path):
    port = free_port()
    sink = FluentdSink("127.0.0.1", port, "ml.events", retry_after=0.05)
    log = EventLog([sink], metrics := ServingMetrics())
    log.emit(feedback(1))
    log.emit(feedback(2))
    receiver = ForwardReceiver(port)
    try:
        wait_for(lambda: log.emit(feedback(3)) or len(receiver.records) >= 3, timeout=10, interval=0.1)
        delivered = [r[2]["request_id"] for r in receiver.records]
        assert delivered[:3] == ["r1", "r2", "r3"]
        assert metric_value(metrics.render().decode(), "serving_events_dropped_total", sink="fluentd") == 0
    finally:
        sink.close()
        receiver.close()


def test_fluentd_unreachable_drops_are_counted_and_logged_once(caplog):
    sink = FluentdSink("127.0.0.1", free_port(), "ml.events", buffer_bytes=2000, retry_after=0.05)
    metrics = ServingMetrics()
    log = EventLog([sink], metrics)
    with caplog.at_level("WARNING", logger="serving.events"):
        for i in range(200):
            log.emit(feedback(i))
        dropped = wait_for(lambda: metric_value(metrics.render().decode(), "serving_events_dropped_total",
                                                sink="fluentd"))
    sink.close(timeout=0.5)
    assert dropped > 0
    assert metric_value(metrics.render().decode(), "serving_events_emitted_total", sink="fluentd") == 200
    assert len([r for r in caplog.records if "dropping events" in r.getMessage()]) == 1


def test_fluentd_full_queue_drops_instead_of_blocking(receiver):
    sink = FluentdSink("127.0.0.1", receiver.port, "ml.events", queue_size=1)
    metrics = ServingMetrics()
    log = EventLog([sink], metrics)
    for i in range(2000):  # far faster than the sender thread; a blocking queue would stall here
        log.emit(feedback(i))
    sink.close()
    text = metrics.render().decode()
    dropped = metric_value(text, "serving_events_dropped_total", sink="fluentd")
    assert dropped > 0
    assert len(receiver.wait_for_records(int(2000 - dropped), timeout=5)) == 2000 - dropped


# ---------------------------------------------------------------- through the app

def test_app_sends_events_to_file_and_fluentd(serving_world, model, online, receiver, tmp_path):
    settings = serving_world.settings.with_(event_sinks=("file", "fluentd"), events_file=tmp_path / "e.jsonl",
                                            fluentd_port=receiver.port)
    app = create_app(settings, model=model, features=online)
    client = app.test_client()
    body = client.post("/predict", json={"request_id": "both", "driver_ids": [1001, 1002]}).get_json()
    client.post("/feedback", json={"request_id": "both", "trip_completed": 1})
    records = receiver.wait_for_records(2)
    app.extensions["serving"].events.close()
    in_file = lines_of(tmp_path / "e.jsonl")
    assert [r[2] for r in records] == in_file
    assert in_file[0]["prediction"]["driver_id"] == body["best_driver_id"]
    assert [e["event"]["dataset"] for e in in_file] == [schema.DATASET_PREDICTION, schema.DATASET_FEEDBACK]


def test_app_answers_when_fluentd_is_unreachable(serving_world, model, online):
    settings = serving_world.settings.with_(event_sinks=("fluentd",), fluentd_port=free_port(),
                                            fluentd_buffer_bytes=1500)
    app = create_app(settings, model=model, features=online)
    client = app.test_client()
    for i in range(30):
        response = client.post("/predict", json={"driver_ids": [1001 + i, 1100 + i]})
        assert response.status_code == 200

    def dropped_metrics() -> str | None:
        text = client.get("/metrics").get_data(as_text=True)
        return text if metric_value(text, "serving_events_dropped_total", sink="fluentd") else None

    text = wait_for(dropped_metrics)
    assert metric_value(text, "serving_requests_total", endpoint="predict", status="200") == 30
    assert metric_value(text, "serving_events_emitted_total", sink="fluentd") == 30
    app.extensions["serving"].events.close()


# ---------------------------------------------------------------- selection and settings

@pytest.mark.parametrize("value, expected", [
    ("file", ("file",)), ("fluentd", ("fluentd",)), ("file,fluentd", ("file", "fluentd")),
    (" fluentd , file ", ("fluentd", "file")), ("none", ()), ("", ()),
])
def test_sink_selection(value, expected):
    assert parse_sinks(value) == expected
    settings = ServingSettings.from_env({"SERVING_EVENT_SINKS": value, "SERVING_VAR_DIR": "/tmp/x"}) if value \
        else ServingSettings(event_sinks=())
    sinks = build_sinks(settings)
    assert tuple(s.name for s in sinks) == expected
    for s in sinks:
        s.close()


def test_unknown_sink_is_a_configuration_error():
    with pytest.raises(ValueError, match="SERVING_EVENT_SINKS.*kafka"):
        ServingSettings.from_env({"SERVING_EVENT_SINKS": "file,kafka"})


def test_bad_number_in_settings_names_the_variable():
    with pytest.raises(ValueError, match="SERVING_PORT"):
        ServingSettings.from_env({"SERVING_PORT": "eighty"})
    with pytest.raises(ValueError, match="SERVING_ACCESS_LOG='maybe': not a yes/no value"):
        ServingSettings.from_env({"SERVING_ACCESS_LOG": "maybe"})


def test_receiver_decodes_forward_and_packed_forward_modes(receiver):
    """The test receiver itself: the two batch modes Fluentd clients may use besides Message mode."""
    import gzip
    import socket

    import msgpack

    event_time = msgpack.ExtType(0, (1_800_000_000).to_bytes(4, "big") + (5).to_bytes(4, "big"))
    forward = ["ml.events", [[1_800_000_000, {"a": 1}], [1_800_000_001, {"a": 2}]]]
    packed = b"".join(msgpack.packb([event_time, {"a": n}]) for n in (3, 4))
    with socket.create_connection(("127.0.0.1", receiver.port)) as conn:
        conn.sendall(msgpack.packb(forward))
        conn.sendall(msgpack.packb(["ml.events", packed]))
        conn.sendall(msgpack.packb(["ml.events", gzip.compress(packed), {"compressed": "gzip", "chunk": "c1"}]))
        ack = msgpack.unpackb(conn.recv(1024), raw=False)
    records = receiver.wait_for_records(6)
    assert [r[2]["a"] for r in records] == [1, 2, 3, 4, 3, 4]
    assert records[2][1] == pytest.approx(1_800_000_000.000000005)
    assert ack == {"ack": "c1"}
