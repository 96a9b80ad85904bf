"""An SMTP sink for alert e-mails: receives on a loopback port, keeps every message as a file.

Stands in for Mailpit where there is no Docker (the embedded demo and the alerting tests). Each
message is written as `<directory>/<received-ns>-<n>.eml`, so the directory is the mailbox: it can
be read while the sink runs, after it stops, or by another process.
"""
from __future__ import annotations

import email
import email.policy
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from aiosmtpd.controller import Controller

DEFAULT_DIRECTORY = Path("var/mail")


@dataclass(frozen=True)
class MailMessage:
    path: Path
    subject: str
    sender: str
    recipients: tuple[str, ...]
    body: str

    @classmethod
    def from_file(cls, path: Path) -> "MailMessage":
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        part = message.get_body(preferencelist=("plain", "html"))
        body = part.get_content().replace("\r\n", "\n") if part is not None else ""  # SMTP sends CRLF
        recipients = tuple(a.strip() for a in str(message.get("To", "")).split(",") if a.strip())
        return cls(path=path, subject=str(message.get("Subject", "")), sender=str(message.get("From", "")),
                   recipients=recipients, body=body)


class _SaveToDirectory:
    """aiosmtpd handler: accept every message and write its raw bytes to a new file."""

    def __init__(self, directory: Path):
        self.directory = directory
        self._count = 0
        self._lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 (aiosmtpd's name)
        with self._lock:
            self._count += 1
            name = f"{time.time_ns()}-{self._count:05d}.eml"
        content = envelope.original_content or envelope.content
        data = content if isinstance(content, bytes) else content.encode()
        partial = self.directory / (name + ".part")
        partial.write_bytes(data)
        partial.rename(self.directory / name)  # readers never see half a message
        return "250 Message accepted for delivery"


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class MailSink:
    """`with MailSink(tmp_path) as sink:` → point an SMTP client at `sink.address`, read `sink.messages()`."""

    def __init__(self, directory: Path | str = DEFAULT_DIRECTORY, host: str = "127.0.0.1", port: int = 0):
        self.directory = Path(directory)
        self.host = host
        self.port = port
        self._controller: Controller | None = None

    @property
    def address(self) -> str:
        """`host:port`, the form Alertmanager's `smtp_smarthost` takes."""
        return f"{self.host}:{self.port}"

    def start(self) -> "MailSink":
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = _free_port(self.host)
        self._controller = Controller(_SaveToDirectory(self.directory), hostname=self.host, port=self.port)
        self._controller.start()  # returns once the server answers
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> "MailSink":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def messages(self) -> list[MailMessage]:
        """Every message in the directory, oldest first."""
        if not self.directory.is_dir():
            return []
        return [MailMessage.from_file(p) for p in sorted(self.directory.glob("*.eml"))]

    def wait_for(self, predicate: Callable[[MailMessage], bool], timeout: float = 30.0,
                 poll: float = 0.2) -> MailMessage:
        """The first message that satisfies `predicate`, polling until `timeout` seconds have passed."""
        deadline = time.monotonic() + timeout
        while True:
            for message in self.messages():
                if predicate(message):
                    return message
            if time.monotonic() >= deadline:
                subjects = [m.subject for m in self.messages()] or "none"
                raise TimeoutError(f"no matching e-mail in {self.directory} after {timeout:.0f}s "
                                   f"(received: {subjects})")
            time.sleep(poll)
