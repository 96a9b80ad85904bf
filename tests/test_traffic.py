"""The traffic generator: delay queue, pacing, settings; the replay itself against the real serving app."""
from __future__ import annotations

import threading
import time

import pytest

from demo.delay_queue import DelayQueue
from demo.traffic import SettingsError, TrafficSettings, feedback_outcome


def test_delay_queue_runs_callbacks_in_due_order_not_submission_order():
    queue = DelayQueue()
    ran: list[tuple[str, float]] = []
    start = time.monotonic()
    queue.call_later(0.15, lambda: ran.append(("late", time.monotonic() - start)))
    queue.call_later(0.05, lambda: ran.append(("early", time.monotonic() - start)))
    queue.call_later(0.05, lambda: ran.append(("early-2", time.monotonic() - start)))
    assert queue.pending() == 3
    assert queue.join(timeout=5)
    queue.close()
    assert [name for name, _ in ran] == ["early", "early-2", "late"]
    assert ran[0][1] >= 0.05 and ran[2][1] >= 0.15


def test_delay_queue_uses_one_thread_for_many_callbacks():
    queue = DelayQueue()
    before = threading.active_count()
    done = []
    for i in range(500):
        queue.call_later(0.01 + i / 100_000, lambda i=i: done.append(i))
    assert threading.active_count() == before
    assert queue.join(timeout=5)
    queue.close()
    assert done == list(range(500))


def test_a_failing_callback_does_not_stop_the_queue():
    queue = DelayQueue()
    done = []
    queue.call_later(0, lambda: 1 / 0)
    queue.call_later(0.01, lambda: done.append(1))
    assert queue.join(timeout=5)
    queue.close()
    assert done == [1]


def test_close_discards_callbacks_not_yet_due():
    queue = DelayQueue()
    done = []
    queue.call_later(10, lambda: done.append(1))
    queue.close()
    assert done == [] and queue.pending() == 0
    with pytest.raises(RuntimeError, match="closed"):
        queue.call_later(0, lambda: None)


def test_feedback_is_the_outcome_of_the_chosen_driver():
    assert feedback_outcome([11, 12, 13], [0, 1, 0], 12) == 1
    assert feedback_outcome([11, 12, 13], [0, 1, 0], 13) == 0
    assert feedback_outcome([11, 12, 13], [0, 1, 0], 99) is None


def test_settings_from_env():
    s = TrafficSettings.from_env({"TRAFFIC_BASE_URL": "http://127.0.0.1:1/", "TRAFFIC_RATE": "50",
                                  "TRAFFIC_NORMAL_REQUESTS": "10", "TRAFFIC_DRIFT_REQUESTS": "0",
                                  "TRAFFIC_FEEDBACK_DELAY": "0.5"})
    assert (s.base_url, s.rate, s.normal_requests, s.drift_requests, s.feedback_delay) == \
        ("http://127.0.0.1:1", 50.0, 10, 0, 0.5)
    assert TrafficSettings.from_env({}) == TrafficSettings()


@pytest.mark.parametrize("env, message", [
    ({"TRAFFIC_RATE": "fast"}, "TRAFFIC_RATE='fast' is not a number"),
    ({"TRAFFIC_RATE": "0"}, "TRAFFIC_RATE='0' must be at least 0.1"),
    ({"TRAFFIC_NORMAL_REQUESTS": "1.5"}, "TRAFFIC_NORMAL_REQUESTS='1.5' is not an integer"),
    ({"TRAFFIC_CONCURRENCY": "0"}, "TRAFFIC_CONCURRENCY='0' must be at least 1"),
])
def test_bad_settings_name_the_variable(env, message):
    with pytest.raises(SettingsError, match=message):
        TrafficSettings.from_env(env)


# --- against the real serving app (Flask factory + Feast online store + model from var/) ------------

import json  # noqa: E402
from pathlib import Path  # noqa: E402

from werkzeug.serving import make_server  # noqa: E402

from demo.traffic import TrafficGenerator  # noqa: E402
from tests.conftest import REPO_ROOT  # noqa: E402

VAR = REPO_ROOT / "var"


@pytest.fixture(scope="module")
def serving(tmp_path_factory):
    """The real serving app in a thread; its events go to a file of its own."""
    if not (VAR / "model/manifest.json").exists() or not (VAR / "feast").is_dir():
        pytest.skip("needs data, model and Feast features: run `make setup` (make test does)")
    from serving.app import create_app
    from serving.settings import ServingSettings

    events_file = tmp_path_factory.mktemp("serving") / "events.jsonl"
    settings = ServingSettings(event_sinks=("file",), events_file=events_file, access_log=False)
    server = make_server("127.0.0.1", 0, create_app(settings), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", events_file
    server.shutdown()
    thread.join(5)


def read_events(path: Path, request_ids: set[str] | None = None) -> list[dict]:
    events = [json.loads(line) for line in path.read_text().splitlines()]
    return [e for e in events if request_ids is None or e["request_id"] in request_ids]


def test_a_phase_predicts_then_sends_the_chosen_drivers_outcome_later(serving):
    from serving.data import generate_traffic

    url, events_file = serving
    traffic = generate_traffic("drift", 30, seed=3)
    generator = TrafficGenerator(TrafficSettings(base_url=url, rate=200, feedback_delay=0.3, concurrency=4))
    try:
        counts = generator.run_phase("drift", "drift", 30, traffic=traffic)
        assert generator.wait_for_feedback(timeout=10)
    finally:
        generator.close()
    snap = counts.snapshot()
    assert (snap["sent"], snap["ok"], snap["errors"], snap["feedback_sent"]) == (30, 30, 0, 30)
    assert snap["models"] == {"driver_ranker": {"sent": 30, "ok": 30, "errors": 0, "feedback_sent": 30,
                                                "feedback_ok": 30, "feedback_errors": 0}}

    events = read_events(events_file)
    predictions = {e["request_id"]: e for e in events if e["event"]["dataset"] == "ml.prediction"}
    feedback = {e["request_id"]: e for e in events if e["event"]["dataset"] == "ml.feedback"}
    assert len(predictions) == 30 and set(feedback) == set(predictions)
    truth = {}
    for ids, outcomes in zip(traffic["driver_ids"], traffic["outcomes"]):
        for driver, outcome in zip(ids, outcomes):
            truth.setdefault(driver, set()).add(outcome)
    for request_id, prediction in predictions.items():
        chosen = prediction["prediction"]["driver_id"]
        assert 5001 <= chosen < 6000  # the drift population
        assert feedback[request_id]["target"]["trip_completed"] in truth[chosen]
        delay = (datetime_of(feedback[request_id]) - datetime_of(prediction)).total_seconds()
        assert delay >= 0.25  # late labels, as configured


def datetime_of(event: dict):
    from common.schema import parse_timestamp
    return parse_timestamp(event["@timestamp"])


def test_the_outcome_sent_is_the_one_of_the_chosen_candidate(serving):
    """Each request gets its own outcomes, so the feedback must come from the chosen candidate's slot."""
    import pandas as pd

    url, events_file = serving
    ids = [1001, 1002, 1003, 1004]
    # Same candidates, opposite outcomes: the feedback of each request follows its own row.
    traffic = pd.DataFrame({"driver_ids": [ids, ids], "outcomes": [[1, 1, 1, 1], [0, 0, 0, 0]]})
    generator = TrafficGenerator(TrafficSettings(base_url=url, rate=100, feedback_delay=0, concurrency=1))
    try:
        generator.run_phase("check", "normal", 2, traffic=traffic)
        assert generator.wait_for_feedback(timeout=10)
    finally:
        generator.close()
    events = read_events(events_file)
    feedback = [e for e in events if e["event"]["dataset"] == "ml.feedback"][-2:]
    assert sorted(e["target"]["trip_completed"] for e in feedback) == [0, 1]


def test_requests_are_paced_at_the_configured_rate(serving):
    from serving.data import generate_traffic

    url, _ = serving
    generator = TrafficGenerator(TrafficSettings(base_url=url, rate=40, feedback_delay=0, concurrency=4))
    started = time.monotonic()
    try:
        counts = generator.run_phase("normal", "normal", 20, traffic=generate_traffic("normal", 20, seed=5))
    finally:
        generator.close()
    assert counts.ok == 20
    assert time.monotonic() - started >= 19 / 40  # the 20th request is due 0.475 s after the first


def test_an_unreachable_service_is_counted_as_errors_without_feedback():
    from tests.conftest import free_port

    traffic = {"driver_ids": [[1001, 1002]] * 5, "outcomes": [[0, 1]] * 5}
    generator = TrafficGenerator(TrafficSettings(base_url=f"http://127.0.0.1:{free_port()}", rate=100,
                                                 feedback_delay=0, timeout=1))
    try:
        counts = generator.run_phase("normal", "normal", 5, traffic=traffic)
        assert generator.wait_for_feedback(timeout=1)
    finally:
        generator.close()
    snap = counts.snapshot()
    assert (snap["sent"], snap["ok"], snap["errors"], snap["feedback_sent"]) == (5, 0, 5, 0)
    assert snap["models"]["driver_ranker"]["errors"] == 5
    assert snap["last_error"].startswith("/predict answered 0")


def test_a_rejected_request_is_an_error_not_a_crash(serving):
    url, _ = serving
    traffic = {"driver_ids": [[999999]], "outcomes": [[1]]}  # unknown driver: serving answers 422
    generator = TrafficGenerator(TrafficSettings(base_url=url, rate=100, feedback_delay=0))
    try:
        counts = generator.run_phase("normal", "normal", 1, traffic=traffic)
    finally:
        generator.close()
    assert (counts.errors, counts.feedback_sent) == (1, 0)
    assert "422" in counts.last_error and "driver_ids" in counts.last_error


def test_a_phase_also_asks_trip_duration_and_sends_the_realized_minutes_later(serving):
    """The second model: /predict/duration for each request's driver, /feedback/duration with its realized duration."""
    from serving.data import generate_duration_traffic, generate_traffic

    url, events_file = serving
    durations = generate_duration_traffic("drift", 20, seed=4)
    generator = TrafficGenerator(TrafficSettings(base_url=url, rate=200, feedback_delay=0.3, concurrency=4))
    try:
        counts = generator.run_phase("drift", "drift", 20, traffic=generate_traffic("drift", 20, seed=4),
                                     durations=durations)
        assert generator.wait_for_feedback(timeout=10)
    finally:
        generator.close()
    snap = counts.snapshot()
    duration = snap["models"]["trip_duration"]
    assert (duration["sent"], duration["ok"], duration["errors"]) == (20, 20, 0)
    assert (duration["feedback_sent"], duration["feedback_ok"], snap["ok"]) == (20, 20, 20)
    assert snap["models"]["driver_ranker"]["ok"] == 20 and snap["feedback_sent"] == 40
    events = [e for e in read_events(events_file) if e["model"]["name"] == "trip_duration"]
    predictions = {e["request_id"]: e for e in events if e["event"]["dataset"] == "ml.prediction"}
    feedback = {e["request_id"]: e for e in events if e["event"]["dataset"] == "ml.feedback"}
    assert len(predictions) == 20 and set(feedback) == set(predictions)
    sent = sorted(zip(durations["driver_id"], durations["duration_minutes"]))
    got = sorted((predictions[r]["prediction"]["driver_id"], feedback[r]["target"]["duration_minutes"])
                 for r in predictions)
    assert got == [(int(d), float(m)) for d, m in sent]
    for request_id, prediction in predictions.items():
        assert (datetime_of(feedback[request_id]) - datetime_of(prediction)).total_seconds() >= 0.25


def test_duration_can_be_switched_off_and_the_flag_is_checked():
    assert TrafficSettings.from_env({"TRAFFIC_DURATION": "no"}).duration is False
    with pytest.raises(SettingsError, match="TRAFFIC_DURATION='maybe'"):
        TrafficSettings.from_env({"TRAFFIC_DURATION": "maybe"})


def test_each_prediction_carries_the_requests_city_drawn_independently_of_the_drivers(serving):
    from serving.data import CITIES, draw_cities, generate_traffic

    url, events_file = serving
    traffic = generate_traffic("normal", 40, seed=21)
    generator = TrafficGenerator(TrafficSettings(base_url=url, rate=200, feedback_delay=0, concurrency=4,
                                                 seed=21, duration=False))
    try:
        generator.run_phase("normal", "normal", 40, traffic=traffic)
        assert generator.wait_for_feedback(timeout=10)
    finally:
        generator.close()
    sent = draw_cities(40, 21)   # the phase's seed: settings.seed + the phases run before (none)
    predictions = [e for e in read_events(events_file) if e["event"]["dataset"] == "ml.prediction"][-40:]
    cities = [e["context"]["city"] for e in predictions]
    assert len(cities) == 40 and set(cities) <= set(CITIES)
    assert sorted(cities) == sorted(sent)


def test_a_frame_with_a_city_column_is_sent_as_is_and_no_cities_sends_none(serving):
    url, events_file = serving
    traffic = {"driver_ids": [[1001, 1002], [1003, 1004]], "outcomes": [[0, 1], [1, 0]],
               "city": ["Springfield", "Ogdenville"]}
    for cities, expected in ((True, ["Ogdenville", "Springfield"]), (False, [None, None])):
        generator = TrafficGenerator(TrafficSettings(base_url=url, rate=100, feedback_delay=0, cities=cities,
                                                     duration=False))
        try:
            counts = generator.run_phase("check", "normal", 2,
                                         traffic=traffic if cities else {k: traffic[k] for k in traffic
                                                                         if k != "city"})
        finally:
            generator.close()
        assert counts.ok == 2
        predictions = [e for e in read_events(events_file) if e["event"]["dataset"] == "ml.prediction"][-2:]
        assert sorted((e.get("context") or {}).get("city") or "" for e in predictions) == \
            sorted(c or "" for c in expected)


def test_the_cities_setting():
    assert TrafficSettings.from_env({}).cities is True
    assert TrafficSettings.from_env({"TRAFFIC_CITIES": "no"}).cities is False
    with pytest.raises(SettingsError, match="TRAFFIC_CITIES"):
        TrafficSettings.from_env({"TRAFFIC_CITIES": "maybe"})
