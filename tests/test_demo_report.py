"""The demo's reading of /metrics, its exit condition, its table and its settings (pure parts)."""
from __future__ import annotations

import argparse
import io
import signal
import threading
from types import SimpleNamespace

import pytest

from demo.__main__ import _on_interrupt
from demo.report import (CHANNELS, PhaseResult, StatusWriter, incident_rule_failures, message_monitor, phase_table,
                         regression_failures, regression_table, status_line, story_failures)
from demo.runner import Story
from demo.settings import DemoSettings, Ports, SettingsError, add_arguments
from demo.verdicts import Verdict, parse_verdict

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


def result(name, verdict=None, emails=(), notifications=None):
    return PhaseResult(name, {"ok": 10, "sent": 10, "errors": 0, "planned": 10, "feedback_sent": 10},
                       verdict, emails=list(emails), notifications=dict(notifications or {}))


NO_DRIFT = Verdict("m", available=True, dataset_drift=False, quality={"accuracy": 0.8, "f1": 0.85},
                   rows={"evaluated": 300}, estimated={"accuracy": 0.79, "f1": 0.88})
DRIFT = Verdict("m", available=True, dataset_drift=True, drifted_features=("acc_rate", "conv_rate"))
SHIFTED = {"conv_rate", "acc_rate"}
MAIL = "[FIRING:1] DataDriftDetected driver_ranker"


def test_the_story_holds():
    assert story_failures([result("normal", NO_DRIFT), result("drift", DRIFT, [MAIL])], SHIFTED, True) == []
    assert story_failures([result("normal", NO_DRIFT), result("drift", DRIFT)], SHIFTED, False) == []


@pytest.mark.parametrize("results, expected", [
    ([result("normal", DRIFT), result("drift", DRIFT, [MAIL])], "normal phase: dataset drift reported"),
    ([result("normal"), result("drift", DRIFT, [MAIL])], "normal phase: the log processor gave no verdict"),
    ([result("normal", NO_DRIFT), result("drift", NO_DRIFT, [MAIL])], "drift phase: no dataset drift reported"),
    ([result("normal", NO_DRIFT), result("drift", Verdict("m", True, True, ("conv_rate",)), [MAIL])],
     "drift phase: shifted feature(s) not flagged: acc_rate"),
    ([result("normal", NO_DRIFT), result("drift", DRIFT, ["[FIRING:1] FeatureDrift"])],
     "no DataDriftDetected e-mail received"),
    ([result("normal", NO_DRIFT, [MAIL]), result("drift", DRIFT, [MAIL])],
     "normal phase: a DataDriftDetected e-mail arrived"),
])
def test_the_story_fails_for_each_broken_promise(results, expected):
    assert any(f.startswith(expected) for f in story_failures(results, SHIFTED, True))


def test_phase_table_lists_each_phase():
    r = result("drift", DRIFT, [MAIL])
    r.alerts = ["DataDriftDetected", "FeatureDrift", "FeatureDrift"]
    table = phase_table([result("normal", NO_DRIFT), r]).splitlines()
    assert table[0].split(" | ")[0].strip() == "phase" and "drifted features" in table[0]
    assert [c.strip() for c in table[0].split("|")][-4:] == ["e-mails", "slack", "webhook", "telegram"]
    assert "est. accuracy" in table[0] and "est. F1" in table[0]
    assert [c.strip() for c in table[2].split("|")] == ["normal", "10/10", "300", "no", "-", "0.790", "0.880",
                                                        "0.800", "0.850", "-", "0", "0", "0", "0"]
    drift_row = [c.strip() for c in table[3].split("|")]
    assert drift_row[3:5] == ["yes", "acc_rate, conv_rate"]
    assert drift_row[5:9] == ["-", "-", "-", "-"]
    assert drift_row[9:] == ["DataDriftDetected, FeatureDrift", "1 (1 firing)", "0", "0", "0"]


CHATS = ("slack", "webhook", "telegram")
RESOLVED_MAIL = "[RESOLVED] DataDriftDetected, PredictionDrift monitor=driver_ranker"


def incident_run(drift_chat=("firing",), recovery_chat=("resolved",), drift_mails=(MAIL,),
                 recovery_mails=(RESOLVED_MAIL,)):
    return [result("normal", NO_DRIFT),
            result("drift", DRIFT, drift_mails, {c: list(drift_chat) for c in CHATS}),
            result("recovery", NO_DRIFT, recovery_mails, {c: list(recovery_chat) for c in CHATS})]


def test_one_firing_and_one_resolved_message_per_channel_holds_the_incident_rule():
    assert story_failures(incident_run(), SHIFTED, True, channels=CHANNELS) == []
    table = phase_table(incident_run()).splitlines()
    assert [c.strip() for c in table[4].split("|")][-4:] == ["1 (1 resolved)"] * 4


@pytest.mark.parametrize("run, expected", [
    (incident_run(drift_chat=()), "slack: drift phase got 0 firing message(s), the one-message-per-incident rule allows 1"),
    (incident_run(drift_chat=("firing", "firing")), "webhook: drift phase got 2 firing message(s)"),
    (incident_run(recovery_chat=()), "telegram: recovery phase got 0 resolved message(s)"),
    (incident_run(recovery_chat=("firing", "resolved")), "slack: recovery phase got 1 firing message(s), the one-message-per-incident rule allows 0"),
    (incident_run(recovery_mails=()), "email: recovery phase got 0 resolved message(s)"),
    (incident_run(drift_mails=(MAIL, "[FIRING:1] FeatureDrift monitor=driver_ranker")), "email: drift phase got 2 firing message(s)"),
    (incident_run(drift_chat=("firing", "?")), "slack: drift phase got 1 message(s) that say neither firing nor resolved"),
])
def test_a_channel_with_nothing_or_too_much_fails_the_story(run, expected):
    failures = story_failures(run, SHIFTED, True, channels=CHANNELS)
    assert any(f.startswith(expected) for f in failures), failures


def test_a_recovery_that_still_drifts_fails_and_no_channels_means_no_incident_check():
    run = incident_run()
    run[2].verdict = DRIFT
    assert "recovery phase: dataset drift still reported (acc_rate, conv_rate)" in story_failures(run, SHIFTED, True)
    assert story_failures(incident_run(drift_chat=(), recovery_chat=()), SHIFTED, True) == []


def test_status_line_shows_phase_requests_shipping_and_verdict():
    line = status_line("drift", {"sent": 5, "planned": 10, "errors": 0, "feedback_sent": 3},
                       {"shipped": 8, "lag_bytes": 0, "store_available": False}, DRIFT)
    assert line.startswith("[drift] | requests 5/10")
    assert "shipped 8 (lag 0 B STORE DOWN, retrying)" in line and "DRIFT on acc_rate, conv_rate" in line
    assert "est." not in line and "realized" not in line          # no estimate exported: nothing claimed


def test_status_line_shows_the_estimate_before_labels_and_the_realized_quality_after():
    shipper = {"shipped": 8, "lag_bytes": 0}
    before = Verdict("m", available=True, estimated={"accuracy": 0.751, "f1": 0.17},
                     estimated_band={"accuracy": (0.727, 0.775)})
    line = status_line("drift", None, shipper, before)
    assert line.endswith("est. acc 0.751 [0.727-0.775] F1 0.170, realized: too few labels yet")
    after = Verdict("m", available=True, estimated={"accuracy": 0.751}, quality={"accuracy": 0.284, "f1": 0.093})
    assert status_line("drift", None, shipper, after).endswith("est. acc 0.751, realized acc 0.284 F1 0.093")


def test_status_writer_prints_whole_lines_when_not_on_a_terminal():
    out = io.StringIO()
    writer = StatusWriter(out, every=3600)
    writer.update("first")
    writer.update("second")  # within `every`: not repeated on a pipe
    writer.done("end")
    assert out.getvalue() == "first\nend\n"


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
                                "calibration covers: use at least 50"),
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
    story = Story(SimpleNamespace(settings=DemoSettings()), "m", StatusWriter(io.StringIO()), interrupted=interrupted)
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


def regression_result(name, verdict=None, ok=10):
    r = result(name)
    r.traffic.update(duration_ok=ok, duration_sent=10)
    if verdict is not None:
        r.monitors["trip_duration"] = verdict
    return r


REG_NORMAL = Verdict("trip_duration", available=True, regression_quality={"mae": 2.41, "rmse": 3.02},
                     reference_regression_quality={"mae": 2.38}, target_drift=False, target_drift_score=0.05)
REG_DRIFT = parse_verdict(REGRESSION_METRICS, "trip_duration")


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.split("|")]


def test_regression_table_shows_mae_and_rmse_normal_vs_drift_and_both_drifts():
    table = regression_table([regression_result("normal", REG_NORMAL), regression_result("drift", REG_DRIFT, 9)],
                             "trip_duration").splitlines()
    assert cells(table[0]) == ["phase", "trip_duration requests ok", "MAE", "RMSE", "MAE / reference",
                               "target drift", "dataset drift", "drifted features"]
    assert cells(table[2]) == ["normal", "10/10", "2.410", "3.020", "1.01x", "no (0.05)", "no", "-"]
    assert cells(table[3]) == ["drift", "9/10", "8.790", "9.530", "3.69x", "yes (0.41)", "yes", "conv_rate"]


def test_regression_table_without_the_gauges_shows_dashes():
    table = regression_table([regression_result("normal"), regression_result("drift", Verdict("trip_duration"))],
                             "trip_duration").splitlines()
    assert cells(table[2])[2:] == ["-"] * 6
    assert cells(table[3])[2:] == ["-"] * 6
    assert regression_failures([regression_result("normal"), regression_result("drift")], "trip_duration") == []


@pytest.mark.parametrize("normal, drift, expected", [
    (REG_NORMAL, Verdict("trip_duration", True, regression_quality={"mae": 3.0}, target_drift=True),
     "trip_duration: drift phase MAE 3.000 is not above 1.5 x the normal phase's 2.410"),
    (REG_NORMAL, Verdict("trip_duration", True, regression_quality={"mae": 9.0}, target_drift=False),
     "trip_duration: drift phase: no target drift reported"),
    (Verdict("trip_duration", True, regression_quality={"mae": 2.4}, target_drift=True), REG_DRIFT,
     "trip_duration: normal phase: target drift reported"),
])
def test_regression_story_fails_for_each_broken_promise(normal, drift, expected):
    results = [regression_result("normal", normal), regression_result("drift", drift)]
    assert regression_failures(results, "trip_duration") == [expected]
    results[0].verdict, results[1].verdict = NO_DRIFT, DRIFT          # the ranker's story holds
    assert story_failures(results, SHIFTED, False, regression_monitors=("trip_duration",)) == [expected]


def test_regression_story_holds():
    results = [regression_result("normal", REG_NORMAL), regression_result("drift", REG_DRIFT)]
    assert regression_failures(results, "trip_duration") == []


@pytest.mark.parametrize("text, labels, monitor", [
    ("[FIRING:2] DataDriftDetected monitor=trip_duration features: conv_rate", None, "trip_duration"),
    ("[RESOLVED] monitor driver_ranker: DataDriftDetected, PredictionDrift", None, "driver_ranker"),
    ("[FIRING] RegressionQualityDegraded: MAE up", {"monitor": "trip_duration"}, "trip_duration"),
    ("[FIRING:1] ServingDown instance=serving:8000", None, ""),
])
def test_the_monitor_a_message_is_about(text, labels, monitor):
    assert message_monitor(text, labels) == monitor


def two_monitor_run(drift_messages, recovery_messages=None):
    monitors = ("driver_ranker", "trip_duration")
    recovery_messages = recovery_messages if recovery_messages is not None else \
        [(c, m, "resolved") for c in CHANNELS for m in monitors]
    runs = [result("normal", NO_DRIFT), result("drift", DRIFT), result("recovery", NO_DRIFT)]
    runs[1].messages, runs[2].messages = list(drift_messages), list(recovery_messages)
    return runs, monitors


def test_the_incident_rule_holds_per_monitor_with_two_monitors():
    both = [(c, m, "firing") for c in CHANNELS for m in ("driver_ranker", "trip_duration")]
    runs, monitors = two_monitor_run(both)
    assert incident_rule_failures(runs, CHANNELS, monitors) == []
    # a message about no monitor counts for the first one: a second ranker incident
    runs, monitors = two_monitor_run(both + [("slack", "", "firing")])
    assert incident_rule_failures(runs, CHANNELS, monitors) == [
        "slack (driver_ranker): drift phase got 2 firing message(s), the one-message-per-incident rule allows 1"]
    runs, monitors = two_monitor_run([m for m in both if m[:2] != ("telegram", "trip_duration")])
    assert incident_rule_failures(runs, CHANNELS, monitors) == [
        "telegram (trip_duration): drift phase got 0 firing message(s), the one-message-per-incident rule allows 1"]


class _Messages:
    """Stands in for the mail and chat sinks: what they received, as the story reads it."""

    def __init__(self) -> None:
        self.mail: list[SimpleNamespace] = []
        self.chat: dict[str, list[SimpleNamespace]] = {channel: [] for channel in CHANNELS if channel != "email"}

    def receive(self, monitor: str, status: str, at: float) -> None:
        tag = "FIRING:1" if status == "firing" else "RESOLVED"
        self.mail.append(SimpleNamespace(subject=f"[{tag}] ModelQuality (monitor={monitor})",
                                         path=SimpleNamespace(name=f"{int(at * 1e9)}-1.eml")))
        for channel, received in self.chat.items():
            received.append(SimpleNamespace(text=f"[{status.upper()}] monitor {monitor}: x", status=status,
                                            body={"commonLabels": {"monitor": monitor}}, received_at=at))

    def stack(self) -> SimpleNamespace:
        return SimpleNamespace(settings=DemoSettings(), mail=SimpleNamespace(messages=lambda: list(self.mail)),
                               notifications=SimpleNamespace(messages=lambda channel: list(self.chat[channel])))


def test_the_drift_phase_waits_for_the_incident_of_every_exported_monitor():
    """The CI run of 2026-12-07: trip_duration's firing message came after driver_ranker's, once the
    drift phase had ended, and counted for the recovery; the drift phase now waits for it."""
    sink = _Messages()
    story = Story(sink.stack(), "driver_ranker", StatusWriter(io.StringIO()), others=("trip_duration",))
    story.other_verdicts = {"trip_duration": Verdict("trip_duration", available=True)}
    sink.receive("trip_duration", "firing", at=95.0)         # the other monitor's alone is not enough
    assert not story._every_incident_opened(started=90.0)
    sink.receive("driver_ranker", "firing", at=100.0)
    assert story._every_incident_opened(started=90.0)
    assert not story._every_incident_opened(started=96.0)    # trip_duration's is older than that phase
    sink.receive("trip_duration", "resolved", at=101.0)      # a resolved message opens nothing
    assert not story._every_incident_opened(started=96.0)
    sink.receive("trip_duration", "firing", at=102.0)
    assert story._every_incident_opened(started=96.0)


def test_a_message_about_no_monitor_counts_for_the_first_one():
    sink = _Messages()
    story = Story(sink.stack(), "driver_ranker", StatusWriter(io.StringIO()))
    sink.receive("", "firing", at=1.0)
    assert story._every_incident_opened(started=0.0)


def test_a_monitor_the_log_processor_does_not_export_is_not_waited_for():
    sink = _Messages()
    story = Story(sink.stack(), "driver_ranker", StatusWriter(io.StringIO()), others=("trip_duration",))
    story.other_verdicts = {"trip_duration": Verdict("trip_duration", available=False)}
    assert not story._every_incident_opened(started=0.0)
    sink.receive("driver_ranker", "firing", at=1.0)
    assert story._every_incident_opened(started=0.0)
