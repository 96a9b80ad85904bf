"""What the Evidently UI's snapshots cost (issue 35, point 7), and what the UI holds after a day.

1. A cycle at n = 100 000 rows (BENCH_EVIDENTLY_ROWS), the shipped driver_ranker over a synthetic
   reference, on osmem-server: cycles without snapshots and cycles offering one to a writer that
   sends it to a real `evidently ui` (loopback, with a secret), alternated, 5 of each (quick: 3). Beside
   the cycles' medians, what a snapshot costs in the cycle's thread (its samples and the offer,
   timed on its own) and in the writer's thread (building the body and the HTTP POST, thread CPU):
   the writer's work shares the GIL with the cycle, so their sum over a cycle is the upper bound of
   what snapshots add to it (one snapshot per cycle: LOGPROC_SNAPSHOT_INTERVAL = the interval).
2. A snapshot's size: the body as sent, and the file the UI stores.
3. A day: 1440 snapshots per monitor (one a minute) for the two shipped monitors, written into a
   workspace directory, then `evidently ui` started on it: its start time, its RSS after start and
   after each monitor's dashboard was loaded (every panel's data, as the front end asks it).
"""
from __future__ import annotations

import dataclasses
import json
import os
import statistics
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from tempfile import TemporaryDirectory

from benchmarks import backends, synthetic
from benchmarks.workload import FEEDBACK_SHARE, SPAN, load_documents
from common.evidently_ui import EvidentlyUI
from common.net import free_port
from common.store import StoreSettings
from log_processor.export.evidently_dashboard import panels, project_id, series_filter
from log_processor.export.evidently_snapshot import snapshot_body, snapshot_of
from log_processor.export.evidently_workspace import LocalWorkspace, RemoteUI, SnapshotCounters, SnapshotWriter
from log_processor.export.metrics import Exporter
from log_processor.monitors import REPO_ROOT, load_monitors
from log_processor.read.store import EventStore
from log_processor.runner import MonitorRunner
from prometheus_client import CollectorRegistry

SECRET = "benchmark-secret"
DAY = 1440


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class _TimedBackend:
    """A backend whose add_snapshot records the writer thread's CPU seconds per snapshot (body included)."""

    def __init__(self, inner):
        self.inner, self.where, self.cpu = inner, inner.where, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def add_snapshot(self, project_id, body):
        started = time.thread_time()
        out = self.inner.add_snapshot(project_id, body)
        self.cpu.append(time.thread_time() - started)
        return out


def cycle_cost(n: int, repeats: int, tmp: Path, ui: EvidentlyUI) -> dict:
    monitor = load_monitors(REPO_ROOT / "log_processor/monitors.yaml")[0]
    reference = tmp / "reference.parquet"
    synthetic.reference_frame(5000, seed=101).to_parquet(reference)
    monitor = dataclasses.replace(monitor, window_last=None, max_rows=max(monitor.max_rows, n),
                                  reference=dataclasses.replace(monitor.reference, parquet=reference, manifest=None))
    backend = backends.start("osmem")
    try:
        now = datetime.now(timezone.utc).replace(microsecond=0)
        docs = synthetic.events(synthetic.chosen_rows("normal", n, 7), now - SPAN, now, feedback_share=FEEDBACK_SHARE,
                                delay_seconds=20, seed=7)
        load_documents(backend.url, docs, n)
        store = EventStore(StoreSettings(url=backend.url, request_timeout=600), workers=2)
        timed = _TimedBackend(RemoteUI(ui.url, SECRET, 5.0))
        writer = SnapshotWriter(timed, [monitor], SnapshotCounters(CollectorRegistry(), [monitor.name]),
                                interval=0.001, retention=DAY)
        writer.start()
        clock = {"now": now.timestamp() + 1}
        plain = MonitorRunner(monitor, store, Exporter([monitor.name]), write_summaries=False, clock=lambda: clock["now"])
        with_ui = MonitorRunner(monitor, store, Exporter([monitor.name]), write_summaries=False,
                                clock=lambda: clock["now"], snapshots=writer)
        for runner in (plain, with_ui):      # reference, thresholds and Evidently warmed up, untimed
            runner.run_once()
        times = {"without": [], "with": []}
        offers = []
        for i in range(repeats):         # alternated, each first every other time
            for name, runner in (("without", plain), ("with", with_ui))[::1 if i % 2 else -1]:
                clock["now"] += 1
                runner.reader.forget(monitor.name)       # each a full read of the 100 k rows, as the first cycle
                started = time.perf_counter()
                assert runner.run_once() == "ok", runner.state.last_error
                times[name].append(time.perf_counter() - started)
            started = time.perf_counter()        # what the runner does when a snapshot is due
            samples = snapshot_of(monitor, with_ui.exporter.latest(monitor.name))
            writer.offer(monitor.name, samples, clock["now"])
            offers.append(time.perf_counter() - started)
        deadline = time.monotonic() + 60
        while writer.queue and time.monotonic() < deadline:
            time.sleep(0.1)
        writer.stop()
        body = snapshot_body(monitor.name, samples, clock["now"])
        store.close()
        return {"without": statistics.median(times["without"]), "with": statistics.median(times["with"]),
                "offer": statistics.median(offers), "writer_cpu": statistics.median(timed.cpu),
                "snapshots": len(timed.cpu), "body_bytes": len(json.dumps(body)), "values": len(body["metric_results"]),
                "body": body}
    finally:
        backend.close()


def a_day(tmp: Path, bodies: dict[str, dict], per_monitor: int) -> dict:
    monitors = load_monitors(REPO_ROOT / "log_processor/monitors.yaml")
    workspace = LocalWorkspace(str(tmp / "day"))
    writer = SnapshotWriter(workspace, monitors, SnapshotCounters(CollectorRegistry(), [m.name for m in monitors]),
                            interval=60, retention=per_monitor)
    writer.provision()
    start = time.time() - per_monitor * 60
    for i in range(per_monitor):
        for monitor in monitors:
            body = dict(bodies[monitor.name], timestamp=datetime.fromtimestamp(start + 60 * i, timezone.utc)
                        .replace(tzinfo=None).isoformat())
            workspace.add_snapshot(project_id(monitor.name), body)
    files = list((tmp / "day").rglob("snapshots/*.json"))
    stored = statistics.median(p.stat().st_size for p in files)
    ui = EvidentlyUI(tmp / "day", tmp / "day-ui.log", port=free_port())
    started = time.perf_counter()
    ui.start(timeout=600)
    up = time.perf_counter() - started
    rss = {"after start": _rss_mb(ui.child.pid)}
    try:
        for monitor in monitors:
            started = time.perf_counter()
            for panel in panels(monitor):
                if not panel.series:
                    continue
                request = urllib.request.Request(
                    f"{ui.url}/api/v2/snapshots/{project_id(monitor.name)}/data_series_batch",
                    data=json.dumps({"series_filter": [series_filter(s) for s in panel.series]}).encode(),
                    headers={"Content-Type": "application/json"}, method="POST")
                with urllib.request.urlopen(request, timeout=600) as response:
                    json.loads(response.read())
            rss[f"after {monitor.name}'s dashboard ({time.perf_counter() - started:.1f} s)"] = _rss_mb(ui.child.pid)
    finally:
        ui.stop()
    return {"files": len(files), "stored_bytes": stored, "start_seconds": up, "rss": rss}


def main(quick: bool = False) -> None:
    n = int(os.environ.get("BENCH_EVIDENTLY_ROWS", 20_000 if quick else 100_000))
    repeats = 3 if quick else 5
    per_monitor = 100 if quick else DAY
    with TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        with EvidentlyUI(tmp / "ws", tmp / "ui.log", port=free_port(), secret=SECRET) as ui:
            cost = cycle_cost(n, repeats, tmp, ui)
        print(f"cycle at {n} rows (median of {repeats}, full reads): without snapshots {cost['without']:.3f} s, "
              f"with {cost['with']:.3f} s ({(cost['with'] / cost['without'] - 1) * 100:+.1f} %)")
        print(f"  a snapshot in the cycle's thread (samples + offer): {cost['offer'] * 1000:.2f} ms; in the writer's "
              f"(body + POST, thread CPU): {cost['writer_cpu'] * 1000:.1f} ms; together "
              f"{(cost['offer'] + cost['writer_cpu']) / cost['without'] * 100:.2f} % of the cycle "
              f"({cost['snapshots']} snapshots written)")
        print(f"snapshot: {cost['values']} values, body {cost['body_bytes'] / 1024:.1f} KiB as sent")
        monitors = load_monitors(REPO_ROOT / "log_processor/monitors.yaml")
        # both monitors get the ranker's snapshot (the larger: a regression one has no estimation band)
        bodies = {m.name: dict(cost["body"], metadata={"monitor": m.name}) for m in monitors}
        day = a_day(tmp, bodies, per_monitor)
        print(f"a day: {per_monitor} snapshots x {len(monitors)} monitors ({day['files']} files, median "
              f"{day['stored_bytes'] / 1024:.1f} KiB stored); evidently ui up in {day['start_seconds']:.1f} s")
        for what, mb in day["rss"].items():
            print(f"  UI RSS {what}: {mb:.0f} MB")
