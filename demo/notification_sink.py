"""A loopback stand-in for Slack, a generic webhook receiver and the Telegram Bot API.

Alertmanager's own integrations (slack_configs, webhook_configs, telegram_configs) are pointed at it,
one HTTP server per channel, so one channel can be stopped while the others keep answering. Each
accepted message is written as `<directory>/<channel>/<received-ns>-<n>.json` (the request path,
token redacted, and the JSON body), so the directory is the inbox, as with demo/mail_sink.py.

Shapes answered: Slack incoming webhooks (POST a JSON body with `text`/`attachments`, answer `ok`),
Alertmanager's webhook payload (version "4", `status`, `alerts`), and the Bot API's
`POST /bot<token>/sendMessage` (answer `{"ok": true, "result": <Message>}`). Faults for the tests:
`fail(channel, status)` answers with an error, `delay(channel, seconds)` answers late, `stop_channel`
closes the port (connection refused) and `start_channel` opens it again.

    python -m demo.notification_sink --directory var/notifications   # the compose service
"""
from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

from common.net import free_port

CHANNELS = ("slack", "webhook", "telegram")
# Alertmanager's heartbeat receiver (the always-firing Watchdog, docs/alerts.md#watchdog): a port of its
# own, recorded under <directory>/heartbeat/, and no channel of CHANNELS, so it is never counted as a
# message to people.
HEARTBEAT = "heartbeat"
DEFAULT_DIRECTORY = Path("var/notifications")
STATUS = re.compile(r"\[(FIRING|RESOLVED)")
TELEGRAM_PATH = re.compile(r"^/bot([^/]+)/sendMessage$")


@dataclass(frozen=True)
class Notification:
    """One received message: `status` is firing/resolved (from the payload or the message's own tag)."""
    channel: str
    path: Path
    received_at: float
    status: str
    text: str                 # what a person reads: the Slack attachment, the Telegram text, the webhook summary
    body: dict[str, Any]

    @classmethod
    def from_file(cls, path: Path) -> "Notification":
        record = json.loads(path.read_text())
        channel, body = record["channel"], record["body"]
        text = message_text(channel, body)
        if channel == "webhook":
            status = str(body.get("status", ""))
        else:
            found = STATUS.search(text)
            status = found[1].lower() if found else ""
        return cls(channel=channel, path=path, received_at=record["received_at"], status=status, text=text, body=body)


def message_text(channel: str, body: dict[str, Any]) -> str:
    """The readable part of a message body (pure)."""
    if channel == "slack":
        parts = [body.get("text") or ""]
        for attachment in body.get("attachments") or []:
            parts += [attachment.get("title") or "", attachment.get("text") or ""]
        return "\n".join(part for part in parts if part)
    if channel == "telegram":
        return str(body.get("text", ""))
    annotations = body.get("commonAnnotations") or {}
    names = sorted({alert.get("labels", {}).get("alertname", "") for alert in body.get("alerts", [])})
    return f"[{str(body.get('status', '')).upper()}] {', '.join(names)}: {annotations.get('summary', '')}".strip()


def validate(channel: str, path: str, body: Any) -> str | None:
    """Why a request is not what the channel's API takes (None when it is)."""
    if not isinstance(body, dict):
        return "the body is not a JSON object"
    if channel == "slack":
        if not (body.get("text") or body.get("attachments") or body.get("blocks")):
            return "a Slack message needs text, attachments or blocks"
    elif channel in ("webhook", HEARTBEAT):
        missing = [key for key in ("version", "status", "alerts", "groupKey") if key not in body]
        if missing:
            return f"not an Alertmanager webhook payload: missing {', '.join(missing)}"
    elif channel == "telegram":
        if not TELEGRAM_PATH.match(path):
            return f"unknown Bot API method {path!r} (only /bot<token>/sendMessage)"
        if "chat_id" not in body or not body.get("text"):
            return "sendMessage needs chat_id and text"
    return None


class _Channel:
    """One channel's HTTP server and fault switches."""

    def __init__(self, sink: "NotificationSink", name: str, port: int):
        self.sink, self.name, self.port = sink, name, port
        self.fail_status: int | None = None
        self.delay_seconds = 0.0
        self.requests = 0               # every request, accepted or not (the tests count retries)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        handler = _handler_for(self)
        self._server = ThreadingHTTPServer((self.sink.host, self.port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"sink-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
            self._thread.join(5)

    @property
    def running(self) -> bool:
        return self._server is not None


def _handler_for(channel: _Channel):
    class Handler(BaseHTTPRequestHandler):
        server_version = "mlmon-notification-sink"

        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            channel.requests += 1
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if channel.delay_seconds:
                time.sleep(channel.delay_seconds)
            if channel.fail_status:
                return self._reply(channel.fail_status, {"ok": False, "error_code": channel.fail_status,
                                                         "description": "sink set to fail"})
            try:
                body = json.loads(raw or b"null")
            except ValueError:
                return self._reply(400, {"ok": False, "error_code": 400, "description": "body is not JSON"})
            problem = validate(channel.name, self.path, body)
            if problem:
                return self._reply(400, {"ok": False, "error_code": 400, "description": problem})
            channel.sink.save(channel.name, TELEGRAM_PATH.sub("/bot<redacted>/sendMessage", self.path), body)
            if channel.name == "slack":
                return self._reply(200, "ok")
            if channel.name == "telegram":
                return self._reply(200, {"ok": True, "result": {
                    "message_id": channel.requests, "date": int(time.time()), "text": body["text"],
                    "chat": {"id": _chat_id(body["chat_id"]), "type": "group"}}})
            return self._reply(200, {"status": "ok"})

        def _reply(self, status: int, payload: Any) -> None:
            data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain" if isinstance(payload, str) else "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args) -> None:  # noqa: A002 (http.server's signature)
            pass

    return Handler


def _chat_id(raw: Any) -> int | str:
    """Bot API chat ids are integers (telebot sends them as strings; its reply parser wants a number)."""
    try:
        return int(raw)
    except (TypeError, ValueError):
        return str(raw)


class NotificationSink:
    """`with NotificationSink(tmp_path) as sink:` → `sink.url("slack")`, `sink.messages("slack")`."""

    def __init__(self, directory: Path | str = DEFAULT_DIRECTORY, host: str = "127.0.0.1",
                 ports: dict[str, int] | None = None):
        self.directory = Path(directory)
        self.host = host
        ports = ports or {}
        self._channels = {name: _Channel(self, name, ports.get(name) or 0) for name in (*CHANNELS, HEARTBEAT)}
        self._count = 0
        self._lock = threading.Lock()
        # The Slack and webhook paths and the bot token stand for the secrets of the real services.
        self.slack_path = f"/services/T0DEMO/B0DEMO/{secrets.token_hex(12)}"
        self.webhook_path = f"/alerts/{secrets.token_hex(12)}"
        self.telegram_token = f"{secrets.randbelow(10 ** 9)}:{secrets.token_urlsafe(24)}"
        self.heartbeat_path = f"/heartbeat/{secrets.token_hex(12)}"

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> "NotificationSink":
        for name, channel in self._channels.items():
            (self.directory / name).mkdir(parents=True, exist_ok=True)
            channel.port = channel.port or free_port(self.host)
            channel.start()
        return self

    def stop(self) -> None:
        for channel in self._channels.values():
            channel.stop()

    def __enter__(self) -> "NotificationSink":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- faults -------------------------------------------------------------------------------
    def stop_channel(self, name: str) -> None:
        """Close the channel's port: Alertmanager's requests get connection refused."""
        self._channels[name].stop()

    def start_channel(self, name: str) -> None:
        """Listen again on the same port."""
        self._channels[name].start()

    def fail(self, name: str, status: int | None = 503) -> None:
        """Answer every request of the channel with `status` (None: answer normally again)."""
        self._channels[name].fail_status = status

    def delay(self, name: str, seconds: float) -> None:
        self._channels[name].delay_seconds = seconds

    def requests(self, name: str) -> int:
        return self._channels[name].requests

    # --- addresses and secrets ------------------------------------------------------------------
    def port(self, name: str) -> int:
        return self._channels[name].port

    def base(self, name: str) -> str:
        return f"http://{self.host}:{self.port(name)}"

    def url(self, name: str) -> str:
        """What Alertmanager is given: the Slack webhook URL, the webhook URL, or the Bot API base."""
        return self.base(name) + {"slack": self.slack_path, "webhook": self.webhook_path, "telegram": "",
                                  HEARTBEAT: self.heartbeat_path}[name]

    def write_secret_files(self, directory: Path) -> Path:
        """The secret files prometheus/alertmanager.yml reads (as `make compose-env` writes them), pointing here."""
        directory.mkdir(parents=True, exist_ok=True)
        for name, value in (("slack_api_url", self.url("slack")), ("webhook_url", self.url("webhook")),
                            ("telegram_bot_token", self.telegram_token), ("heartbeat_url", self.url(HEARTBEAT))):
            write_secret(directory / name, value)
        return directory

    # --- the inbox ----------------------------------------------------------------------------
    def save(self, channel: str, request_path: str, body: dict[str, Any]) -> Path:
        with self._lock:
            self._count += 1
            name = f"{time.time_ns()}-{self._count:05d}.json"
        record = {"channel": channel, "received_at": time.time(), "request_path": request_path, "body": body}
        target = self.directory / channel / name
        partial = target.with_name(name + ".part")
        partial.write_text(json.dumps(record, indent=2, ensure_ascii=False))
        partial.rename(target)  # readers never see half a message
        return target

    def messages(self, channel: str) -> list[Notification]:
        return read_messages(self.directory, channel)

    def wait_for(self, channel: str, predicate: Callable[[Notification], bool], timeout: float = 30.0,
                 poll: float = 0.2) -> Notification:
        """The first message of `channel` that satisfies `predicate`, polling until `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            for message in self.messages(channel):
                if predicate(message):
                    return message
            if time.monotonic() >= deadline:
                seen = [m.text.splitlines()[0] if m.text else "" for m in self.messages(channel)] or "none"
                raise TimeoutError(f"no matching {channel} message in {self.directory / channel} after "
                                   f"{timeout:.0f}s (received: {seen})")
            time.sleep(poll)


def read_messages(directory: Path, channel: str) -> list[Notification]:
    """Every message the sink wrote for `channel` under `directory`, oldest first."""
    folder = Path(directory) / channel
    return [Notification.from_file(p) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []


def write_secret(path: Path, value: str) -> None:
    """`value` into `path`, readable by its owner only (created 0600, never briefly wider)."""
    path.unlink(missing_ok=True)
    with open(path, "w", opener=lambda p, flags: os.open(p, flags, 0o600)) as out:
        out.write(value + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.notification_sink", description=__doc__.splitlines()[0])
    parser.add_argument("--directory", type=Path, default=DEFAULT_DIRECTORY)
    parser.add_argument("--host", default="0.0.0.0")
    for name, port in zip((*CHANNELS, HEARTBEAT), (9101, 9102, 9103, 9104)):
        parser.add_argument(f"--{name}-port", type=int, default=port)
    args = parser.parse_args(argv)
    sink = NotificationSink(args.directory, host=args.host,
                            ports={name: getattr(args, f"{name}_port") for name in (*CHANNELS, HEARTBEAT)}).start()
    print(f"notification sink: {', '.join(f'{n} on :{sink.port(n)}' for n in (*CHANNELS, HEARTBEAT))} "
          f"→ {args.directory}/<channel>/", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        sink.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
