"""The serving API against the real model and the real Feast online store, with the file sink on.

Every kind of bad input has its own test: 4xx JSON naming the field, and an ml.request_error event.
"""
from __future__ import annotations

import json
import shutil
import sqlite3
import uuid

import pandas as pd
import pytest

from common import schema
from serving import data
from serving.app import create_app
from serving.features import OnlineFeatures
from tests.serving_support import metric_value, read_events, model, online, serving_world  # noqa: F401 (fixtures)


@pytest.fixture
def events_file(tmp_path):
    return tmp_path / "events" / "ml-events.jsonl"


@pytest.fixture
def app(serving_world, model, online, events_file):
    settings = serving_world.settings.with_(event_sinks=("file",), events_file=events_file, max_candidates=10,
                                            max_body_bytes=2048)
    app = create_app(settings, model=model, features=online)
    yield app
    app.extensions["serving"].events.close()


@pytest.fixture
def client(app):
    return app.test_client()


def errors_in(path) -> list[dict]:
    return [e for e in read_events(path) if e["event"]["dataset"] == schema.DATASET_REQUEST_ERROR]


def assert_rejected(response, events_file, status: int, error_type: str, field: str) -> dict:
    """The response is a 4xx JSON naming the field, and exactly one request_error event says so."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json
    error = response.get_json()["error"]
    assert (error["type"], error["field"]) == (error_type, field)
    assert error["message"]
    events = errors_in(events_file)
    assert len(events) == 1
    assert events[0]["error"]["type"] == error_type
    assert field in events[0]["error"]["message"]
    return error


# ---------------------------------------------------------------- the happy paths

def test_predict_picks_the_best_scored_candidate(client, model, online, events_file):
    ids = [1001, 1002, 1003, 1004]
    response = client.post("/predict", json={"request_id": "req-1", "driver_ids": ids})
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"request_id", "best_driver_id", "score", "model_version"}
    found = online.get(ids)
    scores = model.score(pd.DataFrame(found.rows))
    assert body["best_driver_id"] == ids[int(scores.argmax())]
    assert body["score"] == pytest.approx(float(scores.max()), abs=1e-6)
    assert body["request_id"] == "req-1" and body["model_version"] == model.version


def test_predict_generates_a_request_id(client):
    first = client.post("/predict", json={"driver_ids": [1001, 1002]}).get_json()["request_id"]
    second = client.post("/predict", json={"driver_ids": [1001, 1002]}).get_json()["request_id"]
    assert first != second
    uuid.UUID(first)


def test_predict_emits_a_prediction_event(client, model, online, events_file):
    body = client.post("/predict", json={"request_id": "req-ev", "driver_ids": [5001, 5002, 5003]}).get_json()
    (event,) = read_events(events_file)
    assert event["event"]["dataset"] == schema.DATASET_PREDICTION
    uuid.UUID(event["event"]["id"])
    assert schema.parse_timestamp(event["@timestamp"])  # parses, UTC
    assert event["@timestamp"].endswith("Z") and len(event["@timestamp"]) == 24
    assert event["service"] == {"name": "serving"}
    assert event["model"] == {"name": model.name, "version": model.version}
    assert event["request_id"] == "req-ev"
    chosen = online.get([body["best_driver_id"]]).rows[0]
    assert event["features"] == chosen
    assert event["prediction"]["driver_id"] == body["best_driver_id"]
    assert event["prediction"]["score"] == pytest.approx(body["score"], abs=1e-6)
    assert event["prediction"]["label"] == int(body["score"] >= 0.5)
    assert event["latency_ms"] > 0


def test_feedback_is_accepted_and_recorded(client, model, events_file):
    response = client.post("/feedback", json={"request_id": "req-1", "trip_completed": 1})
    assert response.status_code == 202
    assert response.get_json() == {"request_id": "req-1", "status": "accepted"}
    (event,) = read_events(events_file)
    assert event["event"]["dataset"] == schema.DATASET_FEEDBACK
    assert event["request_id"] == "req-1" and event["target"] == {"trip_completed": 1}
    assert event["model"]["version"] == model.version


def test_healthz(client, model):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.get_json()
    assert body.pop("models")[0] == {"name": model.name, "version": model.version}   # test_serving_duration.py
    assert body == {"status": "ok", "model": {"name": model.name, "version": model.version},
                    "event_sinks": ["file"]}


def test_metrics_count_requests_predictions_and_events(client, model):
    client.post("/predict", json={"driver_ids": [1001, 1002]})
    client.post("/predict", json={"driver_ids": [1001, 42]})
    client.post("/feedback", json={"request_id": "x", "trip_completed": 0})
    client.get("/healthz")
    response = client.get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    text = response.get_data(as_text=True)
    assert metric_value(text, "serving_requests_total", endpoint="predict", status="200") == 1
    assert metric_value(text, "serving_requests_total", endpoint="predict", status="422") == 1
    assert metric_value(text, "serving_requests_total", endpoint="feedback", status="202") == 1
    assert metric_value(text, "serving_requests_total", endpoint="healthz", status="200") == 1
    assert metric_value(text, "serving_request_duration_seconds_count", endpoint="predict") == 2
    assert sum(metric_value(text, "serving_predictions_total", model_version=model.version, label=label)
               for label in ("0", "1")) == 1
    assert metric_value(text, "serving_events_emitted_total", sink="file") == 3
    assert metric_value(text, "serving_events_dropped_total", sink="file") == 0
    assert metric_value(text, "serving_model_info", model_name=model.name, model_version=model.version) == 1
    client.get("/nope")
    text = client.get("/metrics").get_data(as_text=True)
    assert metric_value(text, "serving_requests_total", endpoint="other", status="404") == 1
    assert metric_value(text, "serving_requests_total", endpoint="metrics", status="200") == 1


def test_replayed_traffic_is_served_for_both_populations(client, serving_world):
    stats = pd.read_parquet(serving_world.settings.driver_stats_path)
    for variant in data.VARIANTS:
        traffic = data.generate_traffic(variant, 5, seed=1, driver_stats=stats)
        for ids in traffic["driver_ids"]:
            response = client.post("/predict", json={"driver_ids": ids})
            assert response.status_code == 200 and response.get_json()["best_driver_id"] in ids


def test_no_sinks_means_no_event_file(serving_world, model, online, tmp_path):
    settings = serving_world.settings.with_(event_sinks=(), events_file=tmp_path / "e.jsonl")
    client = create_app(settings, model=model, features=online).test_client()
    assert client.post("/predict", json={"driver_ids": [1001]}).status_code == 200
    assert not (tmp_path / "e.jsonl").exists()
    assert client.get("/healthz").get_json()["event_sinks"] == []


# ---------------------------------------------------------------- one test per kind of bad input

def test_malformed_json(client, events_file):
    response = client.post("/predict", data=b'{"driver_ids": [1001,', content_type="application/json")
    assert_rejected(response, events_file, 400, "malformed_json", "body")


def test_body_that_is_not_utf8(client, events_file):
    response = client.post("/predict", data=b'\xff\xfe{}', content_type="application/json")
    assert_rejected(response, events_file, 400, "malformed_json", "body")


def test_nan_is_not_json(client, events_file):
    response = client.post("/predict", data=b'{"driver_ids": [NaN]}', content_type="application/json")
    assert_rejected(response, events_file, 400, "malformed_json", "body")


def test_wrong_content_type(client, events_file):
    response = client.post("/predict", data=json.dumps({"driver_ids": [1001]}), content_type="text/plain")
    assert_rejected(response, events_file, 415, "unsupported_media_type", "Content-Type")


def test_missing_content_type(client, events_file):
    response = client.post("/predict", data=json.dumps({"driver_ids": [1001]}))
    assert_rejected(response, events_file, 415, "unsupported_media_type", "Content-Type")


def test_body_is_not_an_object(client, events_file):
    response = client.post("/predict", json=[1001, 1002])
    assert_rejected(response, events_file, 400, "invalid_body", "body")


def test_missing_driver_ids(client, events_file):
    response = client.post("/predict", json={"request_id": "r-missing"})
    assert_rejected(response, events_file, 400, "missing_field", "driver_ids")
    assert errors_in(events_file)[0]["request_id"] == "r-missing"


def test_driver_ids_of_the_wrong_type(client, events_file):
    response = client.post("/predict", json={"driver_ids": "1001,1002"})
    assert_rejected(response, events_file, 400, "invalid_type", "driver_ids")


@pytest.mark.parametrize("bad", ["1001", 1001.5, True, None, [1001]])
def test_driver_id_item_of_the_wrong_type(client, events_file, bad):
    response = client.post("/predict", json={"driver_ids": [1002, bad]})
    assert_rejected(response, events_file, 400, "invalid_type", "driver_ids[1]")


@pytest.mark.parametrize("bad", [12, ["a"], {"id": 1}])
def test_request_id_of_the_wrong_type(client, events_file, bad):
    response = client.post("/predict", json={"request_id": bad, "driver_ids": [1001]})
    assert_rejected(response, events_file, 400, "invalid_type", "request_id")


def test_request_id_with_bad_characters(client, events_file):
    response = client.post("/predict", json={"request_id": "a b\n", "driver_ids": [1001]})
    assert_rejected(response, events_file, 400, "invalid_value", "request_id")


def test_unknown_field(client, events_file):
    response = client.post("/predict", json={"driver_ids": [1001], "drivers": [1002]})
    assert_rejected(response, events_file, 400, "unknown_field", "drivers")


def test_empty_driver_list(client, events_file):
    response = client.post("/predict", json={"driver_ids": []})
    assert_rejected(response, events_file, 400, "empty_list", "driver_ids")


def test_oversized_driver_list(client, events_file):
    response = client.post("/predict", json={"driver_ids": list(range(1001, 1012))})  # max_candidates=10
    error = assert_rejected(response, events_file, 400, "too_many_items", "driver_ids")
    assert "11" in error["message"] and "10" in error["message"]


def test_duplicate_driver_ids(client, events_file):
    response = client.post("/predict", json={"driver_ids": [1001, 1001]})
    assert_rejected(response, events_file, 400, "duplicate_items", "driver_ids")


def test_unknown_driver_ids(client, events_file):
    response = client.post("/predict", json={"request_id": "r-unknown", "driver_ids": [1001, 42, 77]})
    error = assert_rejected(response, events_file, 422, "unknown_driver", "driver_ids")
    assert error["unknown_driver_ids"] == [42, 77]
    assert response.get_json()["request_id"] == "r-unknown"
    assert errors_in(events_file)[0]["request_id"] == "r-unknown"


def test_oversized_body(client, events_file):
    body = json.dumps({"driver_ids": [1001], "request_id": "x" * 4000})  # max_body_bytes=2048
    response = client.post("/predict", data=body, content_type="application/json")
    assert_rejected(response, events_file, 413, "body_too_large", "body")


def test_feedback_missing_request_id(client, events_file):
    response = client.post("/feedback", json={"trip_completed": 1})
    assert_rejected(response, events_file, 400, "missing_field", "request_id")


def test_feedback_missing_trip_completed(client, events_file):
    response = client.post("/feedback", json={"request_id": "r1"})
    assert_rejected(response, events_file, 400, "missing_field", "trip_completed")


@pytest.mark.parametrize("bad", ["1", True, 1.0, None])
def test_feedback_trip_completed_of_the_wrong_type(client, events_file, bad):
    response = client.post("/feedback", json={"request_id": "r1", "trip_completed": bad})
    assert_rejected(response, events_file, 400, "invalid_type", "trip_completed")


def test_feedback_trip_completed_out_of_range(client, events_file):
    response = client.post("/feedback", json={"request_id": "r1", "trip_completed": 2})
    assert_rejected(response, events_file, 400, "invalid_value", "trip_completed")


def test_feedback_malformed_json(client, events_file):
    response = client.post("/feedback", data=b"trip_completed=1", content_type="application/json")
    assert_rejected(response, events_file, 400, "malformed_json", "body")


def test_unknown_path(client, events_file):
    assert_rejected(client.get("/predictions"), events_file, 404, "not_found", "path")


def test_wrong_method(client, events_file):
    assert_rejected(client.get("/predict"), events_file, 405, "method_not_allowed", "method")


def test_feature_store_failure_is_a_503_not_a_crash(serving_world, model, events_file, tmp_path):
    feast_dir = tmp_path / "feast"
    shutil.copytree(serving_world.settings.path("feast"), feast_dir)
    broken = OnlineFeatures.open(feast_dir)
    with sqlite3.connect(feast_dir / "online_store.db") as db:  # the store loses its table under us
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            db.execute(f'DROP TABLE "{table}"')
    settings = serving_world.settings.with_(event_sinks=("file",), events_file=events_file)
    client = create_app(settings, model=model, features=broken).test_client()
    response = client.post("/predict", json={"driver_ids": [1001]})
    assert_rejected(response, events_file, 503, "feature_store_unavailable", "driver_ids")
    assert client.get("/healthz").status_code == 200


# ---------------------------------------------------------------- numbers at the edges
# What each numeric edge case gets; none of them may reach the feature store and come back as a 5xx.
# JSON bodies are written out by hand so the exact literal (exponent, -0, 24 digits) is what is sent.

def post_raw(client, path: str, raw: str):
    return client.post(path, data=raw, content_type="application/json")


@pytest.mark.parametrize("literal", ["99999999999999999999999", str(2**63), str(-(2**63) - 1)])
def test_driver_id_beyond_64_bits_is_a_400_out_of_range(client, events_file, literal):
    response = post_raw(client, "/predict", f'{{"driver_ids": [{literal}]}}')
    error = assert_rejected(response, events_file, 400, "out_of_range", "driver_ids[0]")
    assert "64-bit" in error["message"]


def test_out_of_range_names_the_position_of_the_item(client, events_file):
    response = post_raw(client, "/predict", '{"driver_ids": [1001, 1002, 99999999999999999999999]}')
    assert_rejected(response, events_file, 400, "out_of_range", "driver_ids[2]")


@pytest.mark.parametrize("literal", [str(2**63 - 1), str(-(2**63))])
def test_the_64_bit_limits_themselves_are_looked_up(client, events_file, literal):
    """The largest and smallest ids the store can hold are valid requests: unknown drivers, 422."""
    response = post_raw(client, "/predict", f'{{"driver_ids": [{literal}]}}')
    error = assert_rejected(response, events_file, 422, "unknown_driver", "driver_ids")
    assert error["unknown_driver_ids"] == [int(literal)]


def test_negative_zero_driver_id_is_the_integer_zero(client, events_file):
    response = post_raw(client, "/predict", '{"driver_ids": [-0]}')
    error = assert_rejected(response, events_file, 422, "unknown_driver", "driver_ids")
    assert error["unknown_driver_ids"] == [0]


@pytest.mark.parametrize("literal", ["1e3", "1E+3", "1001.0", "-0.0", "1e400", "-1e400"])
def test_driver_id_written_as_a_json_number_with_a_fraction_or_exponent_is_not_an_integer(
        client, events_file, literal):
    response = post_raw(client, "/predict", f'{{"driver_ids": [{literal}]}}')
    error = assert_rejected(response, events_file, 400, "invalid_type", "driver_ids[0]")
    assert "got number" in error["message"]


def test_an_integer_longer_than_the_json_parser_accepts_is_malformed_json(serving_world, model, online,
                                                                          events_file):
    settings = serving_world.settings.with_(event_sinks=("file",), events_file=events_file,
                                            max_body_bytes=65536)
    app = create_app(settings, model=model, features=online)
    try:
        response = post_raw(app.test_client(), "/predict", '{"driver_ids": [' + "9" * 5000 + "]}")
        assert_rejected(response, events_file, 400, "malformed_json", "body")
    finally:
        app.extensions["serving"].events.close()


@pytest.mark.parametrize("literal, error_type", [
    ("99999999999999999999999", "invalid_value"), ("-1", "invalid_value"),
    ("1e0", "invalid_type"), ("0.0", "invalid_type"), ("1e400", "invalid_type"), ("false", "invalid_type"),
])
def test_feedback_trip_completed_numeric_edges(client, events_file, literal, error_type):
    response = post_raw(client, "/feedback", f'{{"request_id": "r1", "trip_completed": {literal}}}')
    assert_rejected(response, events_file, 400, error_type, "trip_completed")


def test_feedback_negative_zero_is_the_label_0(client, events_file):
    response = post_raw(client, "/feedback", '{"request_id": "r1", "trip_completed": -0}')
    assert response.status_code == 202
    assert read_events(events_file)[0]["target"] == {"trip_completed": 0}


# ---------------------------------------------------------------- the request's city (a segment field)

def test_predict_logs_the_requests_city_as_context_city(client, events_file):
    response = client.post("/predict", json={"request_id": "req-city", "driver_ids": [1001, 1002],
                                             "city": "Springfield"})
    assert response.status_code == 200
    (event,) = read_events(events_file)
    assert event["context"] == {"city": "Springfield"}


@pytest.mark.parametrize("body", [{}, {"city": None}])
def test_predict_without_a_city_logs_no_context(client, events_file, body):
    response = client.post("/predict", json={"driver_ids": [1001, 1002], **body})
    assert response.status_code == 200
    (event,) = read_events(events_file)
    assert "context" not in event  # the processor counts such a row under `unknown`


@pytest.mark.parametrize("bad", [12, True, ["Springfield"], {"name": "Springfield"}])
def test_city_of_the_wrong_type(client, events_file, bad):
    response = client.post("/predict", json={"driver_ids": [1001], "city": bad})
    assert_rejected(response, events_file, 400, "invalid_type", "city")
    assert not [e for e in read_events(events_file) if e["event"]["dataset"] == schema.DATASET_PREDICTION]


@pytest.mark.parametrize("bad", ["", "   ", "x" * 65])
def test_empty_or_overlong_city(client, events_file, bad):
    response = client.post("/predict", json={"driver_ids": [1001], "city": bad})
    error = assert_rejected(response, events_file, 400, "invalid_value", "city")
    if len(bad) > 64:
        assert "65" in error["message"] and "64" in error["message"]


def test_a_city_of_64_characters_is_accepted(client, events_file):
    response = client.post("/predict", json={"driver_ids": [1001], "city": "é" * 64})
    assert response.status_code == 200
    (event,) = read_events(events_file)
    assert event["context"]["city"] == "é" * 64
