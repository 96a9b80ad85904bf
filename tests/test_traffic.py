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
