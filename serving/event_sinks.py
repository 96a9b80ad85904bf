"""Where ml-events go: a rotating JSON-lines file, Fluentd (forward protocol), or both.

A sink never blocks or fails a prediction. Every drop, found on the spot or later (Fluentd's sender
thread giving up on a buffer), is reported through the sink's `on_drop(count)` callback, which
`EventLog` points at /metrics; each sink logs its first drop once, not per event.
"""
from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Protocol

import msgpack
from fluent import asyncsender

from serving.metrics import ServingMetrics
from serving.settings import ServingSettings

log = logging.getLogger("serving.events")
DropCallback = Callable[[int], None]


def encode_line(event: Mapping[str, Any]) -> bytes:
    """One event as one JSON line (UTF-8, compact, newline-terminated)."""
    return (json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


class Sink(Protocol):
    name: str
    on_drop: DropCallback

    def emit(self, event: Mapping[str, Any]) -> bool: ...

    def close(self) -> None: ...


class _WarnOnce:
    def __init__(self, sink: str) -> None:
        self._sink, self._warned, self._lock = sink, False, threading.Lock()

    def __call__(self, reason: str) -> None:
        with self._lock:
            if self._warned:
                return
            self._warned = True
        log.warning("event sink %s is dropping events (%s); further drops are only counted in "
                    "serving_events_dropped_total{sink=%r}", self._sink, reason, self._sink)


class FileSink:
    """Appends one JSON line per event to `path`; rotates to .1, .2 ... when it would exceed max_bytes.

    Each line is written with a single write() on an O_APPEND descriptor, so a tailing reader only
    ever sees whole lines, and several worker processes can share the file. Rotation happens under
    an flock; a process whose file was rotated by another one notices the new inode and reopens.
    """

    name = "file"

    def __init__(self, path: Path, max_bytes: int = 50 * 1024 * 1024, backups: int = 5) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = max(1, backups)
        self.on_drop: DropCallback = lambda n: None
        self._warn = _WarnOnce(self.name)
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._size = 0

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._size = os.fstat(self._fd).st_size

    def _close_fd(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _rotated_elsewhere(self) -> bool:
        try:
            return os.stat(self.path).st_ino != os.fstat(self._fd).st_ino
        except FileNotFoundError:
            return True

    def _rotate(self) -> None:
        with open(self.path.with_name(self.path.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not self._rotated_elsewhere() and os.stat(self.path).st_size > 0:
                for index in range(self.backups - 1, 0, -1):
                    older = self.path.with_name(f"{self.path.name}.{index}")
                    if older.exists():
                        older.replace(self.path.with_name(f"{self.path.name}.{index + 1}"))
                self.path.replace(self.path.with_name(f"{self.path.name}.1"))
            self._close_fd()
            self._open()

    def emit(self, event: Mapping[str, Any]) -> bool:
        line = encode_line(event)
        with self._lock:
            try:
                if self._fd is None or self._rotated_elsewhere():
                    self._close_fd()
                    self._open()
                if self._size > 0 and self._size + len(line) > self.max_bytes:
                    self._rotate()
                written = os.write(self._fd, line)
                self._size += written
                if written != len(line):  # only on a full disk; the event counts as dropped
                    raise OSError(errno.ENOSPC, f"short write ({written} of {len(line)} bytes)")
                return True
            except OSError as exc:
                self._close_fd()
                self._warn(f"{self.path}: {exc}")
                self.on_drop(1)
                return False

    def close(self) -> None:
        with self._lock:
            self._close_fd()


def count_packed(buffer: bytes) -> int:
    """How many forward-protocol messages a fluent-logger pending buffer holds (at least 1)."""
    unpacker = msgpack.Unpacker(raw=False)
    try:
        unpacker.feed(buffer)
        return max(1, sum(1 for _ in unpacker))
    except Exception:
        return 1


class _BackoffSender(asyncsender.FluentSender):
    """fluent-logger's async sender, changed so that it costs the request threads next to nothing.

    - The sender thread wakes every `flush_interval` seconds and sends everything queued in one write,
      instead of being woken by every event (each wake-up is a GIL hand-off that delays requests).
    - After a failed connect it does not dial the receiver again for `retry_after` seconds.
    """

    def __init__(self, *args, retry_after: float = 1.0, flush_interval: float = 0.05, **kwargs) -> None:
        self._retry_after = retry_after
        self._flush_interval = flush_interval
        self._next_attempt = 0.0
        self._wake = threading.Event()
        super().__init__(*args, **kwargs)

    def close(self, flush: bool = True) -> None:
        self._wake.set()
        super().close(flush)

    def _drain(self) -> tuple[list[bytes], bool]:
        packets, done = [], False
        while True:
            try:
                item = self._queue.get(block=False)
            except queue.Empty:
                return packets, done
            if item is asyncsender._TOMBSTONE:
                done = True
            else:
                packets.append(item)

    def _send_loop(self) -> None:
        send_internal = super()._send_internal
        try:
            done = False
            while not done:
                self._wake.wait(self._flush_interval)
                packets, done = self._drain()
                if packets or self.pendings:  # pendings: what a down receiver left behind; retried per tick
                    send_internal(b"".join(packets))  # msgpack packets simply concatenate
        finally:
            self._close()

    def _reconnect(self) -> None:
        if self.socket is None and time.monotonic() < self._next_attempt:
            raise ConnectionRefusedError(errno.ECONNREFUSED, "fluentd unreachable (waiting to retry)")
        try:
            super()._reconnect()
        except OSError:
            self._next_attempt = time.monotonic() + self._retry_after
            raise


class FluentdSink:
    """Sends each event as a forward-protocol record with tag `ml.events`, batched by a background thread.

    `emit` only enqueues (never blocks: the queue is circular, so when it is full the oldest event
    is discarded and counted). While the receiver is down, the sender keeps up to `buffer_bytes`
    of packed events and sends them when it is back; beyond that the buffer is discarded and counted.
    """

    name = "fluentd"

    def __init__(self, host: str = "127.0.0.1", port: int = 24224, tag: str = "ml.events", *,
                 queue_size: int = 10_000, buffer_bytes: int = 1024 * 1024, timeout: float = 1.0,
                 retry_after: float = 1.0) -> None:
        self.on_drop: DropCallback = lambda n: None
        self._warn = _WarnOnce(self.name)
        self.address = f"{host}:{port}"
        self._sender = _BackoffSender(
            tag, host=host, port=port, bufmax=buffer_bytes, timeout=timeout, retry_after=retry_after,
            queue_maxsize=queue_size, queue_circular=True,
            queue_overflow_handler=lambda _discarded: self._dropped(1, "queue full"),
            buffer_overflow_handler=lambda pending: self._dropped(count_packed(pending), "receiver unreachable"),
        )

    def _dropped(self, count: int, reason: str) -> None:
        self._warn(f"{reason} at {self.address}")
        self.on_drop(count)

    def emit(self, event: Mapping[str, Any]) -> bool:
        try:
            if self._sender.emit(None, dict(event)):
                return True
            reason = "sink closed"
        except Exception as exc:  # a broken sender must not fail a request
            reason = f"emit failed: {exc}"
        self._dropped(1, reason)
        return False

    def close(self, timeout: float = 2.0) -> None:
        """Flush what is queued, but give up after `timeout` seconds (a dead receiver must not hang exit)."""
        closer = threading.Thread(target=self._sender.close, name="fluentd-sink-close", daemon=True)
        closer.start()
        closer.join(timeout)


class EventLog:
    """Fans each event out to the sinks and counts emitted/dropped events per sink in the metrics."""

    def __init__(self, sinks: Iterable[Sink], metrics: ServingMetrics | None = None) -> None:
        self.sinks = list(sinks)
        self._emitted = {}
        for sink in self.sinks:
            if metrics is not None:
                self._emitted[sink.name] = metrics.events_emitted.labels(sink.name)
                sink.on_drop = metrics.events_dropped.labels(sink.name).inc

    def emit(self, event: Mapping[str, Any]) -> None:
        for sink in self.sinks:
            counter = self._emitted.get(sink.name)
            if counter is not None:
                counter.inc()
            try:
                sink.emit(event)
            except Exception:  # defensive: a sink bug must never reach the request
                log.exception("event sink %s failed", sink.name)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


def build_sinks(settings: ServingSettings) -> list[Sink]:
    """The sinks named by settings.event_sinks ("file", "fluentd"; none when empty)."""
    sinks: list[Sink] = []
    for name in settings.event_sinks:
        if name == "file":
            sinks.append(FileSink(settings.path("events"), settings.events_max_bytes, settings.events_backups))
        elif name == "fluentd":
            sinks.append(FluentdSink(settings.fluentd_host, settings.fluentd_port, settings.fluentd_tag,
                                     queue_size=settings.fluentd_queue_size,
                                     buffer_bytes=settings.fluentd_buffer_bytes,
                                     timeout=settings.fluentd_timeout))
    return sinks
