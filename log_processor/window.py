"""The current window from parsed pages: bounds, de-duplication, the label join and the sampling cap.

Pure: frames in, frames out.

Sampling: when the window holds more rows than `max_rows`, a uniform random sample of `max_rows`
rows (without replacement) is handed to Evidently. Every row has the same chance of being kept,
so the sample's distribution of each column is an unbiased estimate of the window's; the drift
statistics (Wasserstein, PSI, K-S) estimate the same population quantity, only with a wider
confidence interval (it shrinks like 1/sqrt(n): 200 000 rows estimate a share to about ±0.2
percentage points at 95 %). Row counts, label coverage and label delay are always computed on the
whole window; `mlmon_window_rows{kind="evaluated"}` says how many rows Evidently saw.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from log_processor.monitors import Monitor
from log_processor.validate import KEY, TARGET, TIMESTAMP, Chunk

DELAY = "label_delay_seconds"


@dataclass
class Window:
    start: float                  # epoch seconds, inclusive
    end: float                    # epoch seconds, inclusive
    frame: pd.DataFrame           # one row per complete prediction; TARGET is NaN when unlabelled
    rejected: Counter
    missing_share: dict[str, float] = field(default_factory=dict)   # feature -> share, before skipping

    @property
    def rows(self) -> int:
        return len(self.frame)

    @property
    def labelled(self) -> int:
        return int(self.frame[TARGET].notna().sum()) if len(self.frame) else 0

    @property
    def label_coverage(self) -> float:
        return self.labelled / self.rows if self.rows else 0.0

    def label_delay_quantiles(self) -> dict[str, float]:
        delays = self.frame[DELAY].dropna() if len(self.frame) else pd.Series(dtype=float)
        if delays.empty:
            return {}
        return {"0.5": float(delays.quantile(0.5)), "0.95": float(delays.quantile(0.95))}


def _first_per_key(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Earliest row per join key; the rest are duplicates (re-sent events carry a new event id)."""
    ordered = frame.sort_values(TIMESTAMP, kind="stable")
    dup = ordered.duplicated(KEY, keep="first")
    return ordered[~dup], int(dup.sum())


def assemble(chunk: Chunk, monitor: Monitor, start: float, end: float) -> Window:
    """Predictions in [start, end] (the latest `window.last` of them), joined with their feedback."""
    rejected = Counter(chunk.rejected)
    preds = chunk.predictions
    preds = preds[(preds[TIMESTAMP] >= start) & (preds[TIMESTAMP] <= end)]
    preds, dup_preds = _first_per_key(preds)
    if monitor.window_last is not None and len(preds) >= monitor.window_last:
        preds = preds.iloc[len(preds) - monitor.window_last:]
        start = max(start, float(preds[TIMESTAMP].iloc[0]))    # a full latest-N window starts there
    feedback, dup_feedback = _first_per_key(chunk.feedback)
    if dup_preds + dup_feedback:
        rejected["duplicate"] += dup_preds + dup_feedback
    features = list(monitor.feature_names)
    missing_share = {name: float(preds[name].isna().mean()) for name in features} if len(preds) else {}
    incomplete = preds[features].isna().any(axis=1)
    if incomplete.any():
        rejected["missing_field"] += int(incomplete.sum())
        preds = preds[~incomplete]
    joined = preds.merge(feedback.rename(columns={TIMESTAMP: "_fb_ts"}), on=KEY, how="left")
    delay = joined.pop("_fb_ts") - joined[TIMESTAMP]
    late = delay > monitor.label_horizon_seconds
    joined[TARGET] = joined[TARGET].astype(float).where(~late)
    joined[DELAY] = delay.clip(lower=0.0).where(joined[TARGET].notna())
    return Window(start=start, end=end, frame=joined.reset_index(drop=True), rejected=rejected,
                  missing_share=missing_share)


def sample(frame: pd.DataFrame, max_rows: int, seed: int | None = None) -> pd.DataFrame:
    """A uniform random sample of `max_rows` rows when the frame is larger (see the module docstring)."""
    if len(frame) <= max_rows:
        return frame
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(frame), size=max_rows, replace=False))
    return frame.iloc[keep].reset_index(drop=True)
