"""Helpers for the serving tests: one built world (data + model + Feast) per session, a forward receiver.

The fixtures `serving_world`, `model`, `duration_model` and `online` live here (test modules import them); the world
is cached so the slow part (training, Feast apply + materialize) runs once per session.
"""
from __future__ import annotations

import io
import json
import gzip
import shutil
import socket
import tempfile
import threading
import time
import atexit
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import msgpack
import pytest

from serving.features import OnlineFeatures
from serving.model import load_model, load_regression_model
from serving.settings import ServingSettings

_WORLD: dict[str, "World"] = {}


@dataclass(frozen=True)
class World:
    var_dir: Path
    settings: ServingSettings  # event sinks off; tests choose their own


def world() -> World:
    """var/ with generated data, a trained model and a materialized Feast store (built once)."""
    if "world" not in _WORLD:
        from serving.bootstrap import bootstrap

        var_dir = Path(tempfile.mkdtemp(prefix="serving-world-"))
        atexit.register(shutil.rmtree, var_dir, True)
        settings = ServingSettings(var_dir=var_dir, event_sinks=())
        bootstrap(settings, log=lambda line: None)
        _WORLD["world"] = World(var_dir, settings)
    return _WORLD["world"]


@pytest.fixture(scope="module")
def serving_world():
    return world()


@pytest.fixture(scope="module")
def model(serving_world):
    return load_model(serving_world.settings.path("model"))


@pytest.fixture(scope="module")
def duration_model(serving_world):
    return load_regression_model(serving_world.settings.path("duration_model"))


@pytest.fixture(scope="module")
def online(serving_world):
    return OnlineFeatures.open(serving_world.settings.path("feast"))


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll until predicate() is truthy; returns its value or raises AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def read_events(path: Path) -> list[dict]:
    """The JSON-lines event file a file sink wrote (empty while it does not exist)."""
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def metric_value(text: str, name: str, **labels: str) -> float:
    """Value of one sample in Prometheus text format (0.0 when absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


class ForwardReceiver:
    """A minimal Fluentd forward-protocol server on loopback (msgpack over TCP).

    Decodes Message, Forward and PackedForward (also gzip CompressedPackedForward) modes; event time
    may be an integer or an EventTime ext (type 0). Acks when the option map carries a chunk id.
    Records arrive in `records` as (tag, time, record).
    """

    def __init__(self, port: int = 0) -> None:
        self._server = socket.create_server(("127.0.0.1", port))
        self.port = self._server.getsockname()[1]
        self.records: list[tuple[str, float, dict]] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        accept = threading.Thread(target=self._accept, daemon=True)
        accept.start()
        self._threads.append(accept)

    def _accept(self) -> None:
        self._server.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            self._conns.append(conn)
            worker = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            worker.start()
            self._threads.append(worker)

    def _serve(self, conn: socket.socket) -> None:
        unpacker = msgpack.Unpacker(raw=False, ext_hook=_ext_hook, strict_map_key=False)
        conn.settimeout(0.1)
        with conn:
            while not self._stop.is_set():
                try:
                    chunk = conn.recv(65536)
                except (TimeoutError, socket.timeout):
                    continue
                except OSError:
                    return
                if not chunk:
                    return
                unpacker.feed(chunk)
                for message in unpacker:
                    ack = self._handle(message)
                    if ack is not None:
                        conn.sendall(msgpack.packb({"ack": ack}))

    def _handle(self, message: list) -> str | None:
        tag, second = message[0], message[1]
        option = message[-1] if len(message) >= 3 and isinstance(message[-1], dict) else {}
        if isinstance(second, (int, float)):  # Message mode: [tag, time, record, option?]
            entries = [(second, message[2])]
        elif isinstance(second, list):  # Forward mode: [tag, [[time, record], ...], option?]
            entries = [(t, r) for t, r in second]
        else:  # PackedForward: [tag, bin, option?]
            raw = gzip.decompress(second) if option.get("compressed") == "gzip" else second
            entries = list(msgpack.Unpacker(io.BytesIO(raw), raw=False, ext_hook=_ext_hook))
        with self._cond:
            self.records.extend((tag, float(t), record) for t, record in entries)
            self._cond.notify_all()
        return option.get("chunk")

    def wait_for_records(self, count: int, timeout: float = 10.0) -> list[tuple[str, float, dict]]:
        with self._cond:
            self._cond.wait_for(lambda: len(self.records) >= count, timeout)
            return list(self.records)

    def close(self) -> None:
        self._stop.set()
        self._server.close()
        for conn in self._conns:
            try:
                conn.close()
            except OSError:
                pass
        for thread in self._threads:
            thread.join(2)


def _ext_hook(code: int, data: bytes):
    if code == 0:  # EventTime: uint32 seconds + uint32 nanoseconds, big-endian
        return int.from_bytes(data[:4], "big") + int.from_bytes(data[4:8], "big") / 1e9
    return msgpack.ExtType(code, data)
