"""Fault tests with the real parts (issue 32): serving under gunicorn writing its event file, the file
shipper, osmem-server, the log processor, Prometheus, Alertmanager and the mail and chat sinks: the
embedded demo's stack (demo/stack.py), with the fault tests' timings.

- The shipper stops under traffic while a drift incident is open: every channel gets EventsNotArriving,
  and none a "resolved" for the drift that nobody observes any more (the window's span passes during
  the stall, so without the processor's no_data and the inhibition the drift alerts would resolve).
  The shipper restarts: the backlog ships, every prediction once (served = stored per model), the
  verdicts resume and the blind alert resolves on every channel.
- The store stops: the processor counts store errors and keeps serving /metrics, the shipper retries,
  and EventsNotArriving names the store on every channel.

The two tests share one stack (the store stops in the second). Timings: a 20 s window span (production: 15 minutes), blind after 8 s, alerts with FAST timings
(`for:` 2 s, group_wait 1 s, group_interval 2 s). The figures printed go into docs/alerts.md.
"""
from __future__ import annotations

import re
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from common.store import StoreSettings, connect
from demo import alerting_stack
from demo.notification_sink import CHANNELS as CHAT_CHANNELS
from demo.settings import DemoSettings
from demo.stack import EmbeddedStack
from demo.traffic import TrafficGenerator, TrafficSettings

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bool(alerting_stack.missing_binaries()),
                       reason=f"not installed: {', '.join(alerting_stack.missing_binaries())} (make system-deps)"),
]

WINDOW = 200            # rows: the latest 200 predictions ...
SPAN = 20               # ... of the last 20 s
BLIND_AFTER = 8         # seconds
RATE = 40.0             # requests per second
CHANNELS = ("email", *CHAT_CHANNELS)
MONITORS = ("driver_ranker", "trip_duration")


class FaultStack(EmbeddedStack):
    """The demo's stack with short windows, blind_after and alert timings (the module docstring)."""
    alert_timings = alerting_stack.FAST

    def _monitors_file(self) -> Path:
        path = super()._monitors_file()
        config = yaml.safe_load(path.read_text())
        for monitor in config["monitors"]:
            monitor.update(window={"span": f"{SPAN}s", "last": WINDOW}, min_rows=WINDOW,
                           max_rows=max(WINDOW, int(monitor.get("max_rows", WINDOW))), blind_after=f"{BLIND_AFTER}s")
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("faults")
    settings = DemoSettings(state_dir=tmp_path / "state", mail_dir=tmp_path / "mail",
                            notifications_dir=tmp_path / "notifications", log_dir=tmp_path / "log",
                            eval_interval=1.0, rate=RATE, normal_requests=WINDOW, drift_requests=WINDOW)
    stack = FaultStack(settings, say=lambda line: None).start()
    try:
        yield stack
    finally:
        stack.stop()


def traffic_for(stack: EmbeddedStack, seed: int) -> TrafficGenerator:
    return TrafficGenerator(TrafficSettings(base_url=stack.urls.serving, rate=RATE, feedback_delay=0.5, seed=seed))


def in_background(traffic: TrafficGenerator, variant: str, stop: threading.Event) -> threading.Thread:
    """`variant` traffic at RATE until `stop` is set (at most 5 minutes of it)."""
    sender = threading.Thread(target=traffic.run_phase, args=(variant, variant, int(RATE * 300), stop), daemon=True)
    sender.start()
    return sender


# --- what each channel received -------------------------------------------------------------------

def messages(stack: EmbeddedStack, since: float) -> list[tuple[str, float, str, str]]:
    """(channel, received at, status, text) of every message since `since` (time.time())."""
    out = []
    for mail in stack.mail.messages():
        received = int(mail.path.name.split("-", 1)[0]) / 1e9
        if received >= since:
            status = "resolved" if mail.subject.startswith("[RESOLVED") else "firing"
            out.append(("email", received, status, f"{mail.subject}\n{mail.body}"))
    for channel in CHAT_CHANNELS:
        for note in stack.notifications.messages(channel):
            if note.received_at >= since:
                out.append((channel, note.received_at, note.status, message_text(note)))
    return sorted(out, key=lambda m: m[1])


def message_text(note) -> str:
    """A chat message's text; the webhook's: a line `<STATUS> <alertname> monitor=<monitor> <where>` per alert."""
    if note.channel != "webhook":
        return note.text
    return "\n".join(f"{a['status'].upper()} {a['labels'].get('alertname')} monitor={a['labels'].get('monitor')} "
                     f"{a.get('annotations', {}).get('where', '')}" for a in note.body.get("alerts", []))


def first_per_channel(stack, since, predicate) -> dict[str, float]:
    """Each channel's first message since `since` that satisfies predicate(status, text): its time."""
    found: dict[str, float] = {}
    for channel, at, status, text in messages(stack, since):
        if channel not in found and predicate(status, text):
            found[channel] = at
    return found


def wait_every_channel(stack, since, predicate, what: str, timeout: float) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while True:
        found = first_per_channel(stack, since, predicate)
        if set(found) == set(CHANNELS):
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: only {sorted(found)} after {timeout:.0f}s; messages since:\n"
                                 + "\n".join(f"{c} {s} {t[:300]!r}" for c, _, s, t in messages(stack, since))
                                 + f"\nprometheus alerts: {stack.prometheus.alerts()}")
        time.sleep(0.5)


def about(monitor: str, text: str) -> bool:
    return f"monitor={monitor}" in text or f"monitor {monitor}" in text or f"'monitor': '{monitor}'" in text


def blind_message(monitor: str):
    return lambda status, text: status == "firing" and "EventsNotArriving" in text and about(monitor, text)


def blind_resolved(monitor: str):
    """EventsNotArriving marked resolved, in the incident's resolved message or in an update beside
    alerts that still fire (e-mail: its summary "Events of monitor … stopped arriving")."""
    return lambda status, text: about(monitor, text) and (
        status == "resolved" and "EventsNotArriving" in text
        or re.search(r"RESOLVED(?:</b>|\*)?\W+(EventsNotArriving|Events of monitor)", text) is not None)


def drift_firing(monitor: str):
    return lambda status, text: status == "firing" and "DataDriftDetected" in text and about(monitor, text)


# --- what the parts say ---------------------------------------------------------------------------

def metric(url: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` matching `labels` on a /metrics page."""
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def wait_until(condition, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s")
        time.sleep(0.5)


def diagnose(stack: EmbeddedStack, monitor: str) -> str:
    with urllib.request.urlopen(stack.urls.log_processor + "/metrics", timeout=5) as response:
        lines = [line for line in response.read().decode().splitlines()
                 if f'monitor="{monitor}"' in line and line.startswith(("mlmon_evaluations_total", "mlmon_no_data",
                                                                      "mlmon_newest", "mlmon_window_rows", "mlmon_stored"))]
    log = stack.log_file("log_processor")
    return "\n".join(lines) + f"\nnow {time.time():.1f}\n" + "\n".join(
        line for line in log.read_text().splitlines()[-400:] if "elastic_transport" not in line)[-3000:]


def stored_predictions(stack: EmbeddedStack) -> dict[str, int]:
    es = connect(StoreSettings(url=stack.urls.store))
    try:
        es.indices.refresh(index="ml-events-*")
        return {model: int(es.count(index="ml-events-*", query={"bool": {"filter": [
            {"term": {"event.dataset": "ml.prediction"}}, {"term": {"model.name": model}}]}})["count"])
            for model in MONITORS}
    finally:
        es.close()


def test_shipper_stopped_under_traffic_is_blind_never_all_clear_and_recovers_every_event_once(stack):
    processor, serving = stack.urls.log_processor + "/metrics", stack.urls.serving + "/metrics"
    traffic = traffic_for(stack, seed=5)
    shipper_stopped = False
    stop_traffic, sender = threading.Event(), None
    try:
        # A drift incident opens for each monitor (one firing message per channel each).
        opened = time.time()
        traffic.run_phase("drift", "drift", WINDOW)
        for monitor in MONITORS:
            wait_every_channel(stack, opened, drift_firing(monitor), f"{monitor}: the drift incident's message", 90)

        # The shipper stops; normal traffic goes on for longer than the window's span.
        stalled = time.time()
        stack.stop_shipper()
        shipper_stopped = True
        sender = in_background(traffic, "normal", stop_traffic)
        blind = {m: wait_every_channel(stack, stalled, blind_message(m), f"{m}: EventsNotArriving", 60)
                 for m in MONITORS}
        for monitor in MONITORS:
            assert metric(processor, "mlmon_no_data", monitor=monitor) == 1
        wait_until(lambda: time.time() - stalled > SPAN + 5, "the window's span passing", SPAN + 10)
        # The drift nobody observes any more is never "resolved", on any channel; the verdict held.
        while_blind = messages(stack, stalled)
        assert [m for m in while_blind if m[2] == "resolved"] == [], while_blind
        assert not any("RESOLVED" in text for _, _, _, text in while_blind), while_blind
        for monitor in MONITORS:
            assert metric(processor, "mlmon_dataset_drift", monitor=monitor) == 1
            assert metric(processor, "mlmon_evaluations_total", monitor=monitor, outcome="no_data") > 0

        # The shipper restarts: the backlog ships, every prediction once, verdicts resume, the blind alert resolves.
        ok_before = {m: metric(processor, "mlmon_evaluations_total", monitor=m, outcome="ok") for m in MONITORS}
        restarted = time.time()
        stack.restart_shipper()
        shipper_stopped = False
        # verdicts resume on the traffic that goes on: cycles succeed again, the verdict is the normal traffic's
        for monitor in MONITORS:
            wait_until(lambda m=monitor: metric(processor, "mlmon_evaluations_total", monitor=m, outcome="ok")
                       > ok_before[m] and metric(processor, "mlmon_dataset_drift", monitor=m) == 0,
                       f"{monitor}: a new verdict, without drift", 60)
            assert metric(processor, "mlmon_stored_predictions_total", monitor=monitor) > 0
        resolved = {m: wait_every_channel(stack, restarted, blind_resolved(m), f"{m}: EventsNotArriving resolved", 60)
                    for m in MONITORS}
        stop_traffic.set()
        sender.join(60)
        wait_until(lambda: traffic.pending_feedback() == 0, "the last feedback sent", 30)
        wait_until(lambda: stack.shipper.stats.lag_bytes == 0, "the backlog and the last events shipped", 60)
        served = {m: int(metric(serving, "serving_model_predictions_total", model_name=m)) for m in MONITORS}
        counts: list[dict[str, int]] = []      # serving's file sink flushes its last lines a moment later
        try:
            wait_until(lambda: counts.append(stored_predictions(stack)) or counts[-1] == served,
                       "every served prediction stored", 30)
        except AssertionError:
            raise AssertionError(f"served {served}, stored {counts[-1]}") from None
        stored = counts[-1]
        assert metric(serving, "serving_events_dropped_total") == 0
    finally:
        stop_traffic.set()
        if sender is not None:
            sender.join(60)
        traffic.close()
        if shipper_stopped:        # failed while stopped: the next test needs a shipper
            stack.restart_shipper()
    print("\nshipper stall → EventsNotArriving: "
          + "; ".join(f"{m}: " + ", ".join(f"{c} {at - stalled:.1f}s" for c, at in sorted(blind[m].items()))
                      for m in MONITORS)
          + "\nrestart → resolved: "
          + "; ".join(f"{m}: " + ", ".join(f"{c} {at - restarted:.1f}s" for c, at in sorted(resolved[m].items()))
                      for m in MONITORS)
          + f"\nserved {served}, stored {stored}")


def test_store_stopped_is_store_errors_and_the_blind_alert_naming_the_store(stack):
    processor = stack.urls.log_processor + "/metrics"
    traffic = traffic_for(stack, seed=7)
    stop_traffic, sender = threading.Event(), None
    try:
        started = time.time()
        traffic.run_phase("normal", "normal", int(RATE * 3))
        wait_until(lambda: all(metric(processor, "mlmon_newest_event_timestamp_seconds", monitor=m) >= started
                               for m in MONITORS), "every monitor read a prediction", 30)
        stopped = time.time()
        stack.store.close()
        sender = in_background(traffic, "normal", stop_traffic)
        found = {m: wait_every_channel(stack, stopped, lambda s, t, m=m: blind_message(m)(s, t) and "the store" in t,
                                       f"{m}: EventsNotArriving naming the store", 60) for m in MONITORS}
        # no crash: the processor answers and counts its store errors; the shipper retries
        for monitor in MONITORS:
            assert metric(processor, "mlmon_store_errors_total", monitor=monitor) > 0
            assert metric(processor, "mlmon_evaluations_total", monitor=monitor, outcome="error") > 0
        assert stack.shipper.stats.store_available is False and stack.shipper.stats.retries > 0
        assert all(child.running for child in stack.children), [c.name for c in stack.children]
    finally:
        stop_traffic.set()
        if sender is not None:
            sender.join(60)
        traffic.close()
    print("\nstore stopped → EventsNotArriving (where: the store): "
          + "; ".join(f"{m}: " + ", ".join(f"{c} {at - stopped:.1f}s" for c, at in sorted(found[m].items()))
                      for m in MONITORS))
