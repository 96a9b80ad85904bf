"""SegmentDrift through the real Alertmanager of demo/alerting_stack.py into the loopback sinks: alone it
is one message per channel naming the segment with the incident's root cause; beside the monitor's
DataDriftDetected it joins that incident and is inhibited (the dataset message carries the root cause
and the worst segments), so the incident stays one message per channel."""
from __future__ import annotations

import time

import pytest

from demo.alerting_stack import missing_binaries
from demo.notification_sink import CHANNELS
from tests.test_alerting_channels import (about, chat_messages, dead_serving, healthy, mail, mails, ml_alert,  # noqa: F401
                                          sink, stack)

pytestmark = pytest.mark.skipif(bool(missing_binaries()),
                                reason=f"not installed: {', '.join(missing_binaries())} (make system-deps)")

CAUSE = ("1. conv_rate (drift x importance 1.4, score 3.50x its threshold, importance 40%) · "
         "worst segments: context.city=Saint-<b>\"Étienne\" (10% of the traffic)")


def segment_alert(monitor: str) -> dict:
    alert = ml_alert(monitor, "SegmentDrift", "warning", field="context.city", segment='Saint-<b>"Étienne"')
    alert["annotations"].update({"root_cause": CAUSE, "features": "conv_rate",
                                 "drifted": 'context.city=Saint-<b>"Étienne": conv_rate (3.50x its threshold)'})
    return alert


def test_a_lone_segment_drift_is_one_message_per_channel_naming_the_segment_and_the_root_cause(stack, healthy, mail):
    sink = healthy
    stack.alertmanager.post_alerts([segment_alert("lone_segment")])
    for channel in CHANNELS:
        sink.wait_for(channel, about("lone_segment"), timeout=20)
    email = mail.wait_for(lambda m: "monitor=lone_segment" in m.subject, timeout=20)
    time.sleep(5)
    for channel in CHANNELS:
        assert len(chat_messages(sink, channel, "lone_segment")) == 1, channel
    assert len(mails(mail, "lone_segment")) == 1
    (webhook,) = chat_messages(sink, "webhook", "lone_segment")
    (alert,) = webhook.body["alerts"]
    assert alert["labels"]["segment"] == 'Saint-<b>"Étienne"' and alert["annotations"]["root_cause"] == CAUSE
    (slack,) = chat_messages(sink, "slack", "lone_segment")
    assert "*Root cause:* 1. conv_rate" in slack.text and 'Saint-<b>"Étienne"' in slack.text
    (telegram,) = chat_messages(sink, "telegram", "lone_segment")
    assert "<b>Root cause:</b> 1. conv_rate" in telegram.text
    assert "Saint-&lt;b&gt;&#34;Étienne&#34;" in telegram.text and 'Saint-<b>"' not in telegram.text
    assert "Root cause: 1. conv_rate" in email.body and "segment=Saint-<b>\"Étienne\"" in email.body


def test_beside_the_dataset_drift_a_segment_drift_joins_the_incident_and_stays_quiet(stack, healthy, mail):
    sink = healthy
    dataset = ml_alert("segment_joins", "DataDriftDetected", "warning")
    dataset["annotations"]["root_cause"] = CAUSE
    stack.alertmanager.post_alerts([dataset, segment_alert("segment_joins")])
    for channel in CHANNELS:
        sink.wait_for(channel, about("segment_joins"), timeout=20)
    time.sleep(5)
    for channel in CHANNELS:
        assert len(chat_messages(sink, channel, "segment_joins")) == 1, channel
    (webhook,) = chat_messages(sink, "webhook", "segment_joins")
    assert [a["labels"]["alertname"] for a in webhook.body["alerts"]] == ["DataDriftDetected"]
    (slack,) = chat_messages(sink, "slack", "segment_joins")
    assert slack.text.count("*Root cause:*") == 1 and "worst segments: context.city=Saint-" in slack.text
