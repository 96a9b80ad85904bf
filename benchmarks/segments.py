"""Per-segment drift and quality (log_processor/evaluate/segments.py): false alarms across segments,
power on one shifted segment, and what the segments cost a cycle.

False alarms: unshifted 10 000-row windows, split at random into 5, 20 or 50 segments of equal
expected size; "any segment alert" is the share of windows in which any segment is flagged (drift
or quality), the family-wise rate the Benjamini-Hochberg family at drift.alpha (0.01) bounds under no
change anywhere. Like the drift thresholds (benchmarks/drift_calibration.py), the promise holds over
draws of the reference as well as of the window, so the windows are spread over REFERENCES fresh
references of 20 000 rows, each with its own null distributions.

Power: one segment holds 10 % of a 10 000-row window (1 000 rows; the other segments share the rest
equally) and its conv_rate is shifted by 0.5 reference standard deviations. "found" is the share of
windows in which that segment is flagged with conv_rate among its drifted columns (what SegmentDrift
names); "first" the share in which it is also the worst segment and conv_rate ranks first in the root
cause (drift x importance, the shipped model's importance); "others" the share of windows flagging
any other segment; "whole window" the share in which the whole window's calibrated test flags
conv_rate (the dilution the segments undo).

The demo's one-city story (demo/city.py, serving.data.CITY_DRIFT) at the demo's 600-row window:
the city holds its phase's share of the rows, the monitor's shipped `segments:` (min_rows 50), and
the city's rows are those of its drivers (conv_rate + the shift; score, predicted label and outcome
of the normal world at the shifted features). "found", "first" as above; "whole conv_rate" and
"whole prediction" the shares of windows in which the whole window's calibrated tests flag conv_rate
(FeatureDrift) or the score (PredictionDrift); "dataset drift" the whole window's verdict.

Fresh data: serving's generator with seeds no reference saw (benchmarks/synthetic.py); windows are
drawn without replacement from a pool of POOL_ROWS such rows. 95 % Wilson intervals in brackets.
Writes docs/segments.png. The cost on OpenSearch: `python -m benchmarks.segments_cost`.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np
import pandas as pd

from benchmarks import synthetic
from benchmarks.stats import percent, wilson_error_bars
from log_processor.columns import SCORE, segment_column
from log_processor.evaluate.drift_thresholds import fit_thresholds
from log_processor.evaluate.reference import prepare_reference
from log_processor.evaluate.root_cause import rank_causes
from log_processor.evaluate.segments import _RefColumn, evaluate_segments
from log_processor.monitors import REPO_ROOT, SegmentsConfig, load_monitors
from serving import data

FIELD = "context.city"
SEGMENT_COUNTS = (5, 20, 50)
WINDOW = 10_000
SHARE, SHIFT, FEATURE = 0.10, 0.5, "conv_rate"
REFERENCES = 6
POOL_ROWS = 120_000
PLOT = REPO_ROOT / "docs" / "segments.png"
IMPORTANCE = {"conv_rate": 0.41, "acc_rate": 0.29, "avg_daily_trips": 0.30}   # the shipped model's (measured at import below)


def shipped():
    """The shipped driver_ranker monitor over whole windows (no `last`), without estimation."""
    m = load_monitors(REPO_ROOT / "log_processor/monitors.yaml")[0]
    return dataclasses.replace(m, window_last=None, estimation=None)


def monitor():
    return dataclasses.replace(shipped(), segments=SegmentsConfig((FIELD,), max_segments=50, min_rows=100))


def references(m, count: int, seed0: int) -> list:
    out = []
    for i in range(count):
        frame = synthetic.fresh_rows(20_000, seed0 + i)
        fitted = fit_thresholds(frame, {f.name: f.type for f in m.features}, SCORE, m.drift.alpha,
                                target=("target", "categorical"), seed=i)
        ref = prepare_reference(frame, m, model_name="m", model_version="1", version=str(i), sha256=str(i))
        out.append(dataclasses.replace(ref, drift_thresholds=fitted))
    return out


def draw(pool: pd.DataFrame, rng: np.random.Generator, segments: int, shifted: bool, sigma: float) -> pd.DataFrame:
    rows = pool.iloc[np.sort(rng.choice(len(pool), WINDOW, replace=False))].reset_index(drop=True)
    names = np.array([f"city{i:02d}" for i in range(segments)], dtype=object)
    if shifted:     # city00 holds SHARE of the rows, the others share the rest equally
        p = np.full(segments, (1 - SHARE) / (segments - 1))
        p[0] = SHARE
        rows[segment_column(FIELD)] = names[rng.choice(segments, WINDOW, p=p)]
        hit = rows[segment_column(FIELD)].to_numpy() == names[0]
        rows.loc[hit, FEATURE] += SHIFT * sigma
    else:
        rows[segment_column(FIELD)] = names[rng.integers(0, segments, WINDOW)]
    return rows


def column_flags(reference, window: pd.DataFrame, column: str, alpha: float) -> bool:
    """The whole window's calibrated test of one numerical column, a feature or the score (the
    statistic evaluate() computes, checked equal in tests/test_segments.py)."""
    null = reference.drift_thresholds.features.get(column) or reference.drift_thresholds.prediction
    score = _RefColumn.of(reference.frame[column].to_numpy(), "numerical").statistic(window[column].to_numpy())
    return score >= null.threshold(len(window), alpha)


def run(refs, pool, m, segments: int, windows: int, shifted: bool, rng) -> dict[str, int]:
    counts = {"windows": 0, "any": 0, "found": 0, "first": 0, "others": 0, "whole": 0, "seconds": 0.0}
    for i in range(windows):
        ref = refs[i % len(refs)]
        sigma = float(ref.frame[FEATURE].std())
        window = draw(pool, rng, segments, shifted, sigma).assign(target=lambda f: f["target"].astype(float))
        started = time.perf_counter()
        result = evaluate_segments(ref, window, m)
        counts["seconds"] += time.perf_counter() - started
        counts["windows"] += 1
        flagged = [s for s in result.segments if s.flagged]
        counts["any"] += bool(flagged)
        if shifted:
            target = next((s for s in flagged if s.value == "city00"), None)
            found = target is not None and FEATURE in target.drifted
            counts["found"] += found
            causes = rank_causes(None, result, IMPORTANCE)
            counts["first"] += found and result.segments[0].value == "city00" and causes[0].feature == FEATURE
            counts["others"] += any(s.value != "city00" for s in flagged)
            counts["whole"] += column_flags(ref, window, FEATURE, ref.drift_thresholds.feature_alpha())
    return counts


DEMO_WINDOW = 600


def demo_window(pool: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """One window of the demo's city phase: CITY_DRIFT's city at its share, its drivers shifted."""
    city, feature, shift = str(data.CITY_DRIFT["city"]), str(data.CITY_DRIFT["feature"]), float(data.CITY_DRIFT["shift"])
    rows = pool.iloc[np.sort(rng.choice(len(pool), DEMO_WINDOW, replace=False))].reset_index(drop=True)
    rows[segment_column(FIELD)] = data.city_phase_cities(DEMO_WINDOW, int(rng.integers(2**31)))
    hit = rows[segment_column(FIELD)].to_numpy() == city
    moved = rows.loc[hit, list(data.FEATURE_COLUMNS)].copy()
    moved[feature] += shift
    probability = data.true_completion_probability(moved, "normal")
    rows.loc[hit, feature] = moved[feature].to_numpy()
    rows.loc[hit, SCORE] = probability
    rows.loc[hit, "prediction"] = (probability >= 0.5).astype(int)
    rows.loc[hit, "target"] = (rng.random(int(hit.sum())) < probability).astype(int)
    return rows.assign(target=lambda f: f["target"].astype(float))


def demo_story(refs, pool, m, windows: int, rng) -> dict[str, int]:
    """`m`: the shipped monitor with its own `segments:` (shipped())."""
    city, feature = str(data.CITY_DRIFT["city"]), str(data.CITY_DRIFT["feature"])
    counts = {"windows": 0, "found": 0, "first": 0, "others": 0, "whole": 0, "prediction": 0, "dataset": 0}
    for i in range(windows):
        ref = refs[i % len(refs)]
        window = demo_window(pool, rng)
        result = evaluate_segments(ref, window, m)
        flagged = [s for s in result.segments if s.flagged]
        target = next((s for s in flagged if s.value == city), None)
        found = target is not None and feature in target.drifted
        causes = rank_causes(None, result, IMPORTANCE)
        whole = {name: column_flags(ref, window, name, ref.drift_thresholds.feature_alpha())
                 for name in data.FEATURE_COLUMNS}
        counts["windows"] += 1
        counts["found"] += found
        counts["first"] += found and causes[0].feature == feature
        counts["others"] += any(s.value != city for s in flagged)
        counts["whole"] += whole[feature]
        counts["prediction"] += column_flags(ref, window, SCORE, m.drift.alpha)
        counts["dataset"] += sum(whole.values()) >= m.drift.drift_share * len(whole)
    return counts


def plot(rows_fa, rows_power) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    x = np.arange(len(SEGMENT_COUNTS))
    fa = [(c["any"], c["windows"]) for c in rows_fa]
    left.bar(x, [100 * h / t for h, t in fa], yerr=wilson_error_bars(fa), capsize=4, color="tab:blue")
    left.axhline(1.0, color="tab:red", linestyle="--", label="target ≤ 1 %")
    left.set_xticks(x, [str(n) for n in SEGMENT_COUNTS])
    left.set_xlabel("segments per 10 000-row window")
    left.set_ylabel("% of unshifted windows with any segment alert")
    left.set_title("False alarms (Benjamini-Hochberg at 0.01)")
    left.legend()
    width = 0.27
    for k, (key, label, colour) in enumerate((("found", "shifted segment found", "tab:green"),
                                              ("others", "another segment flagged", "tab:orange"),
                                              ("whole", "whole window flags conv_rate", "tab:gray"))):
        pairs = [(c[key], c["windows"]) for c in rows_power]
        right.bar(x + (k - 1) * width, [100 * h / t for h, t in pairs], width, yerr=wilson_error_bars(pairs),
                  capsize=3, label=label, color=colour)
    right.axhline(95.0, color="tab:red", linestyle="--", label="target ≥ 95 %")
    right.set_xticks(x, [str(n) for n in SEGMENT_COUNTS])
    right.set_xlabel("segments per 10 000-row window")
    right.set_ylabel("% of windows")
    right.set_title("0.5 σ shift of conv_rate in one segment of 10 %")
    right.legend(fontsize=7, loc="center right")
    fig.tight_layout()
    fig.savefig(PLOT, dpi=110)
    print(f"  plot: {PLOT.relative_to(REPO_ROOT)}", flush=True)


def main(quick: bool) -> None:
    m = monitor()
    started = time.perf_counter()
    refs = references(m, 2 if quick else REFERENCES, seed0=700_000)
    pool = synthetic.fresh_rows(40_000 if quick else POOL_ROWS, 900_000)
    print(f"-- {len(refs)} references of 20,000 rows and a pool of {len(pool):,} fresh rows "
          f"({time.perf_counter() - started:.0f} s)", flush=True)
    null_windows, power_windows = (60, 40) if quick else (600, 200)
    rng = np.random.default_rng(20261207)
    rows_fa, rows_power = [], []
    for n in SEGMENT_COUNTS:
        rows_fa.append(run(refs, pool, m, n, null_windows, False, rng))
        rows_power.append(run(refs, pool, m, n, power_windows, True, rng))
        print(f"  {n} segments: any alert {percent(rows_fa[-1]['any'], rows_fa[-1]['windows'])}, "
              f"found {percent(rows_power[-1]['found'], rows_power[-1]['windows'])}", flush=True)
    print()
    print(f"Unshifted {WINDOW:,}-row windows, split at random into equal segments; {len(refs)} references; "
          f"Benjamini-Hochberg at alpha {m.drift.alpha} over segments x (3 features, prediction, target, accuracy)")
    print("| segments | windows | any segment alert | ms per window (segments only) |")
    print("|---:|---:|---:|---:|")
    for n, c in zip(SEGMENT_COUNTS, rows_fa):
        print(f"| {n} | {c['windows']} | {percent(c['any'], c['windows'])} | {1000 * c['seconds'] / c['windows']:.0f} |")
    print()
    print(f"One segment with {SHARE:.0%} of a {WINDOW:,}-row window, {FEATURE} shifted by {SHIFT} σ")
    print("| segments | windows | found (segment flagged, conv_rate named) | worst segment and conv_rate ranked first "
          "| another segment flagged | whole window flags conv_rate |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n, c in zip(SEGMENT_COUNTS, rows_power):
        t = c["windows"]
        print(f"| {n} | {t} | {percent(c['found'], t)} | {percent(c['first'], t)} | {percent(c['others'], t)} | "
              f"{percent(c['whole'], t)} |")
    demo_monitor = shipped()
    c = demo_story(refs, pool, demo_monitor, 60 if quick else 400, rng)
    t = c["windows"]
    print()
    print(f"The demo's one-city story: {data.CITY_DRIFT['city']} with {data.CITY_DRIFT['share']:.0%} of a "
          f"{DEMO_WINDOW}-row window, {data.CITY_DRIFT['feature']} +{data.CITY_DRIFT['shift']} "
          f"(the monitor's shipped segments: min_rows {demo_monitor.segments.min_rows})")
    print("| windows | city found (conv_rate named) | and conv_rate ranked first | another city flagged "
          "| whole window flags conv_rate | whole window flags the score | whole-window dataset drift |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {t} | {percent(c['found'], t)} | {percent(c['first'], t)} | {percent(c['others'], t)} | "
          f"{percent(c['whole'], t)} | {percent(c['prediction'], t)} | {percent(c['dataset'], t)} |")
    if not quick:
        plot(rows_fa, rows_power)
