"""The second model, trip_duration: /predict/duration and /feedback/duration against the real regressor
and the real Feast online store, with the file sink on; each bad input is a 4xx naming the field."""
from __future__ import annotations

import json
import time
import uuid

import pandas as pd
import pytest

from common import schema
from serving import data
from serving.app import create_app
from tests.conftest import free_port
from tests.serving_support import (duration_model, metric_value, read_events, model, online,  # noqa: F401 (fixtures)
                                   serving_world, wait_for)


@pytest.fixture
def events_file(tmp_path):
    return tmp_path / "events" / "ml-events.jsonl"


@pytest.fixture
def app(serving_world, model, duration_model, online, events_file):
    settings = serving_world.settings.with_(event_sinks=("file",), events_file=events_file, max_body_bytes=2048)
    app = create_app(settings, model=model, features=online, duration_model=duration_model)
    yield app
    app.extensions["serving"].events.close()


@pytest.fixture
def client(app):
    return app.test_client()


def post_raw(client, path: str, raw: str):
    return client.post(path, data=raw, content_type="application/json")


def assert_rejected(response, events_file, status: int, error_type: str, field: str) -> dict:
    """A 4xx JSON naming the field, and one ml.request_error event of model trip_duration saying so."""
    assert response.status_code == status, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert (error["type"], error["field"]) == (error_type, field)
    assert error["message"]
    (event,) = [e for e in read_events(events_file) if e["event"]["dataset"] == schema.DATASET_REQUEST_ERROR]
    assert event["model"]["name"] == "trip_duration"
    assert event["error"]["type"] == error_type and field in event["error"]["message"]
    return error


# ---------------------------------------------------------------- the happy paths

def test_predict_duration_answers_the_models_minutes_for_the_drivers_online_features(
        client, duration_model, online):
    response = client.post("/predict/duration", json={"request_id": "dur-1", "driver_id": 1007})
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"request_id", "driver_id", "duration_minutes", "model_version"}
    expected = float(duration_model.predict(pd.DataFrame(online.get([1007]).rows))[0])
    assert body["duration_minutes"] == pytest.approx(expected, abs=1e-4)
    assert 5 < body["duration_minutes"] < 60
    assert (body["request_id"], body["driver_id"], body["model_version"]) == ("dur-1", 1007, duration_model.version)


def test_predict_duration_generates_a_request_id(client):
    body = client.post("/predict/duration", json={"driver_id": 1001}).get_json()
    uuid.UUID(body["request_id"])


def test_predict_duration_emits_a_regression_prediction_event(client, duration_model, online, events_file):
    body = client.post("/predict/duration", json={"request_id": "dur-ev", "driver_id": 5003}).get_json()
    (event,) = read_events(events_file)
    assert event["event"]["dataset"] == schema.DATASET_PREDICTION
    assert event["model"] == {"name": "trip_duration", "version": duration_model.version}
    assert event["request_id"] == "dur-ev"
    assert event["features"] == online.get([5003]).rows[0]
    assert event["prediction"] == {"driver_id": 5003, "value": pytest.approx(body["duration_minutes"], abs=1e-4)}
    assert isinstance(event["prediction"]["value"], float) and event["latency_ms"] > 0
    assert schema.get_path(event, schema.REGRESSION_PREDICTION_FIELD) == event["prediction"]["value"]


@pytest.mark.parametrize("literal, stored", [("17.25", 17.25), ("17", 17.0), ("0", 0.0), ("-0.0", 0.0),
                                             ("1e1", 10.0)])
def test_feedback_duration_records_the_realized_minutes_as_a_float(client, duration_model, events_file,
                                                                   literal, stored):
    response = post_raw(client, "/feedback/duration", f'{{"request_id": "dur-1", "duration_minutes": {literal}}}')
    assert response.status_code == 202
    assert response.get_json() == {"request_id": "dur-1", "status": "accepted"}
    (event,) = read_events(events_file)
    assert event["event"]["dataset"] == schema.DATASET_FEEDBACK
    assert event["model"] == {"name": "trip_duration", "version": duration_model.version}
    assert event["target"] == {"duration_minutes": stored} and isinstance(event["target"]["duration_minutes"], float)
    assert schema.get_path(event, schema.REGRESSION_TARGET_FIELD) == stored


def test_both_models_are_reported_and_counted(client, model, duration_model):
    before = time.time()
    health = client.get("/healthz").get_json()
    assert health["model"] == {"name": model.name, "version": model.version}   # unchanged for the ranker
    assert health["models"] == [{"name": "driver_ranker", "version": model.version},
                                {"name": "trip_duration", "version": duration_model.version}]
    client.post("/predict/duration", json={"driver_id": 1001})
    client.post("/predict/duration", json={"driver_id": 1002})
    client.post("/predict/duration", json={"driver_id": 42})
    client.post("/feedback/duration", json={"request_id": "x", "duration_minutes": 12.5})
    client.post("/predict", json={"driver_ids": [1001, 1002]})
    text = client.get("/metrics").get_data(as_text=True)
    assert metric_value(text, "serving_requests_total", endpoint="predict_duration", status="200") == 2
    assert metric_value(text, "serving_requests_total", endpoint="predict_duration", status="422") == 1
    assert metric_value(text, "serving_requests_total", endpoint="feedback_duration", status="202") == 1
    assert metric_value(text, "serving_request_duration_seconds_count", endpoint="predict_duration") == 3
    assert metric_value(text, "serving_model_predictions_total", model_name="trip_duration",
                        model_version=duration_model.version) == 2
    assert metric_value(text, "serving_model_predictions_total", model_name="driver_ranker",
                        model_version=model.version) == 1
    assert metric_value(text, "serving_predicted_duration_minutes_count", model_version=duration_model.version) == 2
    for m in (model, duration_model):
        assert metric_value(text, "serving_model_info", model_name=m.name, model_version=m.version) == 1
        # when each model last served (EventsNotArriving compares it with the newest stored prediction)
        assert before <= metric_value(text, "serving_model_last_prediction_timestamp_seconds", model_name=m.name) \
            <= time.time()


def test_duration_traffic_of_both_populations_is_served_and_drift_predicts_shorter_trips(client, serving_world):
    """The drift drivers' lower rates move the prediction down a little (data.py's docstring: ~1.8 min)."""
    stats = pd.read_parquet(serving_world.settings.driver_stats_path)
    means = {}
    for variant in data.VARIANTS:
        traffic = data.generate_duration_traffic(variant, 40, seed=3, driver_stats=stats)
        answers = [client.post("/predict/duration", json={"driver_id": int(i)}) for i in traffic["driver_id"]]
        assert all(a.status_code == 200 for a in answers)
        means[variant] = sum(a.get_json()["duration_minutes"] for a in answers) / len(answers)
    assert 0.5 < means["normal"] - means["drift"] < 4


def test_a_down_logging_backend_never_blocks_a_duration_prediction(serving_world, model, duration_model, online):
    settings = serving_world.settings.with_(event_sinks=("fluentd",), fluentd_port=free_port(),
                                            fluentd_buffer_bytes=1500)
    app = create_app(settings, model=model, features=online, duration_model=duration_model)
    client = app.test_client()
    started = time.perf_counter()
    for i in range(30):
        assert client.post("/predict/duration", json={"driver_id": 1001 + i}).status_code == 200
        assert client.post("/feedback/duration", json={"request_id": f"r{i}", "duration_minutes": 20}).status_code == 202
    assert time.perf_counter() - started < 10

    def dropped() -> bool:
        text = client.get("/metrics").get_data(as_text=True)
        return metric_value(text, "serving_events_dropped_total", sink="fluentd") > 0

    wait_for(dropped)
    app.extensions["serving"].events.close()


# ---------------------------------------------------------------- bad input: /predict/duration

def test_predict_duration_missing_driver_id(client, events_file):
    response = client.post("/predict/duration", json={"request_id": "r-missing"})
    assert_rejected(response, events_file, 400, "missing_field", "driver_id")


@pytest.mark.parametrize("bad", ["1001", 1001.5, True, None, [1001], {"id": 1001}])
def test_predict_duration_driver_id_of_the_wrong_type(client, events_file, bad):
    response = client.post("/predict/duration", json={"driver_id": bad})
    assert_rejected(response, events_file, 400, "invalid_type", "driver_id")


@pytest.mark.parametrize("literal", ["1e3", "1001.0", "NaN", "Infinity"])
def test_predict_duration_driver_id_literals_that_are_not_integers(client, events_file, literal):
    response = post_raw(client, "/predict/duration", f'{{"driver_id": {literal}}}')
    error_type, field = ("malformed_json", "body") if literal[0].isalpha() else ("invalid_type", "driver_id")
    assert_rejected(response, events_file, 400, error_type, field)


@pytest.mark.parametrize("literal", ["99999999999999999999999", str(2**63), str(-(2**63) - 1)])
def test_predict_duration_driver_id_beyond_64_bits(client, events_file, literal):
    response = post_raw(client, "/predict/duration", f'{{"driver_id": {literal}}}')
    assert "64-bit" in assert_rejected(response, events_file, 400, "out_of_range", "driver_id")["message"]


def test_predict_duration_unknown_driver_is_a_422_like_predict(client, events_file):
    response = client.post("/predict/duration", json={"request_id": "r-unknown", "driver_id": 42})
    error = assert_rejected(response, events_file, 422, "unknown_driver", "driver_id")
    assert error["unknown_driver_ids"] == [42] and response.get_json()["request_id"] == "r-unknown"


def test_predict_duration_unknown_field_and_the_rankers_field(client, events_file):
    response = client.post("/predict/duration", json={"driver_ids": [1001]})
    assert_rejected(response, events_file, 400, "unknown_field", "driver_ids")


def test_predict_duration_wrong_content_type(client, events_file):
    response = client.post("/predict/duration", data=json.dumps({"driver_id": 1001}), content_type="text/plain")
    assert_rejected(response, events_file, 415, "unsupported_media_type", "Content-Type")


# ---------------------------------------------------------------- bad input: /feedback/duration

def test_feedback_duration_missing_fields(client, events_file):
    assert_rejected(client.post("/feedback/duration", json={"request_id": "r1"}), events_file,
                    400, "missing_field", "duration_minutes")


def test_feedback_duration_missing_request_id(client, events_file):
    assert_rejected(client.post("/feedback/duration", json={"duration_minutes": 12.0}), events_file,
                    400, "missing_field", "request_id")


@pytest.mark.parametrize("bad", ["12", "NaN", True, False, None, [12.0], {"minutes": 12}])
def test_feedback_duration_of_the_wrong_type(client, events_file, bad):
    response = client.post("/feedback/duration", json={"request_id": "r1", "duration_minutes": bad})
    assert "must be a number" in assert_rejected(response, events_file, 400, "invalid_type", "duration_minutes")["message"]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "9" * 400])
def test_feedback_duration_that_is_not_finite_names_the_field(client, events_file, literal):
    """NaN and Infinity are not JSON; on this endpoint they still get the field's name, not 'body'."""
    response = post_raw(client, "/feedback/duration", f'{{"request_id": "r1", "duration_minutes": {literal}}}')
    assert "finite" in assert_rejected(response, events_file, 400, "invalid_value", "duration_minutes")["message"]


@pytest.mark.parametrize("literal", ["-1", "-0.001", "-1e-9"])
def test_feedback_duration_below_zero(client, events_file, literal):
    response = post_raw(client, "/feedback/duration", f'{{"request_id": "r1", "duration_minutes": {literal}}}')
    assert ">= 0" in assert_rejected(response, events_file, 400, "invalid_value", "duration_minutes")["message"]


def test_feedback_duration_request_id_that_is_nan_names_request_id(client, events_file):
    response = post_raw(client, "/feedback/duration", '{"request_id": NaN, "duration_minutes": 3}')
    assert_rejected(response, events_file, 400, "invalid_type", "request_id")


def test_feedback_duration_unknown_field(client, events_file):
    response = client.post("/feedback/duration", json={"request_id": "r1", "duration_minutes": 3, "trip_completed": 1})
    assert_rejected(response, events_file, 400, "unknown_field", "trip_completed")


def test_the_rankers_feedback_still_refuses_nan_as_malformed_json(client, events_file):
    response = post_raw(client, "/feedback", '{"request_id": "r1", "trip_completed": NaN}')
    assert response.status_code == 400 and response.get_json()["error"]["field"] == "body"


# ---------------------------------------------------------------- settings and start-up

def test_the_duration_model_dir_follows_the_model_dir_unless_set():
    from pathlib import Path

    from serving.settings import ServingSettings

    assert ServingSettings(var_dir=Path("/v")).path("duration_model") == Path("/v/model/trip_duration")
    assert ServingSettings.from_env({"SERVING_MODEL_DIR": "/m"}).path("duration_model") == Path("/m/trip_duration")
    assert ServingSettings.from_env({"SERVING_DURATION_MODEL_DIR": "/d"}).path("duration_model") == Path("/d")


def test_serving_does_not_start_without_the_duration_model(serving_world, model, online, tmp_path):
    """A missing second model is a start-up error that says what to run, not a 500 per request."""
    from serving.model import ModelNotFound

    settings = serving_world.settings.with_(duration_model_dir=tmp_path / "nothing")
    with pytest.raises(ModelNotFound, match="serving.bootstrap"):
        create_app(settings, model=model, features=online)


# ---------------------------------------------------------------- the events in the store (osmem and OpenSearch)

def test_trip_duration_events_are_mapped_by_the_template_and_a_string_target_is_rejected(es):
    """The index template maps the regression fields as floats, so the log processor reads numbers."""
    from elasticsearch import helpers

    features = {"conv_rate": 0.5, "acc_rate": 0.7, "avg_daily_trips": 300}
    prediction = schema.regression_prediction_event(model_name="trip_duration", model_version="1", request_id="d1",
                                                    features=features, driver_id=1001, value=21.5, latency_ms=1.0)
    feedback = schema.regression_feedback_event(model_name="trip_duration", model_version="1", request_id="d1",
                                                duration_minutes=19)
    bad = schema.regression_feedback_event(model_name="trip_duration", model_version="1", request_id="d2",
                                           duration_minutes=0)
    bad["target"]["duration_minutes"] = "twenty"
    index = schema.daily_index(schema.EVENTS_INDEX_PREFIX, prediction["@timestamp"])
    actions = [{"_op_type": "create", "_index": index, "_id": e["event"]["id"], "_source": e}
               for e in (prediction, feedback, bad)]
    ok, errors = helpers.bulk(es, actions, raise_on_error=False, refresh=True)
    assert ok == 2 and [e["create"]["_id"] for e in errors] == [bad["event"]["id"]]
    mapping = es.indices.get_mapping(index=index)[index]["mappings"]["properties"]
    assert mapping["prediction"]["properties"]["value"]["type"] == "float"
    assert mapping["target"]["properties"]["duration_minutes"]["type"] == "float"
    assert "score" in mapping["prediction"]["properties"]     # the ranker's fields stay as they were
    hits = es.search(index=schema.EVENTS_INDEX_PATTERN, query={"term": {"model.name": "trip_duration"}})["hits"]
    assert hits["total"]["value"] == 2
    assert es.search(index=schema.EVENTS_INDEX_PATTERN,
                     query={"range": {"target.duration_minutes": {"gte": 18, "lte": 20}}})["hits"]["total"]["value"] == 1
    # the multi-class fields of the contract (tests and benchmarks emit them): keyword classes, float scores
    multiclass = schema.prediction_event(model_name="trip_type", model_version="1", request_id="m1", features=features,
                                         driver_id=1001, score=0.5, label=1, latency_ms=1.0)
    multiclass["prediction"] = {"driver_id": 1001, "class": "long", "class_scores": [0.1, 0.2, 0.7]}
    helpers.bulk(es, [{"_op_type": "create", "_index": index, "_id": multiclass["event"]["id"], "_source": multiclass}],
                 refresh=True)
    properties = es.indices.get_mapping(index=index)[index]["mappings"]["properties"]
    assert properties["prediction"]["properties"]["class"]["type"] == "keyword"
    assert properties["prediction"]["properties"]["class_scores"]["type"] == "float"
    assert properties["target"]["properties"]["class"]["type"] == "keyword"
    assert schema.get_path(multiclass, schema.MULTICLASS_SCORES_FIELD) == [0.1, 0.2, 0.7]
