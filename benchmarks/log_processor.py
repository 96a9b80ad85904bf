"""One evaluation cycle (fetch + join + Evidently + export) on windows of 10 k / 100 k / 1 M predictions,
side by side with the naive way (helpers.scan of whole documents → pandas → Evidently), on each store
of benchmarks/backends.py: osmem-server, and real OpenSearch with 1 and 3 nodes (BENCH_STORES chooses).

Each size gets its own 15-minute window (20 % of predictions labelled) in a fresh store.
BENCH_LOG_PROCESSOR_SIZES ("10000,100000") overrides the sizes. On osmem-server the 1 M case needs
~16 GiB (its memory limit) plus ~4 GiB for the naive side, and is skipped when the machine has less
available. Peak memory is the process's peak RSS during the cycle (VmHWM, reset before each run);
the store's own CPU seconds per cycle and its RSS are read from /proc beside it.
"""
from __future__ import annotations

import dataclasses
import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from statistics import median
from tempfile import TemporaryDirectory

import pandas as pd
from elasticsearch import helpers

from benchmarks import backends
from benchmarks.workload import SPAN, bench_monitor, load, osmem_fits, repeats, reset_peak, rss_peak_mb
from common.schema import EVENTS_INDEX_PATTERN
from common.store import StoreSettings, connect
from log_processor.evaluate.evaluation import evaluate
from log_processor.export.metrics import Exporter
from log_processor.memory import settle_memory
from log_processor.read.window_reader import WindowReads
from log_processor.runner import MonitorRunner
from log_processor.read.store import EventStore
from log_processor.columns import KEY, PREDICTION, SCORE, TARGET


def _naive_cycle(url: str, monitor, reference, start: datetime, end: datetime) -> int:
    """The straightforward way: scroll whole documents, json_normalize, join, one evaluation, no cap."""
    es = connect(StoreSettings(url=url, request_timeout=600))
    query = {"query": {"range": {"@timestamp": {"gte": start.isoformat(), "lte": end.isoformat()}}}}
    docs = [hit["_source"] for hit in helpers.scan(es, query=query, index=EVENTS_INDEX_PATTERN, size=5000)]
    frame = pd.json_normalize(docs)
    del docs
    preds = frame[frame["event.dataset"] == "ml.prediction"].drop(columns=["target.trip_completed"], errors="ignore")
    feedback = frame[frame["event.dataset"] == "ml.feedback"][["request_id", "target.trip_completed"]]
    joined = preds.merge(feedback, on="request_id", how="left")
    current = pd.DataFrame({KEY: joined["request_id"], **{f.name: joined[f.field] for f in monitor.features},
                            PREDICTION: joined["prediction.label"], SCORE: joined["prediction.score"],
                            TARGET: joined["target.trip_completed"]})
    evaluate(reference, current, monitor)
    es.close()
    return len(current)



def _measure(backend: backends.Backend, monitor, n: int, window_end: datetime, seed: int) -> tuple:
    """Load one window of n predictions, then `repeats(n)` cycles each, ours and naive alternated."""
    url = backend.url
    docs = load(url, n, window_end - SPAN, window_end, seed=seed)
    exporter = Exporter([monitor.name])
    runner = MonitorRunner(monitor, EventStore(StoreSettings(url=url, request_timeout=600), workers=2),
                           exporter, write_summaries=False, clock=lambda: window_end.timestamp() + 1,
                           reads=WindowReads(incremental=False))      # every cycle a full read: a cold start
    reference = runner.reference()
    evaluate(reference, reference.frame.head(1000), monitor)        # warm Evidently up, untimed
    settle_memory()                     # as the processor does after its first cycle
    naive_monitor = dataclasses.replace(monitor, max_rows=10**9)
    bounds = (window_end - SPAN - timedelta(seconds=1), window_end + timedelta(seconds=30))
    ours, ours_mb, naive, naive_mb, store_cpu, store_mb = [], [], [], [], [], []
    for _ in range(repeats(n)):      # alternated, so both see the same state of the store
        reset_peak()
        cpu0, _ = backend.usage()
        t0 = time.perf_counter()
        if runner.run_once() != "ok":
            raise RuntimeError(f"cycle failed: {runner.state.last_error}")
        ours.append(time.perf_counter() - t0)
        cpu1, rss = backend.usage()
        store_cpu.append(cpu1 - cpu0)
        store_mb.append(rss)
        ours_mb.append(rss_peak_mb())
        print(f"  ours: {ours[-1]:.2f} s, peak RSS {ours_mb[-1]:,.0f} MB; store {store_cpu[-1]:.1f} s CPU, "
              f"{rss:,.0f} MB", flush=True)
        reset_peak()
        t0 = time.perf_counter()
        naive_rows = _naive_cycle(url, naive_monitor, reference, *bounds)
        naive.append(time.perf_counter() - t0)
        naive_mb.append(rss_peak_mb())
        print(f"  naive: {naive[-1]:.2f} s, peak RSS {naive_mb[-1]:,.0f} MB, rows {naive_rows}", flush=True)
    rows = runner.state.summary["rows"]
    print(f"  rows {rows}", flush=True)
    return (backend.name, n, docs, rows["evaluated"], ours, max(ours_mb), naive, max(naive_mb),
            median(store_cpu), max(store_mb))


def main(quick: bool) -> None:
    override = os.environ.get("BENCH_LOG_PROCESSOR_SIZES")      # e.g. "10000,100000"
    sizes = [int(v) for v in override.split(",")] if override else [10_000] if quick else [10_000, 100_000, 1_000_000]
    results = []
    with TemporaryDirectory() as tmp:
        monitor = bench_monitor(Path(tmp))
        end = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)
        for store in backends.chosen():
            for i, n in enumerate(sizes):
                if store == "osmem" and not osmem_fits(n):
                    continue
                print(f"-- {store}, {n:,} predictions", flush=True)
                backend = backends.start(store)      # a fresh store per size
                try:
                    results.append(_measure(backend, monitor, n, end, seed=100 + i))
                finally:
                    backend.close()
    print()
    print("Cycle times: best / median of the runs; peak RSS: the highest of the runs; store CPU: the median "
          "per cycle (ours).")
    print("| store | window (predictions) | documents | evaluated rows | runs | cycle | peak RSS | store CPU "
          "| store RSS | naive cycle | naive peak RSS | speed-up (best, median) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for store, n, docs, evaluated, ours, ours_mb, naive, naive_mb, cpu, store_rss in results:
        o, v = (min(ours), median(ours)), (min(naive), median(naive))
        print(f"| {store} | {n:,} | {docs:,} | {evaluated:,} | {len(ours)} | {o[0]:.2f} / {o[1]:.2f} s | "
              f"{ours_mb:,.0f} MB | {cpu:.1f} s | {store_rss:,.0f} MB | {v[0]:.2f} / {v[1]:.2f} s | "
              f"{naive_mb:,.0f} MB | {v[0] / o[0]:.2f}×, {v[1] / o[1]:.2f}× |")
