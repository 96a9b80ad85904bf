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

After the bulk load the store is left to settle (no merge running, its CPU quiet: Backend.settle), as
a store that has been taking its traffic for a while is; each cycle then records the store's CPU
beside its own time and its phases (the summary document's phase_seconds).
The engine's first search after it started (JIT compilation, caches) is a read of its own, timed
apart ("engine's first read"): a store in service has answered searches before, and the targets of
docs/benchmarks.md were set on a warm engine.
Each window is read cold, as a processor's first cycle reads it (a full read; repeated as the
log_processor suite does, 9 times up to 100 k and 3 above, the median the figure), then three times
1 % of n new predictions land and each steady cycle reads only those; the figure is their median
(the first also re-reads, through the read overlap, the end of the bulk load). Peak RSS is the process's (VmHWM, reset
before each cycle). BENCH_TASK_SIZES ("100000,1000000") chooses the windows. The targets of
docs/benchmarks.md: 100 k ≤ 3 s, 1 M ≤ 20 s cold and ≤ 1 GiB, steady at 1 M ≤ 3 s.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from statistics import median
from datetime import datetime, timedelta, timezone
from pathlib import Path
from tempfile import TemporaryDirectory

import yaml

from benchmarks import backends, synthetic
from benchmarks.workload import FEEDBACK_SHARE, SPAN, load_documents, repeats, timed_cycle
from common.store import StoreSettings
from log_processor.evaluate.evaluation import evaluate
from log_processor.export.metrics import Exporter
from log_processor.monitors import REPO_ROOT, load_monitors
from log_processor.memory import settle_memory
from log_processor.read.window_reader import WindowReads
from log_processor.runner import MonitorRunner
from log_processor.read.store import EventStore

TASKS = ("binary_classification", "regression", "multiclass_classification")
STEADY_SHARE = 0.01
STEADY_CYCLES = 3       # the first re-reads the end of the bulk load (the read overlap): the median is the figure
# As in benchmarks/incremental.py: each cycle's events land in one burst just before it, a few seconds
# after the previous burst, so the default 10 s overlap would read every burst twice; in service the
# overlap is 10 s of a 60 s interval's continuous traffic, about a sixth.
READ_OVERLAP = 1.0
PLOT = REPO_ROOT / "docs" / "tasks_cycle.png"


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


@dataclass
class Cycle:
    seconds: float
    rss_mb: float
    store_cpu: float                  # the store's CPU seconds during the cycle
    phases: dict[str, float]          # the summary document's phase_seconds


def _cycle(runner: MonitorRunner, backend: backends.Backend) -> Cycle:
    t = timed_cycle(runner, backend)
    return Cycle(t.seconds, t.peak_rss_mb, t.engine_cpu, runner.state.summary["phase_seconds"])


def _middle(cycles: list[Cycle]) -> Cycle:
    """The median cycle by time (the counts are odd: 9 or 3), so its phases and store CPU go with it."""
    return sorted(cycles, key=lambda c: c.seconds)[len(cycles) // 2]


def _phases(cycle: Cycle) -> str:
    return " + ".join(f"{name} {value:.2f}" for name, value in cycle.phases.items())


def measure(store: str, task: str, monitor, n: int, seed: int) -> dict:
    backend = backends.start(store)
    try:
        now = datetime.now(timezone.utc).replace(microsecond=0)
        load_documents(backend.url, documents(task, n, now - SPAN, now, seed), n)
        waited, merging = backend.settle()
        print(f"  store settled after the load: {waited:.0f} s, {merging:.1f} s of its CPU", flush=True)
        clock = {"now": now.timestamp() + 1}
        runner = MonitorRunner(monitor, EventStore(StoreSettings(url=backend.url, request_timeout=600), workers=2),
                               Exporter([monitor.name]), write_summaries=False, clock=lambda: clock["now"],
                               reads=WindowReads(incremental=True, overlap=READ_OVERLAP))
        reference = runner.reference()
        evaluate(reference, reference.frame.head(1000), monitor)        # warm Evidently up, untimed
        started = time.perf_counter()                                   # the engine's first search since start
        MonitorRunner(monitor, runner.store, Exporter([monitor.name]), clock=runner.clock).fetch_window(clock["now"])
        engine_first = time.perf_counter() - started
        colds = []
        for _ in range(repeats(n)):         # each a full read: the held window forgotten, as at start
            runner.reader.forget(monitor.name)
            settle_memory()
            colds.append(_cycle(runner, backend))
        cold = _middle(colds)
        cold_rows = runner.state.summary["rows"]["current"]
        new = max(1, int(n * STEADY_SHARE))
        step = new / (n / SPAN.total_seconds())         # the window's rate of predictions per second
        steady = []
        for k in range(STEADY_CYCLES):
            settle_memory()
            start = datetime.fromtimestamp(clock["now"], timezone.utc)
            load_documents(backend.url, documents(task, new, start, start + timedelta(seconds=step), seed + 1 + k),
                           new, quiet=True)
            clock["now"] += step
            steady.append(_cycle(runner, backend))
        seconds = [c.seconds for c in steady]
        rows = runner.state.summary["rows"]
        print(f"  {task}: the engine's first read of the window {engine_first:.2f} s (untimed in the cycles)", flush=True)
        print(f"  {task}: cold {' / '.join(f'{c.seconds:.2f}' for c in colds)} s; median {cold.seconds:.2f} s "
              f"({cold.rss_mb:,.0f} MB, {cold_rows:,} rows, store CPU {cold.store_cpu:.1f} s; {_phases(cold)}), "
              f"rows {rows}", flush=True)
        for c in steady:
            print(f"    steady +{new:,}: {c.seconds:.2f} s ({c.rss_mb:,.0f} MB, store CPU {c.store_cpu:.1f} s; "
                  f"{_phases(c)})", flush=True)
        middle = _middle(steady)
        return {"store": store, "task": task, "n": n, "evaluated": rows["evaluated"], "labelled": rows["labelled"],
                "cold": cold.seconds, "cold_best": min(c.seconds for c in colds), "cold_runs": len(colds),
                "cold_mb": max(c.rss_mb for c in colds), "cold_store_cpu": cold.store_cpu, "new": new,
                "steady": middle.seconds, "first_steady": seconds[0], "steady_mb": max(c.rss_mb for c in steady),
                "steady_store_cpu": median(c.store_cpu for c in steady), "steady_phases": _phases(middle),
                "settle": waited, "engine_first": engine_first}
    finally:
        backend.close()


def plot(results: list[dict]) -> None:
    """Cycle time against the window, per task: cold (solid) and steady (dashed), with the targets."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for task, color in zip(TASKS, ("tab:blue", "tab:orange", "tab:green")):
        mine = sorted((r for r in results if r["task"] == task), key=lambda r: r["n"])
        xs = [r["n"] for r in mine]
        ax.plot(xs, [r["cold"] for r in mine], "o-", color=color, label=f"{task}: cold (full read)")
        ax.plot(xs, [r["steady"] for r in mine], "s--", color=color, label=f"{task}: steady (+1 %)")
    ax.axhline(3.0, color="grey", linewidth=0.8, linestyle=":", label="target: 100 k window and steady 1 M, 3 s")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("window (predictions, 20 % labelled)")
    ax.set_ylabel("cycle time (s)")
    ax.set_title("One monitor per task, every kind on, one OpenSearch node")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(PLOT, dpi=110)
    print(f"plot: {PLOT}", flush=True)


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
    print("One monitor per task, every monitoring kind on; cold: a full read of the window, best and median of (runs); "
          f"steady: the median of the next {STEADY_CYCLES}, each after 1 % of the window landed (first: the first of them)")
    print("| store | task | window (predictions) | evaluated rows | labelled | engine's first read | cold cycle (best / median) "
          "| cold peak RSS | cold store CPU | steady cycle (median) | first steady cycle | steady peak RSS "
          "| steady store CPU | median cycle's phases (s) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        print(f"| {r['store']} | {r['task']} | {r['n']:,} | {r['evaluated']:,} | {r['labelled']:,} "
              f"| {r['engine_first']:.2f} s | {r['cold_best']:.2f} / {r['cold']:.2f} s ({r['cold_runs']}) "
              f"| {r['cold_mb']:,.0f} MB | {r['cold_store_cpu']:.1f} s | {r['steady']:.2f} s (+{r['new']:,}) "
              f"| {r['first_steady']:.2f} s | {r['steady_mb']:,.0f} MB | {r['steady_store_cpu']:.1f} s "
              f"| {r['steady_phases']} |")
    if len({r["n"] for r in results}) > 1:
        plot(results)
