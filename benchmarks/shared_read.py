"""Several monitors over one index: one shared read per cycle against one read per monitor.

Three monitors watch ml-events-*: the shipped one (15 minutes of driver_ranker), the same model over
its last 5 minutes, and every model over 15 minutes. Per store (BENCH_STORES, default osmem and one
OpenSearch node): load a window (BENCH_SHARED_WINDOW predictions, default 200 000; `--quick` 50 000),
then at the same clock and on the same data, the three windows read separately (a WindowReader each)
and together (one WindowReader): a cold start (full reads), then `RUNS` steady cycles, each after 1 % of
the window arrived (the two ways take turns going first). Timed: getting the three windows (read, parse, join, assemble), not Evidently,
which is the same either way. Also counted: documents read and the store's CPU.
"""
from __future__ import annotations

import dataclasses
import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from statistics import median
from tempfile import TemporaryDirectory

from benchmarks import backends
from benchmarks.workload import SPAN, CountingStore, bench_monitor, load, stores_for
from common.store import StoreSettings
from log_processor.memory import settle_memory
from log_processor.read.window_reader import WindowReader, WindowReads

RUNS = 3
READS = WindowReads(incremental=True, overlap=1.0)     # 1 s: see benchmarks/incremental.py


def monitors(tmp: Path):
    shipped = bench_monitor(tmp)
    return (shipped, dataclasses.replace(shipped, name="driver_ranker_5m", window_seconds=300.0),
            dataclasses.replace(shipped, name="all_models", model_name=None))


def _timed(readers: list[tuple[WindowReader, tuple]], backend: backends.Backend, now: float) -> tuple[float, int, float]:
    """(seconds, documents read, store CPU seconds) to get every monitor's window from these readers."""
    for reader, _ in readers:
        reader.store.documents = 0
    cpu0, _ = backend.usage()
    t0 = time.perf_counter()
    for reader, group in readers:
        reader.windows(group, now)
    seconds = time.perf_counter() - t0
    cpu1, _ = backend.usage()
    return seconds, sum(reader.store.documents for reader, _ in readers), cpu1 - cpu0


def _measure(store: str, group: tuple, n: int, end: datetime) -> list[tuple[str, str, float, int, float]]:
    backend = backends.start(store)
    try:
        load(backend.url, n, end - SPAN, end, seed=300)
        client = lambda: CountingStore(StoreSettings(url=backend.url, request_timeout=600))   # noqa: E731
        separate = [(WindowReader(client(), m.index, READS), (m,)) for m in group]
        shared = [(WindowReader(client(), group[0].index, READS), group)]
        now = end.timestamp() + 1
        rows = []
        for i, phase in enumerate(["cold start"] + ["1 % new"] * RUNS):
            if phase != "cold start":
                step = 0.01 * SPAN.total_seconds()
                start = datetime.fromtimestamp(now, timezone.utc)
                load(backend.url, n // 100, start, start + timedelta(seconds=step), seed=400 + len(rows), quiet=True)
                now += step
            modes = [("one read per monitor", separate), ("one shared read", shared)]
            for mode, readers in modes if i % 2 == 0 else modes[::-1]:     # neither always reads a warmer store
                seconds, documents, cpu = _timed(readers, backend, now)
                rows.append((phase, mode, seconds, documents, cpu))
                print(f"  {phase:>10}, {mode:>20}: {seconds:5.2f} s, {documents:>9,} documents read, "
                      f"store CPU {cpu:.1f} s", flush=True)
        return rows
    finally:
        backend.close()


def main(quick: bool) -> None:
    n = 50_000 if quick else int(os.environ.get("BENCH_SHARED_WINDOW", "200000"))
    settle_memory()                     # the processor's collector settings (memory.settle_memory)
    results = {}
    with TemporaryDirectory() as tmp:
        group = monitors(Path(tmp))
        end = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)
        for store in stores_for(n, default=("osmem", "opensearch-1")):
            print(f"-- {store}, {len(group)} monitors over one index, window of {n:,} predictions", flush=True)
            results[store] = _measure(store, group, n, end)
    print()
    print(f"{len(group)} monitors over ml-events-* ({', '.join(m.name for m in group)}); window {n:,} predictions "
          f"(+20 % feedback). Time to every monitor's window (read, parse, join; not Evidently); steady: "
          f"{RUNS} cycles, best / median.")
    print("| store | cycle | reads | documents read | time | store CPU |")
    print("|---|---|---|---:|---:|---:|")
    for store, rows in results.items():
        for phase in ("cold start", "1 % new"):
            for mode in ("one read per monitor", "one shared read"):
                picked = [r for r in rows if r[0] == phase and r[1] == mode]
                times = [r[2] for r in picked]
                shown = f"{min(times):.2f} / {median(times):.2f} s" if len(times) > 1 else f"{times[0]:.2f} s"
                print(f"| {store} | {phase} | {mode} | {median(r[3] for r in picked):,.0f} | {shown} | "
                      f"{median(r[4] for r in picked):.1f} s |")
