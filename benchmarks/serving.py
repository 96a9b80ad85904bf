"""/predict latency and throughput under gunicorn, with event logging off vs file vs Fluentd (live / down).

Each mode runs a fresh `python -m serving` (1 worker, gthread) on loopback; a thread pool of
keep-alive HTTP clients sends a fixed number of replayed normal requests after a warm-up. Modes are
interleaved over several rounds so background load on the shared machine hits them alike; the
table pools the latencies of all rounds per mode.
"""
from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import msgpack

from serving import data
from serving.bootstrap import bootstrap
from serving.settings import REPO_ROOT, ServingSettings

MODES = ("off", "file", "fluentd-live", "fluentd-down")


@dataclass
class Result:
    mode: str
    latencies_ms: list[float]
    seconds: float
    errors: int
    note: str = ""


class DrainReceiver:
    """Accepts forward-protocol connections and counts the messages (a stand-in for Fluentd)."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self.messages = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._drain, args=(conn,), daemon=True).start()

    def _drain(self, conn: socket.socket) -> None:
        unpacker = msgpack.Unpacker(raw=False)
        with conn:
            while chunk := conn.recv(1 << 16):
                unpacker.feed(chunk)
                count = sum(1 for _ in unpacker)
                with self._lock:
                    self.messages += count

    def close(self) -> None:
        self._server.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _request(conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None):
    conn.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
    response = conn.getresponse()
    return response.status, response.read()


class Server:
    """One `python -m serving` process with the given env; stdout (JSON logs) to a file."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = _free_port()
        env = {**os.environ, **env, "SERVING_PORT": str(self.port), "PYTHONPATH": str(REPO_ROOT)}
        self._log = open(log_path, "w")
        self.process = subprocess.Popen([sys.executable, "-m", "serving"], env=env, stdout=self._log,
                                        stderr=subprocess.STDOUT, cwd=REPO_ROOT)
        deadline = time.monotonic() + 90
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"serving exited early; see {log_path}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                if _request(conn, "GET", "/healthz")[0] == 200:
                    conn.close()
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"serving did not become healthy; see {log_path}")
            time.sleep(0.2)

    def metrics(self) -> str:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        text = _request(conn, "GET", "/metrics")[1].decode()
        conn.close()
        return text

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._log.close()


def load(port: int, bodies: list[bytes], clients: int, warmup: int) -> tuple[list[float], float, int]:
    """Send `bodies` from `clients` keep-alive connections; returns latencies (ms), wall seconds, errors."""
    local = threading.local()

    def send(body: bytes) -> float | None:
        if not hasattr(local, "conn"):
            local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        started = time.perf_counter()
        try:
            status, _ = _request(local.conn, "POST", "/predict", body)
        except (OSError, http.client.HTTPException):
            local.conn.close()
            del local.conn
            return None
        elapsed = (time.perf_counter() - started) * 1000.0
        return elapsed if status == 200 else None

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(send, bodies[:warmup]))
        started = time.perf_counter()
        results = list(pool.map(send, bodies[warmup:]))
        seconds = time.perf_counter() - started
    latencies = [r for r in results if r is not None]
    return latencies, seconds, len(results) - len(latencies)


def _metric(text: str, name: str, sink: str) -> float:
    for line in text.splitlines():
        if line.startswith(f'{name}{{sink="{sink}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def run_mode(mode: str, bodies: list[bytes], clients: int, warmup: int, workdir: Path,
             base_env: dict[str, str]) -> Result:
    env = dict(base_env)
    receiver = None
    if mode == "off":
        env["SERVING_EVENT_SINKS"] = "none"
    elif mode == "file":
        env["SERVING_EVENT_SINKS"] = "file"
        env["SERVING_EVENTS_FILE"] = str(workdir / f"events-{time.monotonic_ns()}.jsonl")
    else:
        env["SERVING_EVENT_SINKS"] = "fluentd"
        if mode == "fluentd-live":
            receiver = DrainReceiver()
            env["SERVING_FLUENTD_PORT"] = str(receiver.port)
        else:
            env["SERVING_FLUENTD_PORT"] = str(_free_port())  # nothing listens there
    server = Server(env, workdir / f"serving-{mode}.log")
    try:
        latencies, seconds, errors = load(server.port, bodies, clients, warmup)
        note = ""
        if mode == "file":
            lines = sum(1 for _ in open(env["SERVING_EVENTS_FILE"], "rb"))
            note = f"{lines} lines written"
        elif mode == "fluentd-live":
            deadline = time.monotonic() + 10
            while receiver.messages < len(bodies) and time.monotonic() < deadline:
                time.sleep(0.05)
            note = f"{receiver.messages} records received"
        elif mode == "fluentd-down":
            text = server.metrics()
            note = f"{int(_metric(text, 'serving_events_dropped_total', 'fluentd'))} dropped (counted)"
        return Result(mode, latencies, seconds, errors, note)
    finally:
        server.stop()
        if receiver is not None:
            receiver.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100.0 * (len(ordered) - 1))))
    return ordered[index]


def format_table(results: dict[str, list[Result]]) -> str:
    base_p99 = percentile([x for r in results["off"] for x in r.latencies_ms], 99)
    rows = ["| events | requests | p50 ms | p99 ms | p99 vs off | req/s | errors | note |",
            "|---|---|---|---|---|---|---|---|"]
    for mode in MODES:
        runs = results[mode]
        latencies = [x for r in runs for x in r.latencies_ms]
        p99 = percentile(latencies, 99)
        rate = statistics.median(len(r.latencies_ms) / r.seconds for r in runs)
        rows.append(f"| {mode} | {len(latencies)} | {percentile(latencies, 50):.2f} | {p99:.2f} | "
                    f"{(p99 / base_p99 - 1) * 100:+.1f} % | {rate:.0f} | {sum(r.errors for r in runs)} | "
                    f"{runs[-1].note} |")
    return "\n".join(rows)


def main(quick: bool = False) -> None:
    settings = ServingSettings.from_env()
    print(f"serving benchmark: bootstrap under {settings.var_dir}", flush=True)
    bootstrap(settings, log=lambda line: None)
    rounds = 1 if quick else 3
    requests = 300 if quick else 2000
    warmup, clients = 50, 8
    traffic = data.generate_traffic("normal", requests + warmup, seed=99,
                                    driver_stats=data.generate_driver_stats(settings.seed))
    bodies = [json.dumps({"driver_ids": ids}).encode() for ids in traffic["driver_ids"]]
    base_env = {"SERVING_VAR_DIR": str(settings.var_dir), "SERVING_WORKERS": "1", "SERVING_THREADS": "8"}
    results: dict[str, list[Result]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory(prefix="serving-bench-") as tmp:
        for round_index in range(rounds):
            order = MODES[round_index % len(MODES):] + MODES[:round_index % len(MODES)]
            for mode in order:
                print(f"  round {round_index + 1}/{rounds}: {mode:<13} {requests} requests, "
                      f"{clients} clients ...", flush=True)
                result = run_mode(mode, bodies, clients, warmup, Path(tmp), base_env)
                results[mode].append(result)
                print(f"    p50 {percentile(result.latencies_ms, 50):.2f} ms, "
                      f"p99 {percentile(result.latencies_ms, 99):.2f} ms, "
                      f"{len(result.latencies_ms) / result.seconds:.0f} req/s; {result.note}", flush=True)
    print(f"\n/predict, 1 gunicorn worker x 8 threads, {clients} keep-alive clients, "
          f"{rounds} round(s) x {requests} requests per mode, {os.cpu_count()} CPUs\n")
    print(format_table(results))


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
