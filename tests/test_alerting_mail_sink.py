"""demo/mail_sink.py against a real SMTP conversation (smtplib → aiosmtpd on loopback)."""
from __future__ import annotations

import smtplib
from email.message import EmailMessage

import pytest

from demo.mail_sink import MailSink


def send(address: str, subject: str, body: str, to: str = "oncall@mlmon.local") -> None:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "alertmanager@mlmon.local", to, subject
    message.set_content(body)
    host, port = address.split(":")
    with smtplib.SMTP(host, int(port), timeout=5) as client:
        client.send_message(message)


def test_every_message_becomes_a_file_with_subject_and_body(tmp_path):
    with MailSink(tmp_path / "mail") as sink:
        send(sink.address, "[FIRING:1] DataDriftDetected", "Features: conv_rate, acc_rate\n")
        send(sink.address, "[RESOLVED] DataDriftDetected", "all clear\n", to="a@x.local, b@x.local")
        resolved = sink.wait_for(lambda m: m.subject.startswith("[RESOLVED]"), timeout=5)
    files = sorted((tmp_path / "mail").glob("*.eml"))
    assert len(files) == 2 and not list((tmp_path / "mail").glob("*.part"))
    first, second = sink.messages()  # readable after stop, oldest first
    assert first.subject == "[FIRING:1] DataDriftDetected"
    assert "conv_rate, acc_rate" in first.body
    assert first.sender == "alertmanager@mlmon.local"
    assert second == resolved and second.recipients == ("a@x.local", "b@x.local")


def test_wait_for_times_out_naming_what_did_arrive(tmp_path):
    with MailSink(tmp_path) as sink:
        send(sink.address, "something else", "x")
        with pytest.raises(TimeoutError, match="something else"):
            sink.wait_for(lambda m: "DataDriftDetected" in m.subject, timeout=0.5, poll=0.05)


def test_sink_stops_listening(tmp_path):
    sink = MailSink(tmp_path).start()
    address = sink.address
    sink.stop()
    with pytest.raises(OSError):
        send(address, "late", "x")


def test_messages_of_an_empty_or_missing_directory(tmp_path):
    assert MailSink(tmp_path / "nothing-yet").messages() == []
