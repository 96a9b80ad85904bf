"""What each monitoring task costs with every kind on (issue 20, point 9), on the real engine.

Per task, one monitor as the shipped file writes it, over a synthetic reference of its task
(benchmarks/synthetic.py) and a fresh store (BENCH_STORES, default one OpenSearch node) holding a
15-minute window of n predictions, 20 % labelled:

- binary_classification: the shipped ranker (drift, data stability, target drift, probabilistic
  quality, estimated quality with its score calibration);
- regression: the shipped trip_duration monitor (drift, data stability, target drift, MAE ... error
  quantiles);
- multiclass_classification: trip_type (classes short/medium/long, class scores: macro and per-class
  quality, probabilistic quality of the top score, target drift over the classes).

Each window is read cold (the first cycle of a processor, incremental reads on), then 1 % of n new
predictions land and the steady cycle reads only those. Peak RSS is the process's (VmHWM, reset
before each cycle). BENCH_TASK_SIZES ("100000,1000000") chooses the windows. The targets of
docs/benchmarks.md: 100 k ≤ 3 s, 1 M ≤ 20 s cold and ≤ 1 GiB, steady at 1 M ≤ 3 s.
"""
from __future__ import annotations

import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from tempfile import TemporaryDirectory

import yaml

from benchmarks import backends, synthetic
from benchmarks.log_processor import FEEDBACK_SHARE, SPAN, load_documents, reset_peak, rss_peak_mb
from common.store import StoreSettings
from log_processor.evaluate import evaluate
from log_processor.exporter import Exporter
from log_processor.monitors import REPO_ROOT, load_monitors
from log_processor.scheduler import MonitorRunner, WindowReads, settle_memory
from log_processor.store import EventStore

TASKS = ("binary_classification", "regression", "multiclass_classification")
STEADY_SHARE = 0.01


def monitors(tmp: Path) -> dict:
    """task -> Monitor: the shipped file's two monitors and a trip_type beside them, each reading a
    synthetic reference of its task and without a count limit on the window."""
    shipped = yaml.safe_load((REPO_ROOT / "log_processor/monitors.yaml").read_text())["monitors"]
    ranker, duration = shipped
    references = {"binary_classification": synthetic.reference_frame(5000, seed=101),
                  "regression": synthetic.regression_reference_frame(5000),
                  "multiclass_classification": synthetic.multiclass_reference_frame(5000)}
    trip_type = {key: value for key, value in ranker.items() if key != "estimation"}
    trip_type.update(name=synthetic.MULTICLASS_MODEL, task="multiclass_classification",
                     model_name=synthetic.MULTICLASS_MODEL, classes=list(synthetic.CLASSES),
                     prediction={"label": "prediction.class", "scores": "prediction.class_scores"},
                     target="target.class")
    configs = {"binary_classification": ranker, "regression": duration, "multiclass_classification": trip_type}
    for task, config in configs.items():
        path = tmp / f"{task}.parquet"
        references[task].to_parquet(path)
        config = {**config, "reference": {"parquet": str(path)}}
        config["window"] = {k: v for k, v in config["window"].items() if k != "last"}
        configs[task] = config
    path = tmp / "monitors.yaml"
    path.write_text(yaml.safe_dump({"monitors": list(configs.values())}, sort_keys=False))
    return dict(zip(configs, load_monitors(path)))


def documents(task: str, n: int, start: datetime, end: datetime, seed: int):
    if task == "binary_classification":
        rows = synthetic.chosen_rows("normal", n, seed)
        return synthetic.events(rows, start, end, feedback_share=FEEDBACK_SHARE, delay_seconds=20, seed=seed)
    rows = (synthetic.regression_rows if task == "regression" else synthetic.multiclass_rows)("normal", n, seed)
    return synthetic.task_events(rows, task, start, end, feedback_share=FEEDBACK_SHARE, delay_seconds=20, seed=seed)


def _cycle(runner: MonitorRunner) -> tuple[float, float]:
    reset_peak()
    started = time.perf_counter()
    if runner.run_once() != "ok":
        raise RuntimeError(f"cycle failed: {runner.state.last_error}")
    return time.perf_counter() - started, rss_peak_mb()


def measure(store: str, task: str, monitor, n: int, seed: int) -> dict:
    backend = backends.start(store)
    try:
        now = datetime.now(timezone.utc).replace(microsecond=0)
        load_documents(backend.url, documents(task, n, now - SPAN, now, seed), n)
        clock = {"now": now.timestamp() + 1}
        runner = MonitorRunner(monitor, EventStore(StoreSettings(url=backend.url, request_timeout=600), workers=2),
                               Exporter([monitor.name]), write_summaries=False, clock=lambda: clock["now"],
                               reads=WindowReads(incremental=True))
        reference = runner.reference()
        evaluate(reference, reference.frame.head(1000), monitor)        # warm Evidently up, untimed
        settle_memory()
        cold, cold_mb = _cycle(runner)
        cold_rows = runner.state.summary["rows"]["current"]
        settle_memory()
        new = max(1, int(n * STEADY_SHARE))
        start = datetime.fromtimestamp(clock["now"], timezone.utc)
        step = new / (n / SPAN.total_seconds())         # the window's rate of predictions per second
        load_documents(backend.url, documents(task, new, start, start + timedelta(seconds=step), seed + 1), new,
                       quiet=True)
        clock["now"] += step
        steady, steady_mb = _cycle(runner)
        rows = runner.state.summary["rows"]
        print(f"  {task}: cold {cold:.2f} s ({cold_mb:,.0f} MB, {cold_rows:,} rows), steady +{new:,} {steady:.2f} s "
              f"({steady_mb:,.0f} MB), rows {rows}", flush=True)
        return {"store": store, "task": task, "n": n, "evaluated": rows["evaluated"], "labelled": rows["labelled"],
                "cold": cold, "cold_mb": cold_mb, "new": new, "steady": steady, "steady_mb": steady_mb}
    finally:
        backend.close()


def main(quick: bool) -> None:
    override = os.environ.get("BENCH_TASK_SIZES")
    sizes = [int(v) for v in override.split(",")] if override else [10_000] if quick else [100_000, 1_000_000]
    results = []
    with TemporaryDirectory() as tmp:
        by_task = monitors(Path(tmp))
        for store in backends.chosen(("opensearch-1",)):
            for i, n in enumerate(sizes):
                for task in TASKS:
                    print(f"-- {store}, {task}, {n:,} predictions", flush=True)
                    results.append(measure(store, task, by_task[task], n, seed=300 + i))
    print()
    print("One monitor per task, every monitoring kind on; cold: the first cycle (a full read of the window); "
          "steady: the next, after 1 % of the window landed")
    print("| store | task | window (predictions) | evaluated rows | labelled | cold cycle | cold peak RSS "
          "| steady cycle | steady peak RSS |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['store']} | {r['task']} | {r['n']:,} | {r['evaluated']:,} | {r['labelled']:,} | {r['cold']:.2f} s "
              f"| {r['cold_mb']:,.0f} MB | {r['steady']:.2f} s (+{r['new']:,}) | {r['steady_mb']:,.0f} MB |")
