"""False-alarm rate and detection power of the drift verdict against window size, on fresh seeds.

Three ways of deciding drift per feature, side by side:
- `fixed 0.1`: normed Wasserstein >= 0.1 (the shipped monitor before calibration; also Evidently's
  default choice for numerical columns when the reference has more than 1 000 rows, as ours does);
- `K-S 0.05`: the Kolmogorov-Smirnov p-value < 0.05 (Evidently's default for references of at most
  1 000 rows);
- `calibrated`: normed Wasserstein >= the threshold calibrated on the reference for this window size
  at the shipped alpha (log_processor/evaluate/drift_thresholds.py), Bonferroni over the three features.

The calibration promises its false-alarm rate over draws of the reference as well as of the window
(the bootstrap estimates that null): one reference's own rate varies around it, the more so the
smaller the reference, and a single reference measures that one draw. So every figure is pooled
over several fresh references (REFERENCES per reference size, each from seeds of its own), each
calibrated and then tested on an equal share of the windows.

Unshifted windows are drawn from a pool of rows that serving's generator made with seeds the
references never saw, a distinct seed per 4 000 rows (the synthetic module simulates 4 000 requests
per seed and resamples beyond that, which would make a large pool a bootstrap of 4 000 rows); at
100 000 rows the windows overlap in the 400 000-row pool. "any feature" is the
share of windows in which at least one feature is flagged (the family-wise rate that alpha bounds);
"dataset" is the shipped dataset verdict (at least half of the features). Power: one feature
(conv_rate) shifted by k reference standard deviations; "named" is the share of windows flagging
conv_rate, "others" the share flagging each other feature. The statistic is computed with scipy as
Evidently computes it (tests/test_drift_calibration.py checks the two agree), which makes thousands
of windows affordable. 95 % Wilson intervals in brackets. Writes docs/drift_calibration.png.
"""
from __future__ import annotations

import math
import os
import time

import numpy as np
from scipy import stats

from benchmarks import synthetic
from benchmarks.stats import percent, wilson_error_bars
from log_processor.evaluate.drift_thresholds import fit_thresholds
from log_processor.monitors import REPO_ROOT, load_monitors
from log_processor.columns import SCORE

FEATURES = ("conv_rate", "acc_rate", "avg_daily_trips")
SIZES = (100, 300, 1_000, 3_000, 10_000, 30_000, 100_000)
POWER_CASES = ((1_000, 0.5), (10_000, 0.25), (100_000, 0.1))
DECIDERS = ("fixed 0.1", "K-S 0.05", "calibrated")
REFERENCES = {20_000: 20, 2_000: 20}    # fresh references per reference size (20 000: the shipped); --quick: a quarter
SHIPPED_REFERENCE = 20_000
PLOT = REPO_ROOT / "docs" / "drift_calibration.png"


def windows_for(n: int, quick: bool) -> int:
    full = 600 if n <= 1_000 else 300 if n <= 10_000 else 150 if n <= 30_000 else 100
    return max(50, full // 5) if quick else full


class Deciders:
    """The three ways of deciding, for one reference."""

    def __init__(self, reference, alpha: float):
        self.sigma = float(reference["conv_rate"].std())
        self.ref = {name: np.sort(reference[name].to_numpy(dtype=float)) for name in FEATURES}
        self.norm = {name: max(float(np.std(values)), 0.001) for name, values in self.ref.items()}
        started = time.perf_counter()
        self.calibration = fit_thresholds(reference, {name: "numerical" for name in FEATURES}, SCORE, alpha)
        self.calibration_seconds = time.perf_counter() - started

    def flags(self, window) -> dict[str, set[str]]:
        """Per decider, the features it flags in this window."""
        thresholds, _ = self.calibration.thresholds(len(window))
        out: dict[str, set[str]] = {k: set() for k in DECIDERS}
        for name in FEATURES:
            cur = window[name].to_numpy(dtype=float)
            score = stats.wasserstein_distance(self.ref[name], cur) / self.norm[name]
            if score >= 0.1:
                out["fixed 0.1"].add(name)
            if score >= thresholds[name]:
                out["calibrated"].add(name)
            if stats.ks_2samp(self.ref[name], cur).pvalue < 0.05:
                out["K-S 0.05"].add(name)
        return out


def references(rows: int, alpha: float, quick: bool) -> list[Deciders]:
    count = max(2, REFERENCES[rows] // 4) if quick else REFERENCES[rows]
    # seeds the pool (987) never uses
    return [Deciders(synthetic.fresh_rows(rows, rows + r), alpha) for r in range(count)]


def windows(references: list[Deciders], n: int, quick: bool, pool, rng):
    """(deciders, window) pairs: an equal share of the size's windows per reference."""
    per = math.ceil(windows_for(n, quick) / len(references))
    for deciders in references:
        for _ in range(per):
            yield deciders, pool.iloc[rng.choice(len(pool), n, replace=False)]


def false_alarms(refs: list[Deciders], pool, quick: bool, rng) -> list[tuple]:
    rows = []
    for n in SIZES:
        anyf = dict.fromkeys(DECIDERS, 0)
        dataset = dict(anyf)
        total = 0
        for deciders, window in windows(refs, n, quick, pool, rng):
            total += 1
            for k, found in deciders.flags(window).items():
                anyf[k] += bool(found)
                dataset[k] += len(found) / len(FEATURES) >= 0.5
        rows.append((n, total, anyf, dataset))
        print(f"  unshifted n={n:,}: " + ", ".join(f"{k} {percent(v, total)}" for k, v in anyf.items()), flush=True)
    return rows


def power(refs: list[Deciders], pool, quick: bool, rng, cases=POWER_CASES) -> list[tuple]:
    rows = []
    for n, shift in cases:
        named = dict.fromkeys(DECIDERS, 0)
        others = dict(named)
        total = 0
        for deciders, window in windows(refs, n, quick, pool, rng):
            total += 1
            window = window.copy()
            window["conv_rate"] += shift * deciders.sigma
            for k, found in deciders.flags(window).items():
                named[k] += "conv_rate" in found
                others[k] += len(found - {"conv_rate"})
        rows.append((n, shift, total, named, others))
        print(f"  {shift} sigma at n={n:,}: " + ", ".join(f"{k} {percent(v, total)}" for k, v in named.items()), flush=True)
    return rows


def plot(fa_rows, power_rows, alpha: float) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for k, style in (("fixed 0.1", "s--"), ("K-S 0.05", "^:"), ("calibrated", "o-")):
        rates = [100 * anyf[k] / total for _, total, anyf, _ in fa_rows]
        errs = wilson_error_bars((anyf[k], total) for _, total, anyf, _ in fa_rows)
        left.errorbar([r[0] for r in fa_rows], rates, yerr=errs, fmt=style, label=k, capsize=3)
    left.axhline(100 * alpha, color="grey", lw=0.8)
    left.set(xscale="log", xlabel="window (rows)", ylabel="windows with any feature flagged (%)",
             title="Unshifted traffic: false alarms")
    left.set_yscale("symlog", linthresh=1)
    left.set_ylim(0, 150)
    left.legend()
    labels = [f"{shift} σ\n{n:,} rows" for n, shift, *_ in power_rows]
    x = np.arange(len(power_rows))
    for i, k in enumerate(DECIDERS):
        right.bar(x + (i - 1) * 0.27, [100 * named[k] / total for _, _, total, named, _ in power_rows], 0.27, label=k)
    right.axhline(95, color="grey", lw=0.8)
    right.set(xticks=x, xticklabels=labels, ylabel="windows flagging the shifted feature (%)",
              title="One feature shifted: detection power", ylim=(0, 105))
    right.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(PLOT, dpi=110)
    print(f"  plot: {PLOT.relative_to(REPO_ROOT)}", flush=True)


def main(quick: bool) -> None:
    alpha = load_monitors(REPO_ROOT / "log_processor/monitors.yaml")[0].drift.alpha
    rng = np.random.default_rng(int(os.environ.get("BENCH_DRIFT_SEED", "20261124")))
    pool = synthetic.fresh_rows(400_000, 987)                      # seeds the references never saw
    results = {}
    for ref_rows in REFERENCES:
        started = time.perf_counter()
        refs = references(ref_rows, alpha, quick)
        seconds = float(np.mean([d.calibration_seconds for d in refs]))
        print(f"-- {len(refs)} references of {ref_rows:,} rows ({time.perf_counter() - started:.0f} s to make them; "
              f"calibration {seconds:.1f} s each)", flush=True)
        results[ref_rows] = (false_alarms(refs, pool, quick, rng), power(refs, pool, quick, rng), seconds, len(refs))
    for ref_rows, (fa_rows, _, seconds, count) in results.items():
        print()
        print(f"Unshifted windows over {count} references of {ref_rows:,} rows, alpha {alpha} (calibration: "
              f"{seconds:.1f} s for 3 features and the score)")
        print("| window | windows | any feature: fixed 0.1 | K-S 0.05 | calibrated | dataset verdict: fixed 0.1 | calibrated |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for n, total, anyf, dataset in fa_rows:
            print(f"| {n:,} | {total} | {percent(anyf['fixed 0.1'], total)} | {percent(anyf['K-S 0.05'], total)} | "
                  f"{percent(anyf['calibrated'], total)} | {percent(dataset['fixed 0.1'], total)} | "
                  f"{percent(dataset['calibrated'], total)} |")
    fa_rows, power_rows, _, _ = results[SHIPPED_REFERENCE]
    print()
    print("One feature (conv_rate) shifted: share of windows naming it; others: share flagging each other feature")
    print("| reference | references | shift | window | windows | named: fixed 0.1 | K-S 0.05 | calibrated | others (calibrated) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for ref_rows, (_, rows, _, count) in results.items():
        for n, shift, total, named, others in rows:
            print(f"| {ref_rows:,} | {count} | {shift} σ | {n:,} | {total} | {percent(named['fixed 0.1'], total)} | "
                  f"{percent(named['K-S 0.05'], total)} | {percent(named['calibrated'], total)} | "
                  f"{100 * others['calibrated'] / (2 * total):.1f} % |")
    plot(fa_rows, power_rows, alpha)
