"""The current window from parsed pages: bounds, de-duplication, the label join and the sampling cap.

Pure: frames in, frames out.

Sampling: when the window holds more rows than `max_rows`, a uniform random sample of `max_rows`
rows (without replacement) is handed to Evidently: the rows of lowest rank, a hash of the join key
keyed by the monitor's sample_seed (validate.sample_ranks). The sample is thus a function of the
window's rows alone, the same whether the window was read whole or built up cycle by cycle, and
stable from one cycle to the next (a request stays in or out). Every row has the same chance of being kept,
so the sample's distribution of each column is an unbiased estimate of the window's; the drift
statistics (Wasserstein, PSI, K-S) estimate the same population quantity, only with a wider
confidence interval (it shrinks like 1/sqrt(n): 200 000 rows estimate a share to about ±0.2
percentage points at 95 %). Row counts, label coverage and label delay are computed on the whole
window read; `mlmon_window_rows{kind="evaluated"}` says how many rows Evidently saw.

A sampled read (read/sampled.py) hands over a window that is itself a uniform sample of rate
`sampling_rate` (by the sampling key, so a request's prediction and feedback are in or out
together). Its whole-window figures then come from the engine where it counted them exactly
(`figures`: the prediction documents, the missing values per feature), and are estimated from the
sample otherwise: label coverage (the sample's), labelled rows (coverage × predictions), duplicated
join keys (the sample's / rate: a key's duplicates share its sampling key), label delay quantiles
(the sample's). docs/log-processor.md#sampled-reads.
"""
from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from log_processor.monitors import Monitor
from log_processor.columns import EID, KEY_HASH, RANK, REASON, TARGET, TIMESTAMP
from log_processor.read.parse import Chunk
from log_processor.read.sampled import EngineFigures

DELAY = "label_delay_seconds"


@dataclass
class Window:
    start: float                  # epoch seconds, inclusive
    end: float                    # epoch seconds, inclusive
    frame: pd.DataFrame           # one row per complete prediction; TARGET is NaN when unlabelled
    rejected: Counter
    missing_share: dict[str, float] = field(default_factory=dict)   # feature -> share, before skipping
    duplicated_ids: int = 0       # predictions whose join key an earlier prediction of the window had
    sampling_rate: float = 1.0    # the share of the window's requests `frame` holds (read/sampled.py)
    figures: EngineFigures | None = None    # the engine's counts over the whole window, for a sampled one

    @property
    def sampled(self) -> bool:
        return self.figures is not None

    @property
    def rows(self) -> int:
        """The window's predictions: the frame's rows, or for a sampled window the engine's count of
        prediction documents (duplicates and malformed ones included)."""
        return self.figures.predictions if self.figures is not None else len(self.frame)

    @property
    def sample_rows(self) -> int:
        return len(self.frame)

    @cached_property
    def sample_labelled(self) -> int:
        """Counted once: the export and the summary ask several times, and over a 1 M-row window of
        class names (object dtype) each count took ~30 ms."""
        return int(self.frame[TARGET].notna().sum()) if len(self.frame) else 0

    @property
    def labelled(self) -> int:
        """Labelled predictions; for a sampled window the sample's coverage times the predictions (an estimate)."""
        if self.figures is None:
            return self.sample_labelled
        return round(self.label_coverage * self.rows)

    @property
    def label_coverage(self) -> float:
        return self.sample_labelled / len(self.frame) if len(self.frame) else 0.0

    def predicted_shares(self, classes: tuple[str, ...]) -> dict[str, float] | None:
        """Each class's share of the window's predictions, as the engine counted them (a sampled read
        of a classifier); None otherwise (the sample's shares are then the window's)."""
        return self.figures.predicted_shares(classes) if self.figures is not None else None

    def label_delay_quantiles(self) -> dict[str, float]:
        delays = self.frame[DELAY].dropna() if len(self.frame) else pd.Series(dtype=float)
        if delays.empty:
            return {}
        return {"0.5": float(delays.quantile(0.5)), "0.95": float(delays.quantile(0.95))}


def in_order(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows by (timestamp, event id): an order that never depends on the order rows came in.

    Frames held between cycles are kept in this order, so the usual case is a check (a frame
    already in order) or one stable sort of a held run and a newer run (linear in numpy's timsort);
    only a late event tied on the millisecond with a held one, ahead of it by id, needs the full
    two-key sort."""
    ts, eid = frame[TIMESTAMP].to_numpy(), frame[EID].to_numpy()
    if _ordered(ts, eid):
        return frame
    order = np.argsort(ts, kind="stable")
    if not _ordered(ts[order], eid[order]):
        order = np.lexsort((eid, ts))
    return frame.take(order).reset_index(drop=True)


def _ordered(ts: np.ndarray, eid: np.ndarray) -> bool:
    step, same = ts[1:] > ts[:-1], ts[1:] == ts[:-1]
    return bool(np.all(step | (same & (eid[1:] >= eid[:-1]))))


def time_ordered(ts: np.ndarray) -> bool:
    """Non-empty and non-decreasing (no NaN): a frame that can be cut by time with searchsorted."""
    return bool(len(ts)) and bool(np.all(ts[1:] >= ts[:-1]))


def _first_per_key(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Earliest row per join key; the rest are duplicates (re-sent events carry a new event id).
    Ties on the timestamp go by event id, so the row kept never depends on the order rows came in."""
    ordered = in_order(frame)
    dup = pd.Series(ordered[KEY_HASH].to_numpy()).duplicated(keep="first").to_numpy()
    return (ordered[~dup] if dup.any() else ordered), int(dup.sum())


def _between(frame: pd.DataFrame, start: float, end: float) -> pd.DataFrame:
    """Rows in [start, end]; a slice, not a copy, for a frame in time order."""
    ts = frame[TIMESTAMP].to_numpy()
    if time_ordered(ts):
        return frame.iloc[np.searchsorted(ts, start, "left"):np.searchsorted(ts, end, "right")]
    return frame[(ts >= start) & (ts <= end)]


def assemble_sampled(events: Chunk, monitor: Monitor, start: float, end: float, rate: float,
                     figures: EngineFigures) -> Window:
    """A sampled window (read/sampled.py): `start` is already the N-th latest prediction's time for
    `last: N` (the engine found it), so the sample is not cut to N rows; figures as Window says."""
    window = assemble(events, dataclasses.replace(monitor, window_last=None), start, end)
    window.sampling_rate, window.figures = rate, figures
    window.missing_share = figures.missing_share()
    window.duplicated_ids = round(window.duplicated_ids / rate)
    return window


def assemble(events: Chunk, monitor: Monitor, start: float, end: float, *, labels_until: float | None = None) -> Window:
    """Predictions in [start, end] (the latest `window.last` of them), joined with the feedback of the
    same range, or up to `labels_until` (a reference range waits for its late labels). Rejected
    documents of the range are counted (one without a readable @timestamp always)."""
    rejects = events.rejects
    rejected = Counter(rejects[REASON][rejects[TIMESTAMP].isna() | rejects[TIMESTAMP].between(start, end)])
    preds, dup_preds = _first_per_key(_between(events.predictions, start, end))
    feedback, dup_feedback = _first_per_key(_between(events.feedback, start, labels_until or end))
    if monitor.window_last is not None and len(preds) >= monitor.window_last:
        preds = preds.iloc[len(preds) - monitor.window_last:]
        start = max(start, float(preds[TIMESTAMP].iloc[0]))    # a full latest-N window starts there
    if dup_preds + dup_feedback:
        rejected["duplicate"] += dup_preds + dup_feedback
    features = list(monitor.feature_names)
    missing_share = {name: float(preds[name].isna().mean()) for name in features} if len(preds) else {}
    incomplete = preds[features].isna().any(axis=1)
    if incomplete.any():
        rejected["missing_field"] += int(incomplete.sum())
        preds = preds[~incomplete]
    joined = preds.reset_index(drop=True)
    at = pd.Index(feedback[KEY_HASH].to_numpy()).get_indexer(joined[KEY_HASH].to_numpy())   # -1: no feedback
    found, at = at >= 0, np.maximum(at, 0)
    fb_ts, fb_target = (feedback[TIMESTAMP].to_numpy(), feedback[TARGET].to_numpy()) if len(feedback) else ([np.nan], [0])
    delay = np.where(found, np.take(fb_ts, at) - joined[TIMESTAMP].to_numpy(), np.nan)
    labelled = found & ~(delay > monitor.label_horizon_seconds)
    joined[TARGET] = np.where(labelled, np.take(fb_target, at), np.nan)
    joined[DELAY] = np.where(labelled, np.clip(delay, 0.0, None), np.nan)
    return Window(start=start, end=end, frame=joined, rejected=rejected, missing_share=missing_share,
                  duplicated_ids=dup_preds)


def sample(frame: pd.DataFrame, max_rows: int) -> pd.DataFrame:
    """The `max_rows` rows of lowest sampling rank when the frame is larger (see the module docstring)."""
    if len(frame) <= max_rows:
        return frame
    keep = np.sort(np.argpartition(frame[RANK].to_numpy(), max_rows - 1)[:max_rows])
    return frame.iloc[keep].reset_index(drop=True)
