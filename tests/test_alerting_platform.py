"""The alerting path checks itself (issue 32, point 5), on a real Prometheus + Alertmanager rendered by
demo/alerting_stack.py, with the chat sink and the mail sink as the receivers' far ends.

The Watchdog rule fires in Prometheus from its first evaluation and, pushed through the real
Alertmanager, reaches the heartbeat endpoint only: no e-mail, Slack, webhook or Telegram message
(the channels the demo's story counts). A platform alert without a team goes to platform-oncall's
channels as any other, and a scrape target that is down raises TargetDown.
"""
from __future__ import annotations

import time

import pytest

from demo.alerting_stack import FAST, AlertingStack, missing_binaries
from demo.mail_sink import MailSink
from demo.notification_sink import CHANNELS, HEARTBEAT, NotificationSink
from tests.conftest import free_port

pytestmark = pytest.mark.skipif(bool(missing_binaries()),
                                reason=f"not installed: {', '.join(missing_binaries())} (make system-deps)")


def poll(check, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"{what} not met after {timeout:.0f}s"
        time.sleep(0.2)


def test_watchdog_reaches_the_heartbeat_only_and_platform_alerts_reach_people(tmp_path):
    dead = f"127.0.0.1:{free_port()}"    # a shipper /metrics nobody serves: TargetDown after FAST's 2 s
    with NotificationSink(tmp_path / "chat") as chat, MailSink(tmp_path / "mail") as mail, \
            AlertingStack(tmp_path / "stack", {"shipper": [dead]}, mail.address, timings=FAST,
                          secrets_dir=chat.write_secret_files(tmp_path / "secrets"),
                          telegram_api_url=chat.url("telegram")) as stack:
        firing = lambda name: [a for a in stack.prometheus.alerts()
                               if a["labels"]["alertname"] == name and a["state"] == "firing"]
        assert poll(lambda: firing("Watchdog"), what="Watchdog firing in Prometheus")[0]["labels"] == \
            {"alertname": "Watchdog", "severity": "info"}
        down = poll(lambda: firing("TargetDown"), what="TargetDown for the dead shipper target")
        assert down[0]["labels"]["job"] == "shipper" and down[0]["labels"]["instance"] == dead

        # Prometheus resends a firing alert once a minute: push the Watchdog as it does, now
        stack.alertmanager.post_alerts([{"labels": {"alertname": "Watchdog", "severity": "info"},
                                         "annotations": {"summary": "heartbeat"}}])
        beat = poll(lambda: chat.messages(HEARTBEAT), what="a heartbeat")[0]
        assert beat.body["receiver"] == "heartbeat" and beat.body["status"] == "firing"
        assert [a["labels"]["alertname"] for a in beat.body["alerts"]] == ["Watchdog"]

        # TargetDown (no team) reaches platform-oncall's channels ...
        poll(lambda: all(any("TargetDown" in m.text for m in chat.messages(c)) for c in CHANNELS)
             and any("TargetDown" in m.subject for m in mail.messages()), what="TargetDown on every channel")
        # ... and nothing of the Watchdog reaches a person
        time.sleep(3)   # FAST's group_interval: any further flush would have come
        for channel in CHANNELS:
            assert not [m for m in chat.messages(channel) if "Watchdog" in m.text + str(m.body)], channel
        assert not [m for m in mail.messages() if "Watchdog" in m.subject]
        assert all(m.body["receiver"] == "heartbeat" for m in chat.messages(HEARTBEAT))
