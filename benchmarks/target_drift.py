"""Target drift's false-alarm rate and detection power against the number of labelled rows
(`make bench ARGS=target_drift`).

The verdict: the Jensen-Shannon distance between the window's and the reference's class shares of the
realized label, at or above the threshold the reference's calibration gives for that many labelled
rows at the monitor's alpha (log_processor/evaluate/drift_thresholds.py, as `evaluate` uses it). With two classes
the distance depends on the positive share alone, so a window is its count of positives: thousands
of windows cost nothing, and each is drawn the way a real window is (rows of a fresh pool, or for
power a binomial count of positives at the moved share, then that many rows of each class).

Pooled over many fresh references of 2 000 labelled rows, each calibrated on its own labels with the
null `fit_thresholds` computes for the target (`null_distribution` of the labels as categories): with one
reference a window's count of positives has discrete steps, and where they fall against the threshold
decides that reference's own rate, so the rate that alpha promises is over draws of the reference
too, and it takes many references to measure it. Writes docs/target_drift.png.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.spatial import distance

from benchmarks import synthetic
from benchmarks.stats import percent, wilson_error_bars
from log_processor.evaluate.drift_thresholds import null_distribution
from log_processor.monitors import REPO_ROOT, load_monitors

LABEL_SIZES = (100, 300, 1_000, 3_000, 10_000, 30_000, 100_000)
POWER_ROWS = 1_000
MOVES = (-0.10, +0.10)                  # points of the positive share
WINDOWS = 20_000                        # per size and case, spread over the references; --quick: a fifth
REFERENCES = 200                        # fresh references of REFERENCE_ROWS labelled rows; --quick: a fifth
REFERENCE_ROWS = 2_000
PLOT = REPO_ROOT / "docs" / "target_drift.png"


class TargetVerdict:
    """One reference's calibrated target-drift test: its positive share and its target null."""

    def __init__(self, reference_targets: np.ndarray):
        targets = np.asarray(reference_targets, dtype=int)
        self.share = float(targets.mean())
        self.null = null_distribution(targets, "categorical")

    def flags(self, positives: np.ndarray, n: int, alpha: float) -> np.ndarray:
        shares = positives / n
        ref = np.array([1 - self.share, self.share])
        scores = distance.jensenshannon(np.repeat(ref[None, :], len(shares), 0),
                                        np.stack([1 - shares, shares], axis=1), axis=1)
        return scores >= self.null.threshold(n, alpha)


def references(quick: bool) -> list[TargetVerdict]:
    """Fresh references from seeds the drift suite's pool (987 000..) and references never use."""
    count = REFERENCES // 5 if quick else REFERENCES
    return [TargetVerdict(synthetic.chosen_rows("normal", REFERENCE_ROWS, 600_000 + r)["target"].to_numpy())
            for r in range(count)]


def _positives_from_pool(pool_targets: np.ndarray, n: int, k: int, rng) -> np.ndarray:
    """Positives in k windows of n rows drawn without replacement from the pool (hypergeometric)."""
    good = int(pool_targets.sum())
    return rng.hypergeometric(good, len(pool_targets) - good, n, size=k)


def measure(verdicts: list[TargetVerdict], pool_targets: np.ndarray, alpha: float, quick: bool, rng):
    per = math.ceil((WINDOWS // 5 if quick else WINDOWS) / len(verdicts))
    base = float(pool_targets.mean())
    false_alarms, power = [], []
    for n in LABEL_SIZES:
        hits = sum(int(v.flags(_positives_from_pool(pool_targets, n, per, rng), n, alpha).sum()) for v in verdicts)
        false_alarms.append((n, per * len(verdicts), hits))
    for move in MOVES:
        hits = sum(int(v.flags(rng.binomial(POWER_ROWS, base + move, size=per), POWER_ROWS, alpha).sum())
                   for v in verdicts)
        power.append((move, POWER_ROWS, per * len(verdicts), hits))
    return false_alarms, power, base


def report(false_alarms, power, base: float, alpha: float, references: int) -> None:
    print()
    print(f"Target drift (binary label, positive share {100 * base:.1f} % in the fresh pool), {references} "
          f"references of {REFERENCE_ROWS:,} labelled rows, alpha {alpha}")
    print("| labelled rows | windows | unshifted: windows flagged |")
    print("|---:|---:|---:|")
    for n, total, hits in false_alarms:
        print(f"| {n:,} | {total:,} | {percent(hits, total)} |")
    print()
    print("| positive share moved | labelled rows | windows | flagged (power) |")
    print("|---:|---:|---:|---:|")
    for move, n, total, hits in power:
        print(f"| {100 * move:+.0f} points | {n:,} | {total:,} | {percent(hits, total)} |")


def plot(false_alarms, power, alpha: float) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    rates = [100 * h / t for _, t, h in false_alarms]
    errs = wilson_error_bars((h, t) for _, t, h in false_alarms)
    left.errorbar([n for n, _, _ in false_alarms], rates, yerr=errs, fmt="o-", capsize=3, label="calibrated")
    left.axhline(100 * alpha, color="grey", lw=0.8, label=f"alpha {alpha}")
    left.set(xscale="log", xlabel="labelled rows in the window", ylabel="unshifted windows flagged (%)",
             title="Target drift: false alarms", ylim=(0, 3))
    left.legend()
    right.bar([f"{100 * m:+.0f} points\n{n:,} rows" for m, n, _, _ in power], [100 * h / t for _, _, t, h in power])
    right.axhline(95, color="grey", lw=0.8)
    right.set(ylabel="windows flagged (%)", title="Positive share moved: power", ylim=(0, 105))
    fig.tight_layout()
    fig.savefig(PLOT, dpi=110)
    print(f"  plot: {PLOT.relative_to(REPO_ROOT)}", flush=True)


def main(quick: bool) -> None:
    alpha = load_monitors(REPO_ROOT / "log_processor/monitors.yaml")[0].drift.alpha
    rng = np.random.default_rng(20261203)
    pool_targets = synthetic.fresh_rows(400_000, 987)["target"].to_numpy()   # the drift suite's pool
    verdicts = references(quick)
    false_alarms, power, base = measure(verdicts, pool_targets, alpha, quick, rng)
    report(false_alarms, power, base, alpha, len(verdicts))
    plot(false_alarms, power, alpha)
