"""The demo's reading of /metrics, its exit condition, its table and its settings (pure parts)."""
from __future__ import annotations

import argparse
import io
import signal
import threading
from types import SimpleNamespace

import pytest

from demo.__main__ import _on_interrupt
from demo.report import (CHANNELS, PhaseResult, StatusWriter, incident_rule_failures, message_monitor, monitor_table,
                         regression_failures, status_line, story_failures)
from demo.runner import Story
from demo.settings import DemoSettings, Ports, SettingsError, add_arguments
from demo.verdicts import Verdict, parse_verdict
from log_processor.monitors import load_monitors
from tests.conftest import REPO_ROOT

METRICS = """\
# HELP mlmon_verdict_available 1 when the window had enough rows
# TYPE mlmon_verdict_available gauge
mlmon_verdict_available{monitor="driver_ranker"} 1.0
mlmon_verdict_available{monitor="other"} 0.0
# TYPE mlmon_dataset_drift gauge
mlmon_dataset_drift{monitor="driver_ranker"} 1.0
# TYPE mlmon_feature_drift_detected gauge
mlmon_feature_drift_detected{feature="acc_rate",method="ks",monitor="driver_ranker"} 1.0
mlmon_feature_drift_detected{feature="conv_rate",method="ks",monitor="driver_ranker"} 1.0
mlmon_feature_drift_detected{feature="avg_daily_trips",method="ks",monitor="driver_ranker"} 0.0
mlmon_feature_drift_detected{feature="conv_rate",method="ks",monitor="other"} 1.0
# TYPE mlmon_feature_drift_score gauge
mlmon_feature_drift_score{feature="conv_rate",method="ks",monitor="driver_ranker"} 1e-30
# TYPE mlmon_classification_quality gauge
mlmon_classification_quality{metric="accuracy",monitor="driver_ranker"} 0.31
mlmon_classification_quality{metric="f1",monitor="driver_ranker"} 0.12
# TYPE mlmon_estimated_classification_quality gauge
mlmon_estimated_classification_quality{metric="accuracy",monitor="driver_ranker"} 0.75
mlmon_estimated_classification_quality{metric="f1",monitor="driver_ranker"} 0.17
mlmon_estimated_classification_quality{metric="accuracy",monitor="other"} 0.9
# TYPE mlmon_estimated_classification_quality_lower gauge
mlmon_estimated_classification_quality_lower{metric="accuracy",monitor="driver_ranker"} 0.72
# TYPE mlmon_estimated_classification_quality_upper gauge
mlmon_estimated_classification_quality_upper{metric="accuracy",monitor="driver_ranker"} 0.78
# TYPE mlmon_window_rows gauge
mlmon_window_rows{kind="current",monitor="driver_ranker"} 300.0
mlmon_window_rows{kind="evaluated",monitor="driver_ranker"} 300.0
# TYPE mlmon_evaluations counter
mlmon_evaluations_total{monitor="driver_ranker",outcome="ok"} 7.0
mlmon_evaluations_total{monitor="driver_ranker",outcome="insufficient_data"} 3.0
# TYPE mlmon_last_evaluation_timestamp_seconds gauge
mlmon_last_evaluation_timestamp_seconds{monitor="driver_ranker"} 1.7e9
"""


def test_parse_verdict_reads_one_monitor_from_the_metric_contract():
    v = parse_verdict(METRICS, "driver_ranker")
    assert v.available and v.dataset_drift
    assert v.drifted_features == ("acc_rate", "conv_rate")
    assert v.quality == {"accuracy": 0.31, "f1": 0.12}
    assert v.rows == {"current": 300, "evaluated": 300}
    assert v.estimated == {"accuracy": 0.75, "f1": 0.17} and v.estimated_band == {"accuracy": (0.72, 0.78)}
    assert v.evaluations == 10 and v.last_evaluation == 1.7e9
    assert v.summary() == "DRIFT on acc_rate, conv_rate"


def test_a_monitor_without_verdict_is_not_read_as_no_drift():
    v = parse_verdict(METRICS, "other")
    assert not v.available and not v.dataset_drift
    assert v.summary().startswith("no verdict yet")
    assert parse_verdict("", "driver_ranker") == Verdict("driver_ranker")


# The project's two monitors, read the way the demo reads them.
RANKER, DURATION = load_monitors(REPO_ROOT / "log_processor/monitors.yaml")
MONITORS = (RANKER, DURATION)
SHIFTED = {"conv_rate", "acc_rate"}
NO_DRIFT = Verdict("m", available=True, dataset_drift=False, quality={"accuracy": 0.8, "f1": 0.85},
                   rows={"evaluated": 300}, estimated={"accuracy": 0.79, "f1": 0.88})
DRIFT = Verdict("m", available=True, dataset_drift=True, drifted_features=("acc_rate", "conv_rate"))
REG_NORMAL = Verdict("trip_duration", available=True, regression_quality={"mae": 2.41, "rmse": 3.02},
                     reference_regression_quality={"mae": 2.38}, target_drift=False, target_drift_score=0.05)
REG_DRIFT = Verdict("trip_duration", available=True, dataset_drift=True, drifted_features=("acc_rate", "conv_rate"),
                    regression_quality={"mae": 8.79, "rmse": 9.53}, reference_regression_quality={"mae": 2.38},
                    target_drift=True, target_drift_score=0.41)
# What a verdict of each phase looks like, per task (regression monitors have their own gauges).
STORY_VERDICTS = {"normal": (NO_DRIFT, REG_NORMAL), "drift": (DRIFT, REG_DRIFT), "recovery": (NO_DRIFT, REG_NORMAL)}
MAIL = "[FIRING:1] DataDriftDetected monitor=driver_ranker"


def traffic(ok=10, sent=10, models=("driver_ranker", "trip_duration")):
    return {"ok": ok, "sent": sent, "errors": sent - ok, "planned": 10, "feedback_sent": 2 * ok,
            "models": {m: {"sent": sent, "ok": ok, "errors": sent - ok, "feedback_sent": ok} for m in models}}


def story_run(monitors=MONITORS, phases=("normal", "drift", "recovery"), messages=True):
    """A run in which every monitor's story holds: each monitor's verdicts as its task has them and,
    with `messages`, one firing and one resolved message per channel and monitor."""
    runs = []
    for phase in phases:
        classification, regression = STORY_VERDICTS[phase]
        verdicts = {m.name: regression if m.task == "regression" else classification for m in monitors}
        r = PhaseResult(phase, traffic(), verdicts)
        status = {"drift": "firing", "recovery": "resolved"}.get(phase)
        if messages and status:
            r.messages = [(c, m.name, status) for c in CHANNELS for m in monitors]
            r.emails = [f"[{'FIRING:1' if status == 'firing' else 'RESOLVED'}] DataDriftDetected monitor={m.name}"
                        for m in monitors]
        runs.append(r)
    return runs


def test_the_story_holds():
    assert story_failures(story_run(), MONITORS, SHIFTED, True, CHANNELS) == []
    assert story_failures(story_run(messages=False), MONITORS, SHIFTED, False) == []


def broken(change):
    runs = story_run()
    change({r.name: r for r in runs})
    return runs


@pytest.mark.parametrize("change, expected", [
    (lambda r: r["normal"].verdicts.update(driver_ranker=DRIFT), "driver_ranker: normal phase: dataset drift reported"),
    (lambda r: r["normal"].verdicts.pop("trip_duration"), "trip_duration: normal phase: the log processor gave no verdict"),
    (lambda r: r["drift"].verdicts.update(driver_ranker=NO_DRIFT), "driver_ranker: drift phase: no dataset drift reported"),
    (lambda r: r["drift"].verdicts.update(trip_duration=Verdict("trip_duration", True, True, ("conv_rate",),
                                                                regression_quality={"mae": 9.0}, target_drift=True)),
     "trip_duration: drift phase: shifted feature(s) not flagged: acc_rate"),
    (lambda r: r["recovery"].verdicts.update(driver_ranker=DRIFT),
     "driver_ranker: recovery phase: dataset drift still reported (acc_rate, conv_rate)"),
    (lambda r: r["drift"].emails.clear() or r["recovery"].emails.clear(), "no DataDriftDetected e-mail received"),
    (lambda r: r["normal"].emails.append(MAIL), "normal phase: a DataDriftDetected e-mail arrived"),
])
def test_the_story_fails_for_each_broken_promise(change, expected):
    failures = story_failures(broken(change), MONITORS, SHIFTED, True)
    assert any(f.startswith(expected) for f in failures), failures


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.split("|")]


def test_a_classification_monitor_table_has_its_quality_its_alerts_and_its_messages():
    runs = story_run()
    runs[1].alerts = [("DataDriftDetected", "driver_ranker"), ("FeatureDrift", "driver_ranker"),
                      ("TargetDrift", "trip_duration"), ("ServingDown", "")]
    table = monitor_table(runs, RANKER).splitlines()
    assert table[0] == "driver_ranker (binary_classification):"
    assert cells(table[1]) == ["phase", "driver_ranker requests ok", "rows evaluated", "dataset drift",
                               "drifted features", "est. accuracy", "est. F1", "accuracy", "F1", "segments flagged",
                               "alerts fired", "e-mails", "slack", "webhook", "telegram"]
    assert cells(table[3]) == ["normal", "10/10", "300", "no", "-", "0.790", "0.880", "0.800", "0.850", "-", "-",
                               "0", "0", "0", "0"]
    drift_row = cells(table[4])
    assert drift_row[3:5] == ["yes", "acc_rate, conv_rate"] and drift_row[5:10] == ["-", "-", "-", "-", "-"]
    assert drift_row[10:] == ["DataDriftDetected, FeatureDrift"] + ["1 (1 firing)"] * 4   # only its own alerts
    assert cells(table[5])[-4:] == ["1 (1 resolved)"] * 4


def test_a_regression_monitor_table_shows_mae_and_rmse_normal_vs_drift_and_both_drifts():
    runs = story_run(phases=("normal", "drift"))
    runs[1].traffic["models"]["trip_duration"]["ok"] = 9
    table = monitor_table(runs, DURATION).splitlines()
    assert table[0] == "trip_duration (regression):"
    assert cells(table[1]) == ["phase", "trip_duration requests ok", "MAE", "RMSE", "MAE / reference",
                               "target drift", "dataset drift", "drifted features", "alerts fired",
                               "e-mails", "slack", "webhook", "telegram"]
    assert cells(table[3])[:9] == ["normal", "10/10", "2.410", "3.020", "1.01x", "no (0.05)", "no", "-", "-"]
    assert cells(table[4])[:8] == ["drift", "9/10", "8.790", "9.530", "3.69x", "yes (0.41)", "yes",
                                   "acc_rate, conv_rate"]


def test_a_regression_table_without_the_gauges_shows_dashes():
    runs = story_run(phases=("normal", "drift"))
    runs[0].verdicts.pop("trip_duration")
    runs[1].verdicts["trip_duration"] = Verdict("trip_duration")
    table = monitor_table(runs, DURATION).splitlines()
    assert cells(table[3])[2:9] == ["-"] * 7
    assert cells(table[4])[2:9] == ["-"] * 7
    assert regression_failures(runs, DURATION) == []


@pytest.mark.parametrize("normal, drift, expected", [
    (REG_NORMAL, Verdict("trip_duration", True, regression_quality={"mae": 3.0}, target_drift=True),
     "trip_duration: drift phase MAE 3.000 is not above 1.5 x the normal phase's 2.410"),
    (REG_NORMAL, Verdict("trip_duration", True, regression_quality={"mae": 9.0}, target_drift=False),
     "trip_duration: drift phase: no target drift reported"),
    (Verdict("trip_duration", True, regression_quality={"mae": 2.4}, target_drift=True), REG_DRIFT,
     "trip_duration: normal phase: target drift reported"),
])
def test_the_regression_story_fails_for_each_broken_promise(normal, drift, expected):
    runs = story_run(phases=("normal", "drift"), messages=False)
    runs[0].verdicts["trip_duration"], runs[1].verdicts["trip_duration"] = normal, drift
    assert regression_failures(runs, DURATION) == [expected]
    assert expected in story_failures(runs, MONITORS, SHIFTED, False)


def test_the_incident_rule_holds_per_monitor():
    assert incident_rule_failures(story_run(), CHANNELS, ("driver_ranker", "trip_duration")) == []


@pytest.mark.parametrize("change, expected", [
    (lambda r: r["drift"].messages.remove(("slack", "driver_ranker", "firing")),
     "slack (driver_ranker): drift phase got 0 firing message(s), the one-message-per-incident rule allows 1"),
    (lambda r: r["drift"].messages.append(("webhook", "trip_duration", "firing")),
     "webhook (trip_duration): drift phase got 2 firing message(s)"),
    (lambda r: r["recovery"].messages.remove(("telegram", "trip_duration", "resolved")),
     "telegram (trip_duration): recovery phase got 0 resolved message(s)"),
    (lambda r: r["recovery"].messages.append(("slack", "driver_ranker", "firing")),
     "slack (driver_ranker): recovery phase got 1 firing message(s), the one-message-per-incident rule allows 0"),
    (lambda r: r["recovery"].messages.remove(("email", "driver_ranker", "resolved")),
     "email (driver_ranker): recovery phase got 0 resolved message(s)"),
    (lambda r: r["normal"].messages.append(("email", "driver_ranker", "firing")),
     "email (driver_ranker): normal phase got 1 firing message(s), the one-message-per-incident rule allows 0"),
    (lambda r: r["drift"].messages.append(("slack", "driver_ranker", "?")),
     "slack (driver_ranker): drift phase got 1 message(s) that say neither firing nor resolved"),
    # a message about no monitor (ServingDown) is no incident of the story, whichever monitor comes first
    (lambda r: r["drift"].messages.append(("slack", "", "firing")),
     "slack: drift phase got 1 message(s) about no monitor (1 (1 firing)), which no incident of the story allows"),
])
def test_a_channel_with_nothing_or_too_much_fails_the_story(change, expected):
    failures = story_failures(broken(change), MONITORS, SHIFTED, True, CHANNELS)
    assert any(f.startswith(expected) for f in failures), failures


def test_without_channels_there_is_no_incident_check():
    runs = story_run(messages=False)
    assert story_failures(runs, MONITORS, SHIFTED, False) == []
    assert story_failures(runs, MONITORS, SHIFTED, False, CHANNELS) != []


def test_status_line_shows_phase_requests_shipping_and_each_monitors_verdict():
    line = status_line("drift", {"sent": 5, "planned": 10, "errors": 0, "feedback_sent": 3},
                       {"shipped": 8, "lag_bytes": 0, "store_available": False},
                       {"driver_ranker": DRIFT, "trip_duration": REG_DRIFT}, MONITORS)
    assert line.startswith("[drift] | requests 5/10 (errors 0, feedback 3) | shipped 8 (lag 0 B STORE DOWN, retrying)")
    assert line.endswith(" | driver_ranker: DRIFT on acc_rate, conv_rate"            # no estimate: nothing claimed
                         " | trip_duration: DRIFT on acc_rate, conv_rate, MAE 8.79 (3.69x reference)")


def test_status_line_shows_the_estimate_before_labels_and_the_realized_quality_after_and_the_clock_only_if_asked():
    shipper = {"shipped": 8, "lag_bytes": 0}
    before = Verdict("m", available=True, estimated={"accuracy": 0.751, "f1": 0.17},
                     estimated_band={"accuracy": (0.727, 0.775)}, last_evaluation=1.7e9)
    line = status_line("drift", None, shipper, {"driver_ranker": before}, (RANKER,))
    assert line.endswith("est. acc 0.751 [0.727-0.775] F1 0.170, realized: too few labels yet")
    assert "verdicts of " in line
    assert "verdicts of " not in status_line("drift", None, shipper, {"driver_ranker": before}, (RANKER,), clock=False)
    after = Verdict("m", available=True, estimated={"accuracy": 0.751}, quality={"accuracy": 0.284, "f1": 0.093})
    assert status_line("drift", None, shipper, {"driver_ranker": after}, (RANKER,)).endswith(
        "est. acc 0.751, realized acc 0.284 F1 0.093")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_status_writer_on_a_pipe_prints_a_line_only_when_it_changed():
    out = io.StringIO()
    writer = StatusWriter(out, every=0)
    writer.update("[a] 1 at 10:00:01", key="[a] 1")
    writer.update("[a] 1 at 10:00:03", key="[a] 1")     # only the clock moved: not repeated
    writer.update("[a] 2 at 10:00:05", key="[a] 2")
    writer.update("[a] 2 at 10:00:07", key="[a] 2")
    writer.done("end")
    assert out.getvalue() == "[a] 1 at 10:00:01\n[a] 2 at 10:00:05\nend\n"


def test_status_writer_on_a_pipe_prints_changes_at_most_every_few_seconds_but_a_new_phase_at_once():
    out = io.StringIO()
    writer = StatusWriter(out, every=3600)
    writer.update("[a] 1")
    writer.update("[a] 2")          # within `every`: a change of the same phase waits
    writer.update("[b] 2")          # a new phase: printed at once
    writer.update("[b] 2")
    assert out.getvalue() == "[a] 1\n[b] 2\n"


def test_status_writer_on_a_terminal_rewrites_one_line_in_place_cut_to_its_width():
    out = _Terminal()
    writer = StatusWriter(out, width=12)
    writer.update("[a] a long status line")     # cut to 11 columns: the cursor never wraps to a new line
    writer.update("[a] short")
    writer.done("end")
    assert out.getvalue() == "\r[a] a long \x1b[K\r[a] short\x1b[K\r\x1b[Kend\n"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p


def test_flags_override_the_environment():
    env = DemoSettings.from_env({"DEMO_RATE": "10", "DEMO_SERVING_PORT": "8000", "DEMO_NORMAL_REQUESTS": "100"})
    s = env.with_args(parser().parse_args(["--once", "--rate", "50", "--prometheus-port", "9090", "--no-alerts"]))
    assert (s.once, s.rate, s.normal_requests, s.alerts) == (True, 50.0, 100, False)
    assert s.ports == Ports(serving=8000, prometheus=9090)
    assert DemoSettings.from_env({}).with_args(parser().parse_args([])) == DemoSettings()


@pytest.mark.parametrize("env, message", [
    ({"DEMO_RATE": "quick"}, "DEMO_RATE='quick' is not a number"),
    ({"DEMO_NORMAL_REQUESTS": "10"}, "DEMO_NORMAL_REQUESTS='10' must be at least 50"),
    ({"DEMO_SERVING_PORT": "70000"}, "DEMO_SERVING_PORT='70000' must be between 0 and 65535"),
    ({"DEMO_ALERTS": "nope"}, "DEMO_ALERTS='nope': not a yes/no value"),
])
def test_bad_environment_names_the_variable(env, message):
    with pytest.raises(SettingsError, match=message):
        DemoSettings.from_env(env)


@pytest.mark.parametrize("argv, message", [
    (["--rate", "x"], "argument --rate: 'x' is not a number"),
    (["--drift-requests", "3"], "argument --drift-requests: '3' is below the smallest window the drift "
                                "thresholds cover: use at least 50"),
    (["--smtp-port", "99999"], "argument --smtp-port: '99999' is not a port"),
])
def test_bad_flags_name_the_flag(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        parser().parse_args(argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err



def test_a_ctrl_c_whose_keyboardinterrupt_was_lost_still_stops_the_story():
    """The handler raises KeyboardInterrupt and sets a flag; Python only prints an exception raised
    inside a __del__ or a callback, so the story's status refresh (about once a second in every
    wait) raises it again from the flag."""
    interrupted = threading.Event()
    with pytest.raises(KeyboardInterrupt):
        _on_interrupt(interrupted)(signal.SIGINT, None)
    assert interrupted.is_set()
    story = Story(SimpleNamespace(settings=DemoSettings()), MONITORS, StatusWriter(io.StringIO()),
                  interrupted=interrupted)
    with pytest.raises(KeyboardInterrupt):
        story.refresh()



# ---------------------------------------------------------------- the second monitor (trip_duration, regression)

REGRESSION_METRICS = """\
# TYPE mlmon_verdict_available gauge
mlmon_verdict_available{monitor="trip_duration"} 1.0
mlmon_verdict_available{monitor="driver_ranker"} 1.0
# TYPE mlmon_dataset_drift gauge
mlmon_dataset_drift{monitor="trip_duration"} 1.0
# TYPE mlmon_feature_drift_detected gauge
mlmon_feature_drift_detected{feature="conv_rate",method="ks",monitor="trip_duration"} 1.0
# TYPE mlmon_regression_quality gauge
mlmon_regression_quality{metric="mae",monitor="trip_duration"} 8.79
mlmon_regression_quality{metric="rmse",monitor="trip_duration"} 9.53
mlmon_regression_quality{metric="mae",monitor="other"} 1.0
# TYPE mlmon_reference_regression_quality gauge
mlmon_reference_regression_quality{metric="mae",monitor="trip_duration"} 2.38
# TYPE mlmon_target_drift_detected gauge
mlmon_target_drift_detected{monitor="trip_duration"} 1.0
mlmon_target_drift_detected{monitor="driver_ranker"} 0.0
# TYPE mlmon_target_drift_score gauge
mlmon_target_drift_score{monitor="trip_duration"} 0.41
"""


def test_parse_verdict_reads_the_regression_gauges_of_its_monitor_only():
    v = parse_verdict(REGRESSION_METRICS, "trip_duration")
    assert v.regression_quality == {"mae": 8.79, "rmse": 9.53}
    assert v.reference_regression_quality == {"mae": 2.38}
    assert (v.target_drift, v.target_drift_score) == (True, 0.41)
    assert v.dataset_drift and v.drifted_features == ("conv_rate",)
    ranker = parse_verdict(REGRESSION_METRICS, "driver_ranker")
    assert ranker.regression_quality == {} and (ranker.target_drift, ranker.target_drift_score) == (False, None)
    # a processor without the gauges: nothing claimed, not "no target drift"
    assert parse_verdict(METRICS, "driver_ranker").target_drift is None



@pytest.mark.parametrize("text, labels, monitor", [
    ("[FIRING:2] DataDriftDetected monitor=trip_duration features: conv_rate", None, "trip_duration"),
    ("[RESOLVED] monitor driver_ranker: DataDriftDetected, PredictionDrift", None, "driver_ranker"),
    ("[FIRING] RegressionQualityDegraded: MAE up", {"monitor": "trip_duration"}, "trip_duration"),
    ("[FIRING:1] ServingDown instance=serving:8000", None, ""),
])
def test_the_monitor_a_message_is_about(text, labels, monitor):
    assert message_monitor(text, labels) == monitor



class _Messages:
    """Stands in for the mail and chat sinks: what they received, as the story reads it."""

    def __init__(self) -> None:
        self.mail: list[SimpleNamespace] = []
        self.chat: dict[str, list[SimpleNamespace]] = {channel: [] for channel in CHANNELS if channel != "email"}

    def receive(self, monitor: str, status: str, at: float, channels=CHANNELS) -> None:
        tag = "FIRING:1" if status == "firing" else "RESOLVED"
        if "email" in channels:
            self.mail.append(SimpleNamespace(subject=f"[{tag}] ModelQuality (monitor={monitor})",
                                             path=SimpleNamespace(name=f"{int(at * 1e9)}-1.eml"), body=""))
        for channel, received in self.chat.items():
            if channel in channels:
                received.append(SimpleNamespace(text=f"[{status.upper()}] monitor {monitor}: x", status=status,
                                                body={"commonLabels": {"monitor": monitor}}, received_at=at))

    def stack(self, **extra) -> SimpleNamespace:
        return SimpleNamespace(settings=DemoSettings(), mail=SimpleNamespace(messages=lambda: list(self.mail)),
                               notifications=SimpleNamespace(messages=lambda channel: list(self.chat[channel])),
                               **extra)


def test_the_drift_phase_waits_for_the_incident_of_every_monitor():
    """The CI run of 2026-12-07: trip_duration's firing message came after driver_ranker's, once the
    drift phase had ended, and counted for the recovery; the drift phase waits for every monitor's."""
    sink = _Messages()
    story = Story(sink.stack(), MONITORS, StatusWriter(io.StringIO()))
    sink.receive("trip_duration", "firing", at=95.0)         # one monitor's alone is not enough
    assert not story._every_incident_opened(started=90.0)
    sink.receive("driver_ranker", "firing", at=100.0)
    assert story._every_incident_opened(started=90.0)
    assert not story._every_incident_opened(started=96.0)    # trip_duration's is older than that phase
    sink.receive("trip_duration", "resolved", at=101.0)      # a resolved message opens nothing
    assert not story._every_incident_opened(started=96.0)
    sink.receive("trip_duration", "firing", at=102.0)
    assert story._every_incident_opened(started=96.0)
    assert story._opened_since(96.0) == ["driver_ranker", "trip_duration"]


def test_a_message_about_no_monitor_opens_no_incident():
    sink = _Messages()
    story = Story(sink.stack(), (RANKER,), StatusWriter(io.StringIO()))
    sink.receive("", "firing", at=1.0)
    assert not story._every_incident_opened(started=0.0) and story._opened_since(0.0) == []
    sink.receive("driver_ranker", "firing", at=2.0)
    assert story._every_incident_opened(started=0.0)
