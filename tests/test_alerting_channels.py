"""Slack, webhook and Telegram beside e-mail: the real Alertmanager (and Prometheus) of
demo/alerting_stack.py delivering into demo/notification_sink.py and demo/mail_sink.py on loopback.

Covers the routing tree and inhibition as they run (one message per channel for an incident of
several alerts, a lone FeatureDrift to chat only, the `team` label Prometheus adds), the messages'
context and links in each channel's shape, the secret-file check before Alertmanager starts, and the
faults: a channel that is down, answers 5xx or is slow is retried without holding up the others.
"""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from demo.alerting_stack import FAST, AlertingStack, SecretFileError, missing_binaries
from demo.mail_sink import MailSink
from demo.notification_sink import CHANNELS, NotificationSink
from tests.conftest import free_port

pytestmark = pytest.mark.skipif(bool(missing_binaries()),
                                reason=f"not installed: {', '.join(missing_binaries())} (make system-deps)")

LINKS = {"grafana_url": "http://grafana.test:3000", "kibana_url": "http://kibana.test:5601",
         "log_processor_url": "http://processor.test:8309"}
CONTEXT = {"model": "driver_ranker 2026.12.03-d1c5b33",
           "window": "800 rows, 780 labelled (label coverage 97.5%), 2026-12-03 14:55:00 to 2026-12-03 14:55:46 UTC",
           "window_range": "1796309700000 1796309747000 2026-12-03T14:55:00Z 2026-12-03T14:55:47Z"}


@pytest.fixture(scope="module")
def mail(tmp_path_factory):
    with MailSink(tmp_path_factory.mktemp("mail")) as sink:
        yield sink


@pytest.fixture(scope="module")
def sink(tmp_path_factory):
    with NotificationSink(tmp_path_factory.mktemp("notifications")) as running:
        yield running


@pytest.fixture(scope="module")
def dead_serving() -> str:
    return f"127.0.0.1:{free_port()}"  # nothing listens: ServingDown fires through the real rule


@pytest.fixture(scope="module")
def stack(tmp_path_factory, mail, sink, dead_serving):
    secrets = sink.write_secret_files(tmp_path_factory.mktemp("secrets"))
    with AlertingStack(tmp_path_factory.mktemp("alerting"), {"serving": [dead_serving]}, mail.address,
                       timings=FAST, external_labels=LINKS, secrets_dir=secrets,
                       telegram_api_url=sink.url("telegram")) as running:
        yield running


@pytest.fixture
def healthy(sink):
    """Every channel answers normally before and after the test."""
    def reset():
        for channel in CHANNELS:
            sink.fail(channel, None)
            sink.delay(channel, 0)
    reset()
    yield sink
    reset()


def ml_alert(monitor: str, name: str, severity: str, ends_at: datetime | None = None, **labels: str) -> dict:
    alert = {"labels": {"alertname": name, "severity": severity, "team": "ml", "monitor": monitor,
                        "job": "log_processor", "instance": "lp:8309", **LINKS, **labels},
             "annotations": {"summary": f"{name} on {monitor}", "dashboard": "ml-drift", **CONTEXT},
             "generatorURL": "http://prometheus.test/graph"}
    if name in ("DataDriftDetected", "FeatureDrift"):
        alert["annotations"]["drifted"] = "conv_rate (ks score 1.2e-05, threshold 0.05, p-value 0.0004)"
    if ends_at:
        alert["endsAt"] = ends_at.isoformat()
    return alert


def incident(monitor: str, ends_at: datetime | None = None) -> list[dict]:
    """What the demo's drift phase fires for one model."""
    return [ml_alert(monitor, "DataDriftDetected", "warning", ends_at),
            ml_alert(monitor, "FeatureDrift", "info", ends_at, feature="conv_rate", method="ks"),
            ml_alert(monitor, "FeatureDrift", "info", ends_at, feature="acc_rate", method="ks"),
            ml_alert(monitor, "PredictionDrift", "warning", ends_at, column="prediction.score"),
            ml_alert(monitor, "ModelQualityDegraded", "critical", ends_at, metric="accuracy"),
            ml_alert(monitor, "ModelQualityDegraded", "critical", ends_at, metric="f1")]


def about(monitor: str):
    return lambda message: f"monitor {monitor}" in message.text or \
        message.body.get("commonLabels", {}).get("monitor") == monitor


def chat_messages(sink, channel: str, monitor: str):
    return [m for m in sink.messages(channel) if about(monitor)(m)]


def mails(mail, monitor: str):
    return [m for m in mail.messages() if f"monitor={monitor}" in m.subject]


def test_an_incident_is_one_firing_and_one_resolved_message_per_channel(stack, healthy, mail):
    sink = healthy
    stack.alertmanager.post_alerts(incident("one_incident"))
    for channel in CHANNELS:
        sink.wait_for(channel, about("one_incident"), timeout=20)
    mail.wait_for(lambda m: "monitor=one_incident" in m.subject, timeout=20)
    time.sleep(5)   # more than two group_intervals: nothing else may follow
    webhook = chat_messages(sink, "webhook", "one_incident")
    assert len(webhook) == 1
    names = sorted(a["labels"]["alertname"] for a in webhook[0].body["alerts"])
    assert names == ["DataDriftDetected", "ModelQualityDegraded", "ModelQualityDegraded", "PredictionDrift"]  # FeatureDrift inhibited
    assert webhook[0].body["groupLabels"] == {"monitor": "one_incident"} and webhook[0].body["receiver"] == "ml-oncall"
    for channel in ("slack", "telegram"):
        (message,) = chat_messages(sink, channel, "one_incident")
        assert message.status == "firing"
        assert "[FIRING:4] monitor one_incident: DataDriftDetected, ModelQualityDegraded, PredictionDrift" in message.text
    (email,) = mails(mail, "one_incident")
    assert email.subject == "[FIRING:4] DataDriftDetected, ModelQualityDegraded, PredictionDrift monitor=one_incident"

    stack.alertmanager.post_alerts(incident("one_incident", datetime.now(timezone.utc) - timedelta(seconds=1)))
    for channel in CHANNELS:
        sink.wait_for(channel, lambda m: about("one_incident")(m) and m.status == "resolved", timeout=20)
    mail.wait_for(lambda m: m.subject.startswith("[RESOLVED] DataDriftDetected, Model"), timeout=20)
    time.sleep(5)
    for channel in CHANNELS:
        assert [m.status for m in chat_messages(sink, channel, "one_incident")] == ["firing", "resolved"], channel
    assert [m.subject.split("]")[0] for m in mails(mail, "one_incident")] == ["[FIRING:4", "[RESOLVED"]
    (resolved,) = [m for m in chat_messages(sink, "slack", "one_incident") if m.status == "resolved"]
    assert "*Resolved:* every alert of this incident has cleared." in resolved.text
    assert resolved.body["attachments"][0]["color"] == "good"


def test_a_regression_monitor_s_incident_is_its_own_message_and_processor_down_silences_it(stack, healthy, mail):
    """trip_duration's drift, target drift and MAE alert make one message per channel beside another
    model's incident, never merged with it; while LogProcessorDown fires for the processor they came
    from, RegressionQualityDegraded is inhibited like the other verdicts."""
    sink = healthy
    regression = [ml_alert("reg_incident", "DataDriftDetected", "warning"),
                  ml_alert("reg_incident", "TargetDrift", "warning", column="target.duration_minutes",
                           method="wasserstein"),
                  ml_alert("reg_incident", "RegressionQualityDegraded", "critical", metric="mae")]
    stack.alertmanager.post_alerts(regression + incident("beside_reg"))
    for monitor in ("reg_incident", "beside_reg"):
        sink.wait_for("webhook", about(monitor), timeout=20)
    time.sleep(5)
    (message,) = chat_messages(sink, "webhook", "reg_incident")
    assert sorted(a["labels"]["alertname"] for a in message.body["alerts"]) == [
        "DataDriftDetected", "RegressionQualityDegraded", "TargetDrift"]
    assert message.body["groupLabels"] == {"monitor": "reg_incident"} and message.body["receiver"] == "ml-oncall"
    assert len(chat_messages(sink, "webhook", "beside_reg")) == 1

    down = {"labels": {"alertname": "LogProcessorDown", "severity": "critical", "team": "ml",
                       "job": "log_processor", "instance": "lp:8309", **LINKS},
            "annotations": {"summary": "Log processor lp:8309 is down", "dashboard": "ml-service-health"}}
    quality = ml_alert("reg_silenced", "RegressionQualityDegraded", "critical", metric="mae")
    stack.alertmanager.post_alerts([down])
    sink.wait_for("webhook", lambda m: any(a["labels"]["alertname"] == "LogProcessorDown"
                                           for a in m.body.get("alerts", [])), timeout=20)
    stack.alertmanager.post_alerts([down, quality])
    time.sleep(5)
    assert not chat_messages(sink, "webhook", "reg_silenced")
    stack.alertmanager.post_alerts([{**down, "endsAt": (datetime.now(timezone.utc) - timedelta(seconds=1)).isoformat()}])


def test_a_lone_feature_drift_reaches_chat_on_its_own(stack, healthy, mail):
    sink = healthy
    stack.alertmanager.post_alerts([ml_alert("lone_feature", "FeatureDrift", "info", feature="conv_rate", method="ks")])
    slack = sink.wait_for("slack", about("lone_feature"), timeout=20)
    webhook = sink.wait_for("webhook", about("lone_feature"), timeout=20)
    assert "[FIRING:1] monitor lone_feature: FeatureDrift" in slack.text
    assert "conv_rate (ks score 1.2e-05, threshold 0.05, p-value 0.0004)" in slack.text
    assert webhook.body["receiver"] == "ml-chat"
    time.sleep(3)
    assert chat_messages(sink, "telegram", "lone_feature") == [] and mails(mail, "lone_feature") == []


def test_slack_message_carries_context_and_the_three_links(stack, healthy):
    sink = healthy
    stack.alertmanager.post_alerts([ml_alert("links", "DataDriftDetected", "warning")])
    message = sink.wait_for("slack", about("links"), timeout=20)
    attachment = message.body["attachments"][0]
    assert message.body["channel"] == "#ml-alerts" and attachment["color"] == "warning"
    text = attachment["text"]
    assert "*Model:* driver_ranker 2026.12.03-d1c5b33" in text
    assert "*Window:* 800 rows, 780 labelled (label coverage 97.5%), 2026-12-03 14:55:00 to" in text
    assert "_what drifted:_ conv_rate (ks score 1.2e-05, threshold 0.05, p-value 0.0004)" in text
    grafana = "http://grafana.test:3000/d/ml-drift?var-monitor=links&from=1796309700000&to=1796309747000"
    assert f"<{grafana}|Grafana dashboard>" in text and attachment["title_link"] == grafana
    assert ("<http://kibana.test:5601/app/discover#/?_a=(index:'ml-events',query:(language:kuery,"
            "query:'model.name:%22driver_ranker%22'))&_g=(time:(from:'2026-12-03T14:55:00Z',"
            "to:'2026-12-03T14:55:47Z'))|Kibana: the window's events>") in text
    assert "<http://processor.test:8309/report?monitor=links|Drift report>" in text


def test_telegram_message_is_html_with_escaped_values_and_links(stack, healthy):
    sink = healthy
    alert = ml_alert("html_escape", "DataDriftDetected", "warning")
    alert["annotations"]["summary"] = "share <50% & rising"
    stack.alertmanager.post_alerts([alert])
    message = sink.wait_for("telegram", about("html_escape"), timeout=20)
    assert message.body["parse_mode"] == "HTML" and str(message.body["chat_id"]) == "-1001000000001"
    text = message.text
    assert text.startswith("<b>[FIRING:1] monitor html_escape: DataDriftDetected</b>")
    assert "share &lt;50% &amp; rising" in text
    assert '<a href="http://grafana.test:3000/d/ml-drift?var-monitor=html_escape&amp;from=1796309700000&amp;to=' in text
    assert '<a href="http://processor.test:8309/report?monitor=html_escape">Report</a>' in text
    assert "/bot<redacted>/sendMessage" in message.path.read_text()   # the token never lands in the inbox
    assert sink.telegram_token not in message.path.read_text()


def test_a_rule_alert_gets_the_team_label_from_prometheus_and_reaches_every_channel(stack, healthy, mail, dead_serving):
    sink = healthy
    webhook = sink.wait_for("webhook", lambda m: "ServingDown" in m.text, timeout=40)
    assert webhook.body["commonLabels"]["team"] == "platform" and webhook.body["receiver"] == "platform-oncall"
    slack = sink.wait_for("slack", lambda m: "ServingDown" in m.text, timeout=20)
    assert f"[FIRING:1] ServingDown on {dead_serving}" in slack.text and slack.body["channel"] == "#platform-alerts"
    sink.wait_for("telegram", lambda m: "ServingDown" in m.text, timeout=20)
    mail.wait_for(lambda m: m.subject == f"[FIRING:1] ServingDown instance={dead_serving}", timeout=20)


# --- faults ---------------------------------------------------------------------------------------

def arrival(sink, channel: str, monitor: str, timeout: float) -> float:
    started = time.monotonic()
    sink.wait_for(channel, about(monitor), timeout=timeout, poll=0.1)
    return time.monotonic() - started


def test_a_channel_that_is_down_is_retried_and_does_not_hold_up_the_others(stack, healthy, mail):
    sink = healthy
    sink.stop_channel("slack")
    try:
        stack.alertmanager.post_alerts([ml_alert("slack_down", "DataDriftDetected", "warning")])
        for channel in ("webhook", "telegram"):
            assert arrival(sink, channel, "slack_down", timeout=15) < 10
        mail.wait_for(lambda m: "monitor=slack_down" in m.subject, timeout=10)
        time.sleep(3)    # Alertmanager keeps retrying Slack meanwhile
        assert chat_messages(sink, "slack", "slack_down") == []
    finally:
        sink.start_channel("slack")
    assert arrival(sink, "slack", "slack_down", timeout=30) < 25      # delivered once it is back
    time.sleep(3)
    for channel in CHANNELS:
        assert len(chat_messages(sink, channel, "slack_down")) == 1, channel


def test_a_channel_answering_5xx_is_retried_until_it_accepts(stack, healthy):
    sink = healthy
    sink.fail("webhook", 503)
    before = sink.requests("webhook")
    stack.alertmanager.post_alerts([ml_alert("webhook_503", "DataDriftDetected", "warning")])
    sink.wait_for("slack", about("webhook_503"), timeout=15)
    deadline = time.monotonic() + 20
    while sink.requests("webhook") < before + 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sink.requests("webhook") >= before + 3, "Alertmanager did not retry the 503s"
    assert chat_messages(sink, "webhook", "webhook_503") == []
    sink.fail("webhook", None)
    message = sink.wait_for("webhook", about("webhook_503"), timeout=30)
    assert message.body["status"] == "firing"


def test_a_slow_channel_does_not_delay_the_others(stack, healthy):
    sink = healthy
    sink.delay("telegram", 6)
    stack.alertmanager.post_alerts([ml_alert("slow_telegram", "DataDriftDetected", "warning")])
    fast = arrival(sink, "slack", "slow_telegram", timeout=15)
    assert fast < 5
    assert chat_messages(sink, "telegram", "slow_telegram") == []
    sink.wait_for("telegram", about("slow_telegram"), timeout=30)   # arrives, late


# --- secrets ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("broken, problem", [("missing", "does not exist"), ("empty", "is empty")])
def test_a_missing_or_empty_secret_file_stops_the_start_naming_it(tmp_path, sink, mail, broken, problem):
    secrets = sink.write_secret_files(tmp_path / "secrets")
    target = secrets / "webhook_url"
    target.unlink() if broken == "missing" else target.write_text("\n")
    stack = AlertingStack(tmp_path / "alerting", {}, mail.address, timings=FAST, secrets_dir=secrets,
                          telegram_api_url=sink.url("telegram"))
    with pytest.raises(SecretFileError, match=rf"webhook_configs\[0\]\.url_file: secret file {target} {problem}"):
        stack.start()
    assert stack.alertmanager is None and stack.prometheus is None   # nothing was started
