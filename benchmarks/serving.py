"""/predict latency and throughput under gunicorn: event logging off vs file vs Fluentd (live / down).

One `python -m serving` per mode (1 worker, gthread), all on loopback. Latency is measured with
the four servers side by side and every replayed request sent to each of them in rotating order,
so background load on the shared machine hits all modes alike. Throughput is measured one mode at
a time with more clients than threads can serve at once (saturated), median over rounds.
"""
from __future__ import annotations

import http.client
import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msgpack

from common.net import free_port
from common.supervisor import Child, http_ok
from serving import data
from serving.bootstrap import bootstrap
from serving.settings import REPO_ROOT, ServingSettings

MODES = ("off", "file", "fluentd-live", "fluentd-down")


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


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children (the gunicorn master and its workers), from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat.parent.name) == pid or int(fields[1]) == pid:  # fields[1] is the parent pid
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def _request(conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None):
    conn.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
    response = conn.getresponse()
    return response.status, response.read()


class Server:
    """One `python -m serving` process with the given env, its output (JSON logs) in `log_path`."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        env = {**os.environ, **env, "SERVING_PORT": str(self.port), "PYTHONPATH": str(REPO_ROOT)}
        self.child = Child("serving", [sys.executable, "-m", "serving"], log_path, env=env, cwd=REPO_ROOT).start()
        try:
            self.child.wait_ready(lambda: http_ok(f"http://127.0.0.1:{self.port}/healthz", lambda s: s == 200),
                                  90, "GET /healthz answered 200")
        except BaseException:
            self.child.stop()
            raise

    @property
    def pid(self) -> int:
        return self.child.pid

    def metrics(self) -> str:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        text = _request(conn, "GET", "/metrics")[1].decode()
        conn.close()
        return text

    def stop(self) -> None:
        self.child.stop(grace=20.0)


def _sender():
    """A per-thread keep-alive client: send(port, body) -> latency in ms, or None on failure."""
    local = threading.local()

    def send(port: int, body: bytes) -> float | None:
        conns = local.__dict__.setdefault("conns", {})
        conn = conns.get(port) or conns.setdefault(port, http.client.HTTPConnection("127.0.0.1", port, timeout=10))
        started = time.perf_counter()
        try:
            status, _ = _request(conn, "POST", "/predict", body)
        except (OSError, http.client.HTTPException):
            conn.close()
            conns.pop(port, None)
            return None
        return (time.perf_counter() - started) * 1000.0 if status == 200 else None

    return send


def interleaved(ports: dict[str, int], bodies: list[bytes], clients: int) -> dict[str, list[float | None]]:
    """Request i goes to mode i mod len(modes), so background noise on the machine hits every mode alike."""
    send = _sender()
    modes = list(ports)
    jobs = [(modes[(i + k) % len(modes)], body) for i, body in enumerate(bodies) for k in range(len(modes))]
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(lambda job: (job[0], send(ports[job[0]], job[1])), jobs))
    latencies: dict[str, list[float | None]] = {mode: [] for mode in modes}
    for mode, latency in results:
        latencies[mode].append(latency)
    return latencies


def saturate(port: int, bodies: list[bytes], clients: int) -> float:
    """Requests per second one server sustains with `clients` concurrent keep-alive clients."""
    send = _sender()
    with ThreadPoolExecutor(clients) as pool:
        started = time.perf_counter()
        ok = sum(1 for r in pool.map(lambda body: send(port, body), bodies) if r is not None)
    return ok / (time.perf_counter() - started)


def _metric(text: str, name: str, sink: str) -> float:
    for line in text.splitlines():
        if line.startswith(f'{name}{{sink="{sink}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def start_mode(mode: str, workdir: Path, base_env: dict[str, str]) -> tuple[Server, DrainReceiver | None, str | None]:
    env = dict(base_env)
    receiver, events_file = None, None
    if mode == "off":
        env["SERVING_EVENT_SINKS"] = "none"
    elif mode == "file":
        events_file = str(workdir / f"events-{time.monotonic_ns()}.jsonl")
        env.update(SERVING_EVENT_SINKS="file", SERVING_EVENTS_FILE=events_file)
    elif mode == "fluentd-live":
        receiver = DrainReceiver()
        env.update(SERVING_EVENT_SINKS="fluentd", SERVING_FLUENTD_PORT=str(receiver.port))
    else:  # nothing listens on that port; a small buffer so that it overflows (and drops) repeatedly
        env.update(SERVING_EVENT_SINKS="fluentd", SERVING_FLUENTD_PORT=str(free_port()),
                   SERVING_FLUENTD_BUFFER_BYTES=str(256 * 1024))
    return Server(env, workdir / f"serving-{mode}.log"), receiver, events_file


def delivery_note(mode: str, server: Server, receiver: DrainReceiver | None, events_file: str | None,
                  sent: int) -> str:
    if mode == "file":
        return f"{sum(1 for _ in open(events_file, 'rb'))}/{sent} events in the file"
    if mode == "fluentd-live":
        deadline = time.monotonic() + 10
        while receiver.messages < sent and time.monotonic() < deadline:
            time.sleep(0.05)
        return f"{receiver.messages}/{sent} records received"
    if mode == "fluentd-down":
        return f"{int(_metric(server.metrics(), 'serving_events_dropped_total', 'fluentd'))}/{sent} dropped (counted)"
    return ""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100.0 * (len(ordered) - 1))))
    return ordered[index]


def format_table(latencies: dict[str, list[float | None]], rates: dict[str, list[float]],
                 cpu_ms: dict[str, float], notes: dict[str, str]) -> str:
    ok = {mode: [x for x in values if x is not None] for mode, values in latencies.items()}
    base_p99 = percentile(ok["off"], 99)
    rows = ["| events | requests | p50 ms | p99 ms | p99 vs off | server CPU ms/req | req/s (saturated) | errors "
            "| delivery |",
            "|---|---|---|---|---|---|---|---|---|"]
    for mode in MODES:
        p99 = percentile(ok[mode], 99)
        errors = len(latencies[mode]) - len(ok[mode])
        rows.append(f"| {mode} | {len(ok[mode])} | {percentile(ok[mode], 50):.2f} | {p99:.2f} | "
                    f"{(p99 / base_p99 - 1) * 100:+.1f} % | {cpu_ms[mode]:.2f} | "
                    f"{statistics.median(rates[mode]):.0f} | {errors} | "
                    f"{notes[mode]} |")
    return "\n".join(rows)


def main(quick: bool = False) -> None:
    settings = ServingSettings.from_env()
    print(f"serving benchmark: bootstrap under {settings.var_dir}", flush=True)
    bootstrap(settings, log=lambda line: None)
    latency_requests = 300 if quick else 3000   # per mode
    rate_requests, rate_rounds = (300, 1) if quick else (1500, 3)
    latency_clients, rate_clients = 4, 8
    stats = data.generate_driver_stats(settings.seed)
    traffic = data.generate_traffic("normal", latency_requests + 100, seed=99, driver_stats=stats)
    bodies = [json.dumps({"driver_ids": ids}).encode() for ids in traffic["driver_ids"]]
    warmup, bodies = bodies[:100], bodies[100:]
    base_env = {"SERVING_VAR_DIR": str(settings.var_dir), "SERVING_WORKERS": "1", "SERVING_THREADS": "8"}

    with tempfile.TemporaryDirectory(prefix="serving-bench-") as tmp:
        print(f"  starting {len(MODES)} servers: {', '.join(MODES)}", flush=True)
        started: dict[str, tuple[Server, DrainReceiver | None, str | None]] = {}
        try:
            for mode in MODES:      # one by one, so that a server that fails to start stops those before it
                started[mode] = start_mode(mode, Path(tmp), base_env)
            ports = {mode: started[mode][0].port for mode in MODES}
            interleaved(ports, warmup, latency_clients)
            print(f"  latency: {latency_requests} requests per mode, interleaved, {latency_clients} clients",
                  flush=True)
            cpu_before = {mode: process_cpu_seconds(started[mode][0].pid) for mode in MODES}
            latencies = interleaved(ports, bodies, latency_clients)
            time.sleep(0.5)  # let the Fluentd sender threads finish their share of the work
            cpu_ms = {mode: (process_cpu_seconds(started[mode][0].pid) - cpu_before[mode]) * 1000
                      / len(bodies) for mode in MODES}
            notes = {mode: delivery_note(mode, *started[mode], sent=len(warmup) + len(bodies)) for mode in MODES}
            rates: dict[str, list[float]] = {mode: [] for mode in MODES}
            for round_index in range(rate_rounds):
                for mode in MODES[round_index % 4:] + MODES[:round_index % 4]:
                    rates[mode].append(saturate(ports[mode], bodies[:rate_requests], rate_clients))
                    print(f"  throughput round {round_index + 1}/{rate_rounds} {mode:<13} "
                          f"{rates[mode][-1]:.0f} req/s", flush=True)
        finally:
            for server, receiver, _ in started.values():
                server.stop()
                if receiver is not None:
                    receiver.close()
    print(f"\n/predict on loopback, 1 gunicorn worker x 8 threads per mode, {os.cpu_count()} CPUs shared with "
          f"the load generator. Latency: the {len(MODES)} modes run side by side, requests interleaved, "
          f"{latency_clients} clients. Throughput: one mode at a time, {rate_clients} clients, median of "
          f"{rate_rounds} round(s) x {rate_requests} requests.\n")
    print(format_table(latencies, rates, cpu_ms, notes))


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
