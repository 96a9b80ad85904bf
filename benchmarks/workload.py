"""What the log-processor suites share: a window of synthetic events bulk-loaded into a store, the
shipped monitor over it, the stores that can hold it, a store client that counts what a cycle reads,
and the process's peak memory.

A leaf module like stats.py: suites import it, it imports no suite (tests/test_benchmarks_suites.py).
"""
from __future__ import annotations

import dataclasses
import gc
import http.client
import json
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Mapping

from benchmarks import backends, synthetic
from common.schema import EVENTS_INDEX_PREFIX, daily_index, stamp_ingested
from log_processor.monitors import REPO_ROOT, load_monitors
from log_processor.read.store import EventStore

FEEDBACK_SHARE = 0.2
STORE_KB_PER_DOC = 10         # osmem-server's live memory per stored document (measured: 9.6 KB)
SPAN = timedelta(minutes=15)


def repeats(n: int) -> int:
    """Small windows vary by tens of milliseconds from run to run: more runs, still minutes in all."""
    return 9 if n <= 100_000 else 3


def rss_peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak() -> None:
    """Start a run's peak at what the process holds now, after collecting what earlier runs left in
    reference cycles (the processor collects after each cycle, schedule.IndexThread)."""
    gc.collect()
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


@dataclasses.dataclass(frozen=True)
class TimedCycle:
    seconds: float
    peak_rss_mb: float
    engine_cpu: float         # the store's CPU seconds over the cycle


def timed_cycle(runner, backend: backends.Backend) -> TimedCycle:
    """One `runner.run_once()` that must succeed: its wall time, the process's peak RSS during it,
    and the store's CPU over it (the suites' one way of timing a cycle)."""
    reset_peak()
    cpu0, _ = backend.usage()
    started = time.perf_counter()
    if runner.run_once() != "ok":
        raise RuntimeError(f"cycle failed: {runner.state.last_error}")
    seconds = time.perf_counter() - started
    cpu1, _ = backend.usage()
    return TimedCycle(seconds, rss_peak_mb(), cpu1 - cpu0)


def _mem_available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return float("inf")


def load(url: str, n: int, start: datetime, end: datetime, seed: int, *, quiet: bool = False) -> int:
    """Bulk-load n predictions (+ feedback) spread over [start, end) as raw NDJSON, 10 000 documents per
    request, with progress."""
    rows = synthetic.chosen_rows("normal", n, seed)
    docs = synthetic.events(rows, start, end, feedback_share=FEEDBACK_SHARE, delay_seconds=20, seed=seed)
    return load_documents(url, docs, n, quiet=quiet)


def load_documents(url: str, docs, n: int, *, quiet: bool = False) -> int:
    """Bulk-load event documents (of n predictions, for the progress line) into their daily indices."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=600)
    lines: list[str] = []
    sent, t0 = 0, time.perf_counter()

    def flush() -> None:
        nonlocal sent
        conn.request("POST", "/_bulk?filter_path=errors", body="".join(lines).encode(),
                     headers={"Content-Type": "application/x-ndjson"})
        response = conn.getresponse()
        body = response.read()
        if response.status != 200 or b'"errors":true' in body:
            raise RuntimeError(f"bulk failed: {response.status} {body[:300]!r}")
        sent += len(lines)
        lines.clear()
        rate = sent / (time.perf_counter() - t0)
        if not quiet:
            print(f"\r  loading {n:,} predictions: {sent:,} docs ({rate:,.0f}/s)", end="", flush=True)

    for doc in docs:
        action = {"create": {"_index": daily_index(EVENTS_INDEX_PREFIX, doc["@timestamp"]), "_id": doc["event"]["id"]}}
        lines.append(json.dumps(action) + "\n" + json.dumps(stamp_ingested(doc)) + "\n")
        if len(lines) >= 10_000:
            flush()
    if lines:
        flush()
    conn.request("POST", "/_refresh")
    conn.getresponse().read()
    conn.close()
    if not quiet:
        print(f" — {time.perf_counter() - t0:.0f} s", flush=True)
    return sent


def stores_for(n: int, default: tuple[str, ...] = backends.ALL) -> list[str]:
    """The chosen stores (BENCH_STORES) that can hold an n-prediction window on this machine."""
    return [store for store in backends.chosen(default) if store != "osmem" or osmem_fits(n)]


def osmem_fits(n: int) -> bool:
    live_mb = n * STORE_KB_PER_DOC / 1024 * (1 + FEEDBACK_SHARE)
    limit_mb = backends.OSMEM_MEMORY_LIMIT_GIB * 1024
    store_mb = min(limit_mb, 2 * live_mb)     # GOGC=100 below the limit
    if live_mb > limit_mb * 0.85 or _mem_available_mb() < store_mb + 4096:
        print(f"  osmem {n:,}: skipped — osmem-server would hold ~{live_mb / 1024:.0f} GiB of documents "
              f"(limit {backends.OSMEM_MEMORY_LIMIT_GIB} GiB) and up to {store_mb / 1024:.0f} GiB in all; "
              f"{_mem_available_mb() / 1024:.0f} GiB are available (4 GiB kept for the cycle)", flush=True)
        return False
    return True


def bench_monitor(tmp: Path):
    """The shipped monitor on a 15-minute window without a count limit, over a synthetic reference."""
    reference_path = tmp / "reference.parquet"
    synthetic.reference_frame(5000, seed=101).to_parquet(reference_path)
    base = load_monitors(REPO_ROOT / "log_processor/monitors.yaml")[0]
    return dataclasses.replace(base, window_last=None, model_name="driver_ranker",
                               reference=dataclasses.replace(base.reference, parquet=reference_path, manifest=None))


class CountingStore(EventStore):
    """The processor's store client, counting the documents its searches and scrolls return."""
    documents = 0

    def _call(self, operation, fn, fields=None):
        response = super()._call(operation, fn, fields)
        hits = response.get("hits") if hasattr(response, "get") else None
        if isinstance(hits, Mapping):
            self.documents += len(hits.get("hits") or [])
        return response
