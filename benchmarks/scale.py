"""Windows of 1 M, 3 M and 10 M predictions (+20 % feedback) on one OpenSearch node: the sampled
read (the engine counts, the processor reads at most max_rows) side by side with today's read of
every document, cold and steady.

One store holds a growing window: the first size is loaded, measured, then more predictions are
added to the same 15-minute span until the next size, and so on, so the 10 M window costs one load
of 12 M documents, not three. Per size:
- cold: a fresh reader (first cycle: a full read of the sample), `COLD_RUNS` runs;
- steady: the same reader's next cycles, each after 5 s of traffic at the window's rate arrived
  (an incremental read of the new documents, `STEADY_RUNS` runs);
- today's reader (`sampled=False`: every document read and parsed, then sampled to max_rows),
  cold and steady, up to TODAY_MAX predictions (above, it needs several GiB and minutes a cycle).
Peak RSS is the process's (VmHWM reset before each cycle); the engine's CPU per cycle is its JVM's
CPU seconds over the cycle.

The loader (load_fast) builds each bulk body with one f-string per document from columns prepared
in numpy (no dict per event, no json.dumps), sends LOAD_THREADS bulk requests at a time, and turns
the indices' refresh off while loading. The first size goes through the ml-events-ingested pipeline
(event.ingested and sampling.key set by the store: its rate includes the Painless script); the rest
carries both fields from the loader (common/sampling.py) with `pipeline=_none`, as the shipper does for
stores without pipelines. Prints both rates.

BENCH_SCALE_SIZES ("1000000,3000000") chooses the sizes; BENCH_SCALE_BACKEND the cluster (opensearch-1,
the default, or opensearch-3: three nodes, one primary each, one replica, benchmarks/backends.py); a size whose documents would not fit the
disk (STORE_BYTES_PER_DOC, measured at the first size) is skipped with the reason. Writes
docs/scale.png (docs/scale_opensearch-3.png for three nodes): cycle time and peak RSS against the
window, for both readers.
"""
from __future__ import annotations

import gc
import http.client
import math
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from statistics import median
from tempfile import TemporaryDirectory

import numpy as np

from benchmarks import backends, synthetic
from benchmarks.workload import FEEDBACK_SHARE, SPAN, bench_monitor, timed_cycle
from common import sampling
from common.schema import EVENTS_INDEX_PREFIX, daily_index
from common.store import StoreSettings
from log_processor.evaluate.evaluation import evaluate
from log_processor.export.metrics import Exporter
from log_processor.memory import settle_memory
from log_processor.read.store import EventStore
from log_processor.read.window_reader import WindowReads
from log_processor.runner import MonitorRunner

SIZES = (1_000_000, 3_000_000, 10_000_000)
TODAY_MAX = 3_000_000
COLD_RUNS, STEADY_RUNS = 3, 3
STEADY_STEP = 5.0                 # seconds of traffic between two steady cycles
LOAD_THREADS = 3
BULK_DOCS = 10_000
DOCS = Path(__file__).resolve().parent.parent / "docs"
BACKENDS = {"opensearch-1": ("scale.png", "one OpenSearch node"),
            "opensearch-3": ("scale_opensearch-3.png", "three OpenSearch nodes")}
STORE_BYTES_PER_DOC_GUESS = 600   # until measured


# --- the loader --------------------------------------------------------------------------------------

def _iso_ms(epoch_ms: np.ndarray) -> np.ndarray:
    return np.char.add(np.datetime_as_string(epoch_ms.astype("datetime64[ms]"), unit="ms"), "Z")


def bodies(n: int, start: float, end: float, seed: int, *, keyed: bool, ingested: str):
    """Bulk bodies (bytes) of n predictions evenly spread over [start, end) and FEEDBACK_SHARE of them
    labelled 20 s later, BULK_DOCS documents each."""
    rows = synthetic.chosen_rows("normal", min(n, 200_000), seed)
    rng = np.random.default_rng(seed)
    step = 50_000
    for first in range(0, n, step):
        m = min(step, n - first)
        pick = rng.integers(0, len(rows), size=m)
        conv, acc, trips = (rows[c].to_numpy()[pick].tolist() for c in ("conv_rate", "acc_rate", "avg_daily_trips"))
        driver, score, label, target = (rows[c].to_numpy()[pick].tolist() for c in ("driver_id", "prediction_score",
                                                                                  "prediction", "target"))
        at_ms = (start + (end - start) * (first + np.arange(m)) / n) * 1000
        at_ms = at_ms.astype(np.int64)
        ts = _iso_ms(at_ms).tolist()
        fb_ts = _iso_ms(at_ms + 20_000).tolist()
        rid = [f"{a:016x}{b:016x}" for a, b in zip(rng.integers(0, 2**63, size=m), rng.integers(0, 2**63, size=m))]
        keys = sampling.sample_keys(rid).tolist() if keyed else None
        labelled = (rng.random(m) < FEEDBACK_SHARE).tolist()
        index = [daily_index(EVENTS_INDEX_PREFIX, t) for t in (ts[0], ts[-1])]
        lines: list[str] = []
        for i in range(m):
            r = rid[i]
            idx = index[0] if ts[i][:10] == ts[0][:10] else index[1]
            extra = f',"sampling":{{"key":{keys[i]}}}' if keyed else ""
            lines.append(
                f'{{"create":{{"_index":"{idx}","_id":"p{r}"}}}}\n'
                f'{{"@timestamp":"{ts[i]}","event":{{"id":"p{r}","dataset":"ml.prediction","ingested":"{ingested}"}},'
                f'"service":{{"name":"serving"}},"model":{{"name":"driver_ranker","version":"synthetic-1"}},'
                f'"request_id":"{r}","features":{{"conv_rate":{conv[i]!r},"acc_rate":{acc[i]!r},'
                f'"avg_daily_trips":{int(trips[i])}}},"prediction":{{"driver_id":{int(driver[i])},'
                f'"score":{score[i]!r},"label":{int(label[i])}}},"latency_ms":3.0{extra}}}\n')
            if labelled[i]:
                lines.append(
                    f'{{"create":{{"_index":"{idx}","_id":"f{r}"}}}}\n'
                    f'{{"@timestamp":"{fb_ts[i]}","event":{{"id":"f{r}","dataset":"ml.feedback","ingested":"{ingested}"}},'
                    f'"service":{{"name":"serving"}},"model":{{"name":"driver_ranker","version":"synthetic-1"}},'
                    f'"request_id":"{r}","target":{{"trip_completed":{int(target[i])}}}{extra}}}\n')
            if len(lines) >= BULK_DOCS:
                yield "".join(lines).encode(), len(lines)
                lines = []
        if lines:
            yield "".join(lines).encode(), len(lines)


def _request(url: str, method: str, path: str, body: bytes | None = None, content: str = "application/json") -> bytes:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=900)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": content})
        response = conn.getresponse()
        data = response.read()
        if response.status >= 300:
            raise RuntimeError(f"{method} {path}: {response.status} {data[:300]!r}")
        return data
    finally:
        conn.close()


def load_fast(url: str, n: int, start: float, end: float, seed: int, *, pipeline: bool) -> tuple[int, float]:
    """(documents, seconds): n predictions (+ feedback) with refresh off, LOAD_THREADS bulk requests in flight."""
    days = sorted({daily_index(EVENTS_INDEX_PREFIX, datetime.fromtimestamp(t, timezone.utc))
                   for t in (start, end, end + 30)})
    for day in days:      # created ahead, so that refresh is off from the first document
        try:
            _request(url, "PUT", f"/{day}")
        except RuntimeError as exc:
            if "resource_already_exists" not in str(exc):
                raise
        _request(url, "PUT", f"/{day}/_settings", b'{"index":{"refresh_interval":"-1"}}')
    path = "/_bulk?filter_path=errors,items.*.error" + ("" if pipeline else "&pipeline=_none")
    ingested = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    sent, t0 = 0, time.perf_counter()

    def post(item: tuple[bytes, int]) -> int:
        body, count = item
        answer = _request(url, "POST", path, body, "application/x-ndjson")
        if b'"errors":true' in answer:
            raise RuntimeError(f"bulk: some documents were refused: {answer[:600]!r}")
        return count

    with ThreadPoolExecutor(LOAD_THREADS) as pool:
        pending = []
        for item in bodies(n, start, end, seed, keyed=not pipeline, ingested=ingested):
            pending.append(pool.submit(post, item))
            if len(pending) >= LOAD_THREADS * 2:
                before = sent
                sent += pending.pop(0).result()
                if sent // 500_000 > before // 500_000:
                    print(f"  loading {n:,} predictions: {sent:,} docs ({sent / (time.perf_counter() - t0):,.0f}/s)",
                          flush=True)
        for future in pending:
            sent += future.result()
    for day in days:
        _request(url, "PUT", f"/{day}/_settings", b'{"index":{"refresh_interval":null}}')
    _request(url, "POST", "/_refresh")
    seconds = time.perf_counter() - t0
    print(f"  loaded {n:,} predictions: {sent:,} docs in {seconds:.0f} s ({sent / seconds:,.0f}/s, "
          f"{'through the ingest pipeline' if pipeline else 'keyed by the loader, pipeline=_none'})", flush=True)
    return sent, seconds


def store_bytes(url: str) -> int:
    import json
    stats = json.loads(_request(url, "GET", "/ml-events-*/_stats/store"))
    return int(stats["_all"]["primaries"]["store"]["size_in_bytes"])


# --- the cycles ----------------------------------------------------------------------------------------

def _cycle(backend, runner: MonitorRunner) -> tuple[float, float, float, float]:
    """(seconds, peak RSS MB, engine CPU s, sampling rate) of one cycle."""
    t = timed_cycle(runner, backend)
    return t.seconds, t.peak_rss_mb, t.engine_cpu, float(runner.state.summary.get("sampling_rate", 1.0))


def _measure(backend, monitor, n: int, now: list[float], sampled: bool, seed: int) -> dict:
    url = backend.url
    cold, steady = [], []
    runs = COLD_RUNS if sampled or n <= 1_000_000 else 1
    runner = None
    for _ in range(runs):
        runner = MonitorRunner(monitor, EventStore(StoreSettings(url=url, request_timeout=900), workers=2),
                               Exporter([monitor.name]), write_summaries=False, clock=lambda: now[0],
                               reads=WindowReads(incremental=True, overlap=1.0, sampled=sampled))
        reference = runner.reference()
        evaluate(reference, reference.frame.head(1000), monitor)      # warm Evidently up, untimed
        settle_memory()
        cold.append(_cycle(backend, runner))
        print(f"  {'sampled' if sampled else 'today'} cold: {cold[-1][0]:.2f} s, peak RSS {cold[-1][1]:,.0f} MB, "
              f"engine {cold[-1][2]:.1f} s CPU, rate {cold[-1][3]}", flush=True)
    for i in range(STEADY_RUNS if sampled or n <= 1_000_000 else 1):
        new = max(1, round(n * STEADY_STEP / SPAN.total_seconds()))
        load_fast(url, new, now[0] - 1, now[0] - 1 + STEADY_STEP, seed * 100 + i, pipeline=False)
        now[0] += STEADY_STEP
        steady.append(_cycle(backend, runner))
        print(f"  {'sampled' if sampled else 'today'} steady: {steady[-1][0]:.2f} s, peak RSS {steady[-1][1]:,.0f} MB, "
              f"engine {steady[-1][2]:.1f} s CPU", flush=True)
    rows = runner.state.summary["rows"]
    del runner
    gc.collect()
    settle_memory()
    return {"n": n, "reader": "sampled" if sampled else "today", "cold": cold, "steady": steady, "rows": rows}


def _fits_disk(n: int, loaded: int, per_doc: float) -> bool:
    need = (n - loaded) * (1 + FEEDBACK_SHARE) * per_doc * 1.5          # merges rewrite segments
    free = shutil.disk_usage(os.environ.get("TMPDIR", "/tmp")).free
    if need > free * 0.8:
        print(f"  {n:,}: skipped — ~{need / 2**30:.1f} GiB more of index needed, {free / 2**30:.1f} GiB free", flush=True)
        return False
    return True


def main(quick: bool) -> None:
    override = os.environ.get("BENCH_SCALE_SIZES")
    sizes = [int(v) for v in override.split(",")] if override else [20_000, 60_000] if quick else list(SIZES)
    name = os.environ.get("BENCH_SCALE_BACKEND", "opensearch-1")
    if name not in BACKENDS:
        raise SystemExit(f"BENCH_SCALE_BACKEND={name!r} is not one of {', '.join(BACKENDS)}")
    results, loads = [], []
    with TemporaryDirectory() as tmp:
        monitor = bench_monitor(Path(tmp))
        end = (datetime.now(timezone.utc) - timedelta(hours=1)).replace(microsecond=0)
        if end.hour == 0 and end.minute < 20:          # one daily index
            end -= timedelta(minutes=30)
        start = end - SPAN
        backend = backends.start(name)
        try:
            loaded, per_doc = 0, STORE_BYTES_PER_DOC_GUESS
            now = [end.timestamp() + 1]
            for i, n in enumerate(sizes):
                if not _fits_disk(n, loaded, per_doc):
                    break
                print(f"-- {name}, {n:,} predictions", flush=True)
                docs, seconds = load_fast(backend.url, n - loaded, start.timestamp(), end.timestamp(), seed=200 + i,
                                          pipeline=loaded == 0)
                loads.append((n - loaded, docs, seconds, loaded == 0))
                loaded = n
                per_doc = store_bytes(backend.url) / max(1, loaded * (1 + FEEDBACK_SHARE))
                waited, cpu = backend.settle(timeout=120)
                print(f"  store {store_bytes(backend.url) / 2**30:.2f} GiB ({per_doc:.0f} B/doc); settled in "
                      f"{waited:.0f} s", flush=True)
                results.append(_measure(backend, monitor, n, now, True, seed=10 * i + 1))
                if n <= TODAY_MAX:
                    results.append(_measure(backend, monitor, n, now, False, seed=10 * i + 2))
        finally:
            backend.close()
    _print(results, loads)
    if not quick and results:
        _plot(results, name)


def _print(results: list[dict], loads: list[tuple]) -> None:
    print()
    print("Loader:")
    print("| predictions | documents | seconds | documents/s | ingest |")
    print("|---:|---:|---:|---:|---|")
    for n, docs, seconds, pipeline in loads:
        print(f"| {n:,} | {docs:,} | {seconds:.0f} | {docs / seconds:,.0f} | "
              f"{'ml-events-ingested pipeline' if pipeline else 'keyed by the loader'} |")
    print()
    print("Cycle times: median (min-max) of the runs; peak RSS: the highest; engine CPU: median per cycle.")
    print("| window (predictions) | reader | rate | evaluated rows | cold cycle | cold peak RSS | cold engine CPU "
          "| steady cycle | steady peak RSS | steady engine CPU |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        c, s = r["cold"], r["steady"]
        def cell(runs, k):
            values = [x[k] for x in runs]
            return f"{median(values):.2f} s ({min(values):.2f}-{max(values):.2f})" if values else "-"
        print(f"| {r['n']:,} | {r['reader']} | {c[0][3]:g} | {r['rows']['evaluated']:,} | {cell(c, 0)} | "
              f"{max(x[1] for x in c):,.0f} MB | {median(x[2] for x in c):.1f} s | {cell(s, 0)} | "
              f"{max((x[1] for x in s), default=math.nan):,.0f} MB | {median([x[2] for x in s] or [math.nan]):.1f} s |")


def _plot(results: list[dict], name: str) -> None:
    filename, cluster = BACKENDS[name]
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for reader, colour in (("sampled", "tab:blue"), ("today", "tab:red")):
        rs = [r for r in results if r["reader"] == reader]
        if not rs:
            continue
        xs = [r["n"] / 1e6 for r in rs]
        ax1.plot(xs, [median(x[0] for x in r["cold"]) for r in rs], "o-", color=colour, label=f"{reader}: cold")
        ax1.plot(xs, [median(x[0] for x in r["steady"]) for r in rs], "s--", color=colour, label=f"{reader}: steady")
        ax2.plot(xs, [max(x[1] for x in r["cold"] + r["steady"]) for r in rs], "o-", color=colour, label=reader)
    ax1.axhline(5, color="grey", lw=0.8, ls=":")
    ax1.set(xlabel="window (million predictions)", ylabel="cycle (s)", title=f"Cycle time, {cluster}")
    ax2.axhline(1024, color="grey", lw=0.8, ls=":")
    ax2.set(xlabel="window (million predictions)", ylabel="processor peak RSS (MB)", title="Peak RSS (1 GiB dotted)")
    ax1.legend()
    ax2.legend()
    fig.tight_layout()
    fig.savefig(DOCS / filename, dpi=90)
    print(f"wrote {DOCS / filename}")
