"""What per-segment monitoring adds to a cycle: the shipped monitor on a 100 000-prediction window in
OpenSearch (one node), with and without `segments:` (20 cities in `context.city`), cycles alternated
so both see the same store. A cycle is the processor's whole cycle (a full read: the read carries
the segment field too, then evaluate, then the segments, then the export), as benchmarks/log_processor.py
times it. BENCH_SEGMENTS_COST_ROWS overrides the size, BENCH_STORES the store (default opensearch-1).
"""
from __future__ import annotations

import dataclasses
import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from statistics import median
from tempfile import TemporaryDirectory

import numpy as np

from benchmarks import backends, synthetic
from benchmarks.workload import FEEDBACK_SHARE, SPAN, bench_monitor, load_documents
from common.store import StoreSettings
from log_processor.evaluate.evaluation import evaluate
from log_processor.export.metrics import Exporter
from log_processor.memory import settle_memory
from log_processor.monitors import SegmentsConfig
from log_processor.read.store import EventStore
from log_processor.read.window_reader import WindowReads
from log_processor.runner import MonitorRunner

CITIES = 20
FIELD = "context.city"


def with_cities(docs, seed: int):
    """Each prediction gets one of CITIES cities (Zipf-like shares: the largest ~28 %, the smallest ~1.4 %)."""
    rng = np.random.default_rng(seed)
    weights = 1 / np.arange(1, CITIES + 1)
    weights /= weights.sum()
    for doc in docs:
        if doc["event"]["dataset"] == "ml.prediction":
            doc["context"] = {"city": f"city{int(rng.choice(CITIES, p=weights)):02d}"}
        yield doc


def main(quick: bool) -> None:
    n = int(os.environ.get("BENCH_SEGMENTS_COST_ROWS", 20_000 if quick else 100_000))
    runs = 3 if quick else 7
    store = (backends.chosen(("opensearch-1",)) or ["osmem"])[0]
    with TemporaryDirectory() as tmp:
        plain = bench_monitor(Path(tmp))
        segmented = dataclasses.replace(plain, segments=SegmentsConfig((FIELD,), max_segments=CITIES, min_rows=100))
        end = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)
        print(f"-- {store}, {n:,} predictions, {CITIES} cities", flush=True)
        backend = backends.start(store)
        try:
            rows = synthetic.chosen_rows("normal", n, 77)
            docs = synthetic.events(rows, end - SPAN, end, feedback_share=FEEDBACK_SHARE, delay_seconds=20, seed=77)
            load_documents(backend.url, with_cities(docs, 77), n)
            runners = {}
            for name, monitor in (("without segments", plain), ("20 segments", segmented)):
                runner = MonitorRunner(monitor, EventStore(StoreSettings(url=backend.url, request_timeout=600), workers=2),
                                       Exporter([monitor.name]), write_summaries=False,
                                       clock=lambda: end.timestamp() + 1, reads=WindowReads(incremental=False))
                evaluate(runner.reference(), runner.reference().frame.head(1000), monitor)    # warm up, untimed
                runners[name] = runner
            settle_memory()
            times: dict[str, list[float]] = {name: [] for name in runners}
            phases: dict[str, list[float]] = {"segments": []}
            for _ in range(runs):
                for name, runner in runners.items():
                    t0 = time.perf_counter()
                    if runner.run_once() != "ok":
                        raise RuntimeError(f"cycle failed: {runner.state.last_error}")
                    times[name].append(time.perf_counter() - t0)
                    if "segments" in runner.state.summary.get("phase_seconds", {}):
                        phases["segments"].append(runner.state.summary["phase_seconds"]["segments"])
                print("  " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()), flush=True)
            summary = runners["20 segments"].state.summary
        finally:
            backend.close()
    base, seg = median(times["without segments"]), median(times["20 segments"])
    print()
    print(f"One cycle (full read + evaluation + export) on {store}, {n:,} predictions "
          f"({summary['rows']['evaluated']:,} evaluated, {summary['segments']['evaluated']} segments tested); "
          f"median of {runs} alternated runs")
    print("| store | window | cycle without segments | cycle with 20 segments | added | segments phase |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| {store} | {n:,} | {base:.2f} s (best {min(times['without segments']):.2f}) | {seg:.2f} s "
          f"(best {min(times['20 segments']):.2f}) | {100 * (seg - base) / base:+.1f} % | "
          f"{median(phases['segments']):.2f} s |")
