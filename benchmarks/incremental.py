"""Incremental windows in steady state: a 1 M-prediction window, and each cycle 1 k / 10 k / 100 k new
predictions (+20 % feedback) arrive while as many leave the window by its span.

Per store (BENCH_STORES): load the window, a cold start (a full read), then for each number of new
events per cycle, `RUNS` cycles, each after loading its new events (not timed) and moving the clock on
by the time they span, so the window keeps its size. A full read of the final window closes each store.
Timed: the processor's whole cycle (read, join, Evidently on the `max_rows` sample, export). Also
measured: documents the cycle read, the processor's peak RSS, the store's CPU.

The read overlap is 1 s here (the store's refresh interval) rather than the default 10 s: the benchmark
delivers each cycle's events in one burst right before the cycle, and with 10 s the overlap would read
the previous burst again, a cost that steady traffic pays only for its last 10 s (at 1 % of 1 M every
60 s, ~1 700 documents). BENCH_INCREMENTAL_WINDOW (default 1000000) sets the window; `--quick`: 100 000 and no plot.
Prints a table; writes docs/incremental_cycle.png (cycle time against new events per cycle).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from statistics import median
from tempfile import TemporaryDirectory

from benchmarks import backends
from benchmarks.workload import SPAN, CountingStore, bench_monitor, load, stores_for, timed_cycle
from common.store import StoreSettings
from log_processor.evaluate.evaluation import evaluate
from log_processor.export.metrics import Exporter
from log_processor.memory import settle_memory
from log_processor.read.window_reader import WindowReads
from log_processor.runner import MonitorRunner

NEW_PER_CYCLE = (1_000, 10_000, 100_000)
RUNS = 3
PLOT = Path(__file__).resolve().parent.parent / "docs" / "incremental_cycle.png"


@dataclass
class Cycle:
    kind: str            # "cold start", "incremental", "full read"
    new: int             # new predictions since the previous cycle
    seconds: float
    documents: int
    rss_mb: float
    store_cpu: float


def _cycle(runner: MonitorRunner, backend: backends.Backend, kind: str, new: int) -> Cycle:
    store = runner.store
    assert isinstance(store, CountingStore)
    store.documents = 0
    t = timed_cycle(runner, backend)
    seconds = t.seconds
    cycle = Cycle(kind, new, seconds, store.documents, t.peak_rss_mb, t.engine_cpu)
    print(f"  {kind:>11} {new:>7,} new: {seconds:5.2f} s, {cycle.documents:>9,} documents read, "
          f"peak RSS {cycle.rss_mb:,.0f} MB, store CPU {cycle.store_cpu:.1f} s, "
          f"window {runner.state.summary['rows']['current']:,} rows", flush=True)
    return cycle


def _measure(store: str, monitor, n: int, end: datetime) -> list[Cycle]:
    backend = backends.start(store)
    try:
        load(backend.url, n, end - SPAN, end, seed=300)
        now = [end.timestamp() + 1]
        runner = MonitorRunner(monitor, CountingStore(StoreSettings(url=backend.url, request_timeout=600)),
                               Exporter([monitor.name]), write_summaries=False, clock=lambda: now[0],
                               reads=WindowReads(incremental=True, overlap=1.0))
        evaluate(runner.reference(), runner.reference().frame.head(1000), monitor)   # warm Evidently up
        settle_memory()
        cycles = [_cycle(runner, backend, "cold start", 0)]
        rate = n / SPAN.total_seconds()                     # predictions per second of event time
        seed = 400
        for k in NEW_PER_CYCLE:
            for _ in range(RUNS):
                start = datetime.fromtimestamp(now[0], timezone.utc)
                step = k / rate
                seed += 1
                load(backend.url, k, start, start + timedelta(seconds=step), seed=seed, quiet=True)
                now[0] += step
                cycles.append(_cycle(runner, backend, "incremental", k))
        runner.reader.forget(monitor.name)
        cycles.append(_cycle(runner, backend, "full read", 0))
        return cycles
    finally:
        backend.close()


def _plot(results: dict[str, list[Cycle]], n: int) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for (store, cycles), color in zip(results.items(), ("tab:blue", "tab:orange", "tab:green")):
        xs = list(NEW_PER_CYCLE)
        ys = [median(c.seconds for c in cycles if c.kind == "incremental" and c.new == k) for k in xs]
        ax.plot(xs, ys, "o-", color=color, label=f"{store}: incremental cycle (median)")
        full = median(c.seconds for c in cycles if c.kind in ("cold start", "full read"))
        ax.axhline(full, color=color, linestyle="--", label=f"{store}: full read of the window")
    ax.set_xscale("log")
    ax.set_xlabel("new predictions per cycle (+20 % feedback)")
    ax.set_ylabel("cycle time (s)")
    ax.set_ylim(bottom=0)
    ax.set_title(f"Evaluation cycle at a fixed {n:,}-prediction window")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(PLOT, dpi=110)
    print(f"plot: {PLOT}", flush=True)


def main(quick: bool) -> None:
    n = 100_000 if quick else int(os.environ.get("BENCH_INCREMENTAL_WINDOW", "1000000"))
    results: dict[str, list[Cycle]] = {}
    with TemporaryDirectory() as tmp:
        monitor = bench_monitor(Path(tmp))
        end = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)
        for store in stores_for(n):
            print(f"-- {store}, window of {n:,} predictions", flush=True)
            results[store] = _measure(store, monitor, n, end)
    print()
    print(f"Window: {n:,} predictions (+20 % feedback) over 15 minutes; max_rows 200 000 to Evidently. "
          f"Incremental: {RUNS} cycles per row, best / median.")
    print("| store | cycle | new predictions | documents read | cycle time | peak RSS | store CPU |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for store, cycles in results.items():
        rows = [("cold start", 0), *(("incremental", k) for k in NEW_PER_CYCLE), ("full read", 0)]
        for kind, k in rows:
            picked = [c for c in cycles if c.kind == kind and c.new == k]
            times = [c.seconds for c in picked]
            shown = f"{min(times):.2f} / {median(times):.2f} s" if len(times) > 1 else f"{times[0]:.2f} s"
            print(f"| {store} | {kind} | {k:,} | {median(c.documents for c in picked):,.0f} | {shown} | "
                  f"{max(c.rss_mb for c in picked):,.0f} MB | {median(c.store_cpu for c in picked):.1f} s |")
    if results and not quick:
        _plot(results, n)
