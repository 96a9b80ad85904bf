"""demo/notification_sink.py on its own: each channel's API shape, what is stored, bad requests, faults."""
from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

import pytest

from demo.notification_sink import CHANNELS, NotificationSink, read_messages


def post(url: str, body: bytes | dict, timeout: float = 5.0) -> tuple[int, bytes]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


WEBHOOK = {"version": "4", "groupKey": "{}:{monitor=\"m\"}", "status": "firing", "receiver": "ml-oncall",
           "alerts": [{"labels": {"alertname": "DataDriftDetected"}}], "commonAnnotations": {"summary": "drift on m"}}


@pytest.fixture
def sink(tmp_path):
    with NotificationSink(tmp_path) as running:
        yield running


def test_each_channel_answers_in_its_api_shape_and_stores_the_message(sink, tmp_path):
    assert post(sink.url("slack"), {"attachments": [{"title": "[FIRING:1] monitor m: X", "text": "body"}]}) == (200, b"ok")
    assert post(sink.url("webhook"), WEBHOOK)[0] == 200
    status, raw = post(f"{sink.url('telegram')}/bot{sink.telegram_token}/sendMessage",
                       {"chat_id": "-100123", "text": "<b>[RESOLVED] monitor m: X</b>", "parse_mode": "HTML"})
    reply = json.loads(raw)
    assert status == 200 and reply["ok"] is True and reply["result"]["chat"]["id"] == -100123
    slack, webhook, telegram = (read_messages(tmp_path, c) for c in CHANNELS)
    assert [(m.status, m.text) for m in slack] == [("firing", "[FIRING:1] monitor m: X\nbody")]
    assert [(m.status, m.text) for m in webhook] == [("firing", "[FIRING] DataDriftDetected: drift on m")]
    assert [m.status for m in telegram] == ["resolved"]
    stored = telegram[0].path.read_text()
    assert sink.telegram_token not in stored and '"request_path": "/bot<redacted>/sendMessage"' in stored


@pytest.mark.parametrize("channel, path, body, problem", [
    ("slack", "", b"not json", "body is not JSON"),
    ("slack", "", {"username": "x"}, "a Slack message needs text, attachments or blocks"),
    ("webhook", "", {"status": "firing"}, "missing version, alerts, groupKey"),
    ("telegram", "/bot1:x/getMe", {"chat_id": 1, "text": "x"}, "unknown Bot API method '/bot1:x/getMe'"),
    ("telegram", "/bot1:x/sendMessage", {"text": "x"}, "sendMessage needs chat_id and text"),
])
def test_a_request_the_api_would_refuse_gets_a_400_naming_why_and_is_not_stored(sink, tmp_path, channel, path, body, problem):
    status, raw = post(sink.url(channel) + path, body)
    assert status == 400 and problem in json.loads(raw)["description"]
    assert read_messages(tmp_path, channel) == []


def test_faults_fail_and_stop_then_recover(sink, tmp_path):
    sink.fail("webhook", 503)
    assert post(sink.url("webhook"), WEBHOOK)[0] == 503 and sink.requests("webhook") == 1
    sink.fail("webhook", None)
    assert post(sink.url("webhook"), WEBHOOK)[0] == 200
    port = sink.port("slack")
    sink.stop_channel("slack")
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    assert post(sink.url("webhook"), WEBHOOK)[0] == 200       # the other channels keep answering
    sink.start_channel("slack")
    assert sink.port("slack") == port and post(sink.url("slack"), {"text": "[FIRING] back"})[0] == 200
    assert len(read_messages(tmp_path, "webhook")) == 2 and len(read_messages(tmp_path, "slack")) == 1


def test_secret_files_point_at_the_sink_and_are_private(sink, tmp_path):
    directory = sink.write_secret_files(tmp_path / "secrets")
    assert (directory / "slack_api_url").read_text().strip() == sink.url("slack")
    assert (directory / "webhook_url").read_text().strip() == sink.url("webhook")
    assert (directory / "telegram_bot_token").read_text().strip() == sink.telegram_token
    assert (directory / "heartbeat_url").read_text().strip() == sink.url("heartbeat")
    assert {oct(p.stat().st_mode & 0o777) for p in directory.iterdir()} == {"0o600"}


def test_the_heartbeat_has_its_own_port_and_inbox_and_is_no_chat_channel(sink, tmp_path):
    """The Watchdog's heartbeats land under heartbeat/, never in a channel the demo's story counts."""
    from demo.notification_sink import CHANNELS, HEARTBEAT
    assert HEARTBEAT not in CHANNELS
    assert sink.port(HEARTBEAT) not in {sink.port(c) for c in CHANNELS}
    assert post(sink.url(HEARTBEAT), WEBHOOK)[0] == 200
    assert len(read_messages(tmp_path, HEARTBEAT)) == 1
    assert all(not read_messages(tmp_path, channel) for channel in CHANNELS)
