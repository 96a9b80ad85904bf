"""Shipper ingest: events per second from a JSON-lines file into the store, per bulk size.

The file holds BENCH_SHIPPER_EVENTS (default 100 000; --quick 20 000) events as serving writes
them (predictions, a fifth with feedback). Each run ships the whole file with a fresh offsets
file into an emptied ml-events-*, the way the demo's shipper does (`Shipper.drain`), and counts
only what the store acknowledged. One untimed run first warms the store up (a JVM compiles
its hot paths in the first seconds). Stores: benchmarks/backends.py (BENCH_STORES).
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from common.schema import feedback_event, prediction_event
from common.store import StoreSettings, connect
from shipper import Shipper, ShipperSettings
from benchmarks import backends

BATCH_SIZES = (500, 2000, 5000)


def write_events(path: Path, n: int) -> int:
    start = datetime.now(timezone.utc).replace(hour=1, minute=0, second=0, microsecond=0)
    written = 0
    with open(path, "w") as out:
        for i in range(n):
            at = start + timedelta(milliseconds=i * 10)
            event = prediction_event(model_name="driver_ranker", model_version="1", request_id=f"r{i}",
                                     features={"conv_rate": 0.3 + (i % 50) / 100, "acc_rate": 0.8,
                                               "avg_daily_trips": i % 900},
                                     driver_id=1001 + i % 500, score=0.61, label=1, latency_ms=2.5, timestamp=at)
            out.write(json.dumps(event) + "\n")
            written += 1
            if i % 5 == 0 and written < n:
                out.write(json.dumps(feedback_event(model_name="driver_ranker", model_version="1",
                                                    request_id=f"r{i}", trip_completed=1,
                                                    timestamp=at + timedelta(seconds=1))) + "\n")
                written += 1
            if written >= n:
                break
    return written


def ship_once(url: str, events_file: Path, batch_size: int, state_dir: Path) -> tuple[int, float]:
    settings = ShipperSettings(files=(events_file,), state_dir=state_dir, batch_size=batch_size,
                               store=StoreSettings(url=url, request_timeout=120))
    shipper = Shipper(settings)
    t0 = time.perf_counter()
    shipper.drain()
    elapsed = time.perf_counter() - t0
    shipper.close()
    if shipper.stats.dead_lettered or shipper.stats.retries:
        print(f"    note: {shipper.stats.retries} retries, {shipper.stats.dead_lettered} dead-lettered", flush=True)
    return shipper.stats.shipped, elapsed


def main(quick: bool) -> None:
    n = int(os.environ.get("BENCH_SHIPPER_EVENTS", 20_000 if quick else 100_000))
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-shipper-") as tmp:
        events_file = Path(tmp) / "events.jsonl"
        total = write_events(events_file, n)
        print(f"  {total:,} events in {events_file.stat().st_size / 1e6:.0f} MB", flush=True)
        for name in backends.chosen():
            backend = backends.start(name)
            try:
                es = connect(StoreSettings(url=backend.url, request_timeout=120))
                ship_once(backend.url, events_file, 2000, Path(tmp) / f"warm-{name}")   # JIT, caches: untimed
                for batch in BATCH_SIZES:
                    es.indices.delete(index="ml-events-*", ignore_unavailable=True)
                    cpu0, _ = backend.usage()
                    shipped, elapsed = ship_once(backend.url, events_file, batch, Path(tmp) / f"state-{name}-{batch}")
                    cpu1, rss = backend.usage()
                    es.indices.refresh(index="ml-events-*")
                    stored = es.count(index="ml-events-*")["count"]
                    if stored != total or shipped != total:
                        raise RuntimeError(f"{name}: shipped {shipped}, stored {stored}, expected {total}")
                    rows.append((name, batch, total, elapsed, cpu1 - cpu0, rss))
                    print(f"  {name} batch {batch}: {total / elapsed:,.0f} events/s "
                          f"(store CPU {cpu1 - cpu0:.1f} s, RSS {rss:,.0f} MB)", flush=True)
                es.close()
            finally:
                backend.close()
    print()
    print("| store | bulk size | events | time | events/s | store CPU | store RSS |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, batch, total, elapsed, cpu, rss in rows:
        print(f"| {name} | {batch:,} | {total:,} | {elapsed:.1f} s | {total / elapsed:,.0f} | {cpu:.1f} s | {rss:,.0f} MB |")
