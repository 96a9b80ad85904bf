"""Estimated against realized quality on fresh seeds, for this stack's model, and what the estimate costs.

The model and the reference are the shipped ones (var/model/, written by serving/train.py); the
score calibration is fitted on that reference with each method (log_processor/evaluate/estimation.py). The
windows are serving's traffic made fresh from serving.data's world (the same 500 drivers per
population, candidates per request, best-scored candidate logged, outcome drawn from the world's
true completion probability), with seeds training and the reference never used:

- unshifted: normal drivers, the normal label relation;
- covariate, half / whole demo shift: the drivers' features moved by half of DRIFT_SPEC's shifts /
  the drift population (the demo's features), labels still from the normal relation: P(y | X) is
  unchanged, so a calibrated estimator should hold;
- concept alone: normal drivers, labels from the drift relation (P(y | X) changed, X did not);
- demo drift: the demo's drift phase, drift drivers with the drift relation (both changed).

The band carries the labels' randomness and the calibration's own error (its bootstrap refits),
which a reference of m rows leaves at about sqrt(acc (1 - acc) / m) on accuracy (0.003 for the
shipped 20 000 rows). The unshifted case is also run with the calibration fitted on a second,
fresh reference of LARGE_REFERENCE rows made the way train.py makes the shipped one (the chosen
candidate of normal requests): one reference is one draw.

Per window: the estimate over its rows (no labels used) against the realized value of its rows'
labels. "median |err|" is the median over windows of |estimated - realized|, "bias" the mean of
estimated - realized, "covered" the share of windows whose realized value lies in the 95 % band,
"width" the band's mean full width. The vectorised generator below reproduces
serving.data.generate_traffic (which loops per request) for 10^6 rows in seconds.

Cost (point 7 of the issue): the shipped monitor on a 100 k-prediction window loaded into each store
of BENCH_STORES (benchmarks/backends.py; default osmem and OpenSearch with 1 node), full cycles
with and without estimation alternated, and the estimation step alone on the cycle's window.
Writes docs/estimation.png.
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
import pandas as pd

from benchmarks import backends
from log_processor.evaluate import estimation as est
from log_processor.monitors import REPO_ROOT
from serving import data
from serving.model import load_model

MODEL_DIR = REPO_ROOT / "var" / "model"
PLOT = REPO_ROOT / "docs" / "estimation.png"
SIZES = (1_000, 10_000)
PLOT_SIZES = (300, 1_000, 3_000, 10_000)
SCENARIOS = {   # name -> (population, shift fraction of the normal drivers, label relation)
    "unshifted": ("normal", 0.0, "normal"),
    "covariate, half demo shift": ("normal", 0.5, "normal"),
    "covariate, demo shift": ("drift", 0.0, "normal"),
    "concept alone": ("normal", 0.0, "drift"),
    "demo drift (both)": ("drift", 0.0, "drift"),
}
LARGE_REFERENCE = 20_000
COST_ROWS = 100_000
COST_RUNS = 5


def windows_for(n: int, quick: bool) -> int:
    full = 300 if n <= 1_000 else 150
    return max(20, full // 5) if quick else full


class World:
    """serving.data's world scored by the shipped model, vectorised over requests."""

    def __init__(self, model):
        self.model = model
        self.latest = data.latest_features(data.generate_driver_stats())

    def features(self, population: str, shift: float) -> pd.DataFrame:
        frame = self.latest.loc[data.driver_ids(population)].copy()
        for name in data.FEATURE_COLUMNS:
            frame[name] = frame[name] + shift * float(data.DRIFT_SPEC[name]["shift"])
        return frame

    def rows(self, scenario: str, n: int, rng: np.random.Generator) -> pd.DataFrame:
        population, shift, labels = SCENARIOS[scenario]
        drivers = self.features(population, shift)
        low, high = data.CANDIDATES_PER_REQUEST
        offered = rng.integers(low, high + 1, size=n)
        picks = np.argpartition(rng.random((n, len(drivers))), high, axis=1)[:, :high]   # distinct per request
        candidates = drivers.iloc[picks.ravel()].reset_index(drop=True)
        score = self.model.score(candidates).reshape(n, high)
        score = np.where(np.arange(high)[None, :] < offered[:, None], score, -np.inf)
        best = score.argmax(axis=1)
        chosen = candidates.iloc[np.arange(n) * high + best].reset_index(drop=True)
        chosen_score = score[np.arange(n), best]
        truth = data.true_completion_probability(chosen, labels)
        return pd.DataFrame({"prediction_score": chosen_score,
                             "prediction": self.model.label(chosen_score).astype(int),
                             "target": (rng.random(n) < truth).astype(int)})


def calibrations() -> dict[str, est.ScoreCalibration]:
    reference = pd.read_parquet(MODEL_DIR / "reference.parquet")
    args = (reference["prediction_score"].to_numpy(float), reference["target"].to_numpy(int),
            reference["prediction"].to_numpy(int))
    return {method: est.fit_calibration(*args, method) for method in est.CALIBRATION_METHODS}


def large_reference_calibration(world: World, rng) -> est.ScoreCalibration:
    reference = world.rows("unshifted", LARGE_REFERENCE, rng)
    return est.fit_calibration(reference["prediction_score"].to_numpy(float), reference["target"].to_numpy(int),
                               reference["prediction"].to_numpy(int), "platt")


def run_windows(world: World, calibrated: dict, scenario: str, n: int, count: int, rng) -> dict:
    """Per method and metric: arrays of (estimate, lower, upper, realized) over `count` windows."""
    out = {m: {k: [] for k in est.METRICS} for m in calibrated}
    for _ in range(count):
        w = world.rows(scenario, n, rng)
        score, predicted, target = (w[c].to_numpy(float) for c in ("prediction_score", "prediction", "target"))
        realized = est.realized_quality(target, predicted, score)
        for method, calibration in calibrated.items():
            estimates = est.estimate(calibration, score, predicted).estimates
            for metric, e in estimates.items():
                if metric in realized:
                    out[method][metric].append((e.value, e.lower, e.upper, realized[metric]))
    return {m: {k: np.array(v).reshape(-1, 4) for k, v in per.items()} for m, per in out.items()}


def summary(values: np.ndarray) -> dict[str, float]:
    estimate, lower, upper, realized = values.T
    return {"median": float(np.median(np.abs(estimate - realized))), "bias": float(np.mean(estimate - realized)),
            "covered": float(np.mean((lower <= realized) & (realized <= upper))), "width": float(np.mean(upper - lower)),
            "estimate": float(np.mean(estimate)), "realized": float(np.mean(realized)), "windows": len(values)}


def accuracy_check(results, method: str, scenario: str) -> str:
    small, large = (summary(results[(scenario, n)][method]["accuracy"]) for n in SIZES)
    ok = (small["median"] <= 0.02 and small["covered"] >= 0.9 and large["median"] <= 0.02
          and large["covered"] >= 0.9 and large["width"] <= small["width"] / 2)
    return (f"{scenario}, {method}: median |err| {small['median']:.4f} / {large['median']:.4f}, covered "
            f"{100 * small['covered']:.1f} % / {100 * large['covered']:.1f} %, width ratio "
            f"{large['width'] / small['width']:.2f} -> {'met' if ok else 'NOT met'}")


def plot(results, widths, method: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4.4))
    for scenario, marker in zip(SCENARIOS, "o^sDv"):
        v = results[(scenario, 1_000)][method]["accuracy"]
        left.errorbar(v[:, 3], v[:, 0], yerr=[v[:, 0] - v[:, 1], v[:, 2] - v[:, 0]], fmt=marker, ms=3, alpha=0.35,
                      elinewidth=0.6, label=scenario)
    left.plot([0, 1], [0, 1], color="grey", lw=0.8)
    left.set(xlim=(0.15, 0.95), ylim=(0.15, 0.95), xlabel="realized accuracy", ylabel="estimated accuracy (95 % band)",
             title=f"1 000-row windows, {method} calibration")
    left.legend(fontsize=7, loc="upper left")
    labels = list(SCENARIOS)
    x = np.arange(len(labels))
    for i, m in enumerate(est.CALIBRATION_METHODS):
        errors = [results[(s, 1_000)][m]["accuracy"] for s in labels]
        middle.bar(x + (i - 0.5) * 0.38, [np.median(np.abs(e[:, 0] - e[:, 3])) for e in errors], 0.38, label=m)
    middle.axhline(0.02, color="grey", lw=0.8)
    middle.set(xticks=x, yscale="log", ylabel="median |estimated - realized| accuracy",
               title="Error by scenario (1 000 rows)")
    middle.set_xticklabels([s.replace(", ", ",\n").replace(" (", "\n(") for s in labels], fontsize=7)
    middle.legend()
    sizes = sorted(widths)
    right.plot(sizes, [widths[n][0] for n in sizes], "o-", label="band width (accuracy)")
    right.plot(sizes, [widths[n][0] * 0 + widths[sizes[0]][0] * np.sqrt(sizes[0] / n) for n in sizes], ":",
               color="grey", label="1/sqrt(rows)")
    right.set(xscale="log", yscale="log", xlabel="window (rows)", ylabel="mean full width of the 95 % band",
              title="Unshifted: the band narrows as 1/sqrt(rows)")
    for n in sizes:
        right.annotate(f"{100 * widths[n][1]:.0f} % covered", (n, widths[n][0]), fontsize=7,
                       textcoords="offset points", xytext=(4, 4))
    right.legend()
    fig.tight_layout()
    fig.savefig(PLOT, dpi=110)
    print(f"  plot: {PLOT.relative_to(REPO_ROOT)}", flush=True)


# --- cost on a 100 k window ------------------------------------------------------------------------

def cost(quick: bool) -> list[tuple]:
    """Cycles of the shipped monitor (platt estimation) on a 100 k window, with and without estimation."""
    from benchmarks.workload import SPAN, bench_monitor, load
    from common.store import StoreSettings
    from log_processor.export.metrics import Exporter
    from log_processor.memory import settle_memory
    from log_processor.read.window_reader import WindowReads
    from log_processor.runner import MonitorRunner
    from log_processor.read.store import EventStore
    from log_processor.evaluate.evaluation import evaluate
    from log_processor.columns import PREDICTION, SCORE, TARGET

    rows = int(os.environ.get("BENCH_ESTIMATION_COST_ROWS", 10_000 if quick else COST_ROWS))
    results = []
    with TemporaryDirectory() as tmp:
        with_estimation = bench_monitor(Path(tmp))
        without = dataclasses.replace(with_estimation, estimation=None)
        end = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)
        for store in backends.chosen(("osmem", "opensearch-1")):
            print(f"-- cost: {store}, {rows:,} predictions", flush=True)
            backend = backends.start(store)
            try:
                load(backend.url, rows, end - SPAN, end, seed=7)
                runners = {}
                for name, monitor in (("with", with_estimation), ("without", without)):
                    runners[name] = MonitorRunner(monitor, EventStore(StoreSettings(url=backend.url, request_timeout=600),
                                                                      workers=2), Exporter([monitor.name]),
                                                  write_summaries=False, clock=lambda: end.timestamp() + 1,
                                                  reads=WindowReads(incremental=False))
                    reference = runners[name].reference()
                    evaluate(reference, reference.frame.head(1000), monitor)     # warm up, untimed
                settle_memory()
                cycles = {"with": [], "without": []}
                for _ in range(COST_RUNS):
                    for name, runner in runners.items():
                        t0 = time.perf_counter()
                        if runner.run_once() != "ok":
                            raise RuntimeError(f"cycle failed: {runner.state.last_error}")
                        cycles[name].append(time.perf_counter() - t0)
                    print(f"  cycle with estimation {cycles['with'][-1]:.2f} s, without {cycles['without'][-1]:.2f} s",
                          flush=True)
                frame = runners["with"].fetch_window(end.timestamp() + 1).frame
                calibration = runners["with"].reference().score_calibration
                step = []
                for _ in range(9):
                    t0 = time.perf_counter()
                    est.estimate(calibration, frame[SCORE].to_numpy(float), frame[PREDICTION].to_numpy(float),
                                 frame[TARGET].to_numpy(float), min_labelled_rows=with_estimation.min_labelled_rows,
                                 confidence=with_estimation.estimation.confidence)
                    step.append(time.perf_counter() - t0)
                labelled = int(frame[TARGET].notna().sum())
                print(f"  estimation step {median(step) * 1000:.0f} ms on {len(frame):,} rows ({labelled:,} labelled)",
                      flush=True)
                results.append((store, len(frame), labelled, cycles, step))
            finally:
                backend.close()
    return results


def main(quick: bool) -> None:
    seed = int(os.environ.get("BENCH_ESTIMATION_SEED", "20261203"))
    rng = np.random.default_rng(seed)
    world = World(load_model(MODEL_DIR))
    calibrated = calibrations()
    for method, c in calibrated.items():
        print(f"-- {method}: reference ECE raw {c.raw_calibration_error:.4f}, calibrated (out of fold) "
              f"{c.calibration_error:.4f}; reference quality "
              + ", ".join(f"{k} {v:.3f}" for k, v in c.reference_quality.items()), flush=True)
    results = {}
    started = time.perf_counter()
    for scenario in SCENARIOS:
        for n in SIZES:
            results[(scenario, n)] = run_windows(world, calibrated, scenario, n, windows_for(n, quick), rng)
            s = summary(results[(scenario, n)]["platt"]["accuracy"])
            print(f"  {scenario}, {n:,} rows: platt accuracy median |err| {s['median']:.4f}, covered "
                  f"{100 * s['covered']:.1f} %", flush=True)
    large = large_reference_calibration(world, rng)
    for n in SIZES:
        results[(f"unshifted, {LARGE_REFERENCE:,}-row reference", n)] = run_windows(
            world, {"platt": large}, "unshifted", n, windows_for(n, quick), rng)
    widths = {}
    for n in PLOT_SIZES:
        got = results.get(("unshifted", n)) or {"platt": run_windows(world, {"platt": calibrated["platt"]}, "unshifted",
                                                                      n, windows_for(n, quick), rng)["platt"]}
        s = summary(got["platt"]["accuracy"])
        widths[n] = (s["width"], s["covered"])
    print(f"  {time.perf_counter() - started:.0f} s for the windows", flush=True)

    print()
    print(f"Estimated vs realized on fresh windows (seed {seed}); 95 % bands; model {MODEL_DIR.relative_to(REPO_ROOT)}")
    print("| scenario | window | windows | calibration | accuracy: realized | estimated | median \\|err\\| | bias "
          "| covered | width | F1: realized | estimated | median \\|err\\| | covered | ROC AUC: median \\|err\\| | covered |")
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (scenario, n), per in results.items():
        for method in per:
            a, f, u = (summary(per[method][m]) for m in ("accuracy", "f1", "roc_auc"))
            print(f"| {scenario} | {n:,} | {a['windows']} | {method} | {a['realized']:.3f} | {a['estimate']:.3f} | "
                  f"{a['median']:.4f} | {a['bias']:+.4f} | {100 * a['covered']:.1f} % | {a['width']:.4f} | "
                  f"{f['realized']:.3f} | {f['estimate']:.3f} | {f['median']:.4f} | {100 * f['covered']:.1f} % | "
                  f"{u['median']:.4f} | {100 * u['covered']:.1f} % |")
    print()
    print("Targets (accuracy; 1 000 / 10 000 rows): median |err| <= 0.02, covered >= 90 %, width at 10 000 <= half")
    for method in est.CALIBRATION_METHODS:
        for scenario in list(SCENARIOS)[:3]:
            print("  " + accuracy_check(results, method, scenario))
    print("  " + accuracy_check(results, "platt", f"unshifted, {LARGE_REFERENCE:,}-row reference"))
    print("Unshifted, platt: band width (coverage) by window size: "
          + ", ".join(f"{n:,}: {w:.4f} ({100 * c:.0f} %)" for n, (w, c) in widths.items()))
    plot(results, widths, "platt")

    costs = cost(quick)
    print()
    print("Cost of the estimation on one window (shipped monitor, platt; cycles: median of "
          f"{COST_RUNS}, alternated; step: median of 9)")
    print("| store | window rows | labelled | cycle with estimation | cycle without | estimation step | step / cycle |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for store, rows, labelled, cycles, step in costs:
        with_s, without_s, step_s = median(cycles["with"]), median(cycles["without"]), median(step)
        print(f"| {store} | {rows:,} | {labelled:,} | {with_s:.2f} s | {without_s:.2f} s | {step_s * 1000:.0f} ms | "
              f"{100 * step_s / with_s:.1f} % |")
