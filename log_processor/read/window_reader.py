"""The windows of the monitors over one index: held between cycles, topped up by one read for all.

Monitors that watch the same index (several models, or one model with a short and a long window)
want the same documents: the read, the store's part of a cycle and most of its cost, is made once
for the monitors due together, over the union of their spans and fields, and every page is parsed
for each monitor (parse.py: its model, datasets, features; what they read alike, once). Each
monitor keeps its own HeldWindow (held_window.py), so a monitor's window is exactly what reading it
alone would give: what another monitor's wider span brings is evicted before the window is
assembled, and what the read brings twice is dropped by event id.

The read is incremental when every monitor in it can read incrementally (from the earliest of their
checkpoints, less the overlap), and whole otherwise: a monitor that needs a full read (first
cycle, after an error, hourly) makes one for all that are due with it.

A window larger than its monitor's `max_rows` is read as a sample (sampled.py): the engine counts it
first, a rate is picked from the ladder, and the read asks only for the documents under the largest
of the monitors' thresholds; each monitor then keeps the rows under its own. A held window keeps its
rate: when the ladder step changes, the next read is a full one (of the new sample).
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Sequence

from elasticsearch import ApiError

from log_processor.columns import SAMPLING_KEY
from log_processor.read import sampled
from log_processor.read.held_window import HeldWindow
from log_processor.monitors import Monitor
from log_processor.read.store import EventStore, StoreError, _iso
from log_processor.read.parse import Chunk, combine, parse_page_for, shared_fields
from log_processor.read.sampled import SamplePlan
from log_processor.read.window import Window

log = logging.getLogger("log_processor")


@dataclass(frozen=True)
class WindowReads:
    """How windows are read (ProcessorSettings): incrementally, with a full read every `full_read_every`
    seconds, and an `overlap` of seconds of ingest time read again for documents not yet searchable."""
    incremental: bool = True
    overlap: float = 10.0
    full_read_every: float = 3600.0
    sampled: bool = True          # a window above max_rows is read as a sample the engine selects (sampled.py)


class WindowReader:
    def __init__(self, store: EventStore, index: str, reads: WindowReads = WindowReads()):
        self.store = store
        self.index = index
        self.reads = reads
        self.held: dict[str, HeldWindow] = {}     # by monitor name
        self._no_engine_figures: set[str] = set()  # monitors whose store refused the aggregation (logged once)
        self._unkeyed_logged: set[str] = set()

    def forget(self, name: str) -> None:
        """The monitor's next window is read whole (after an error: the store may have lost or gained anything)."""
        self.held.pop(name, None)

    def windows(self, monitors: Sequence[Monitor], now: float) -> dict[str, Window]:
        """Each monitor's window ending `now`, from one read of the index."""
        assert monitors and all(m.index == self.index for m in monitors)
        reads = self.reads
        held = [self.held.get(m.name) for m in monitors]
        plans = [self.plan(m, now, h) for m, h in zip(monitors, held)]
        incremental = reads.incremental and all(h is not None and h.can_read_incrementally(now, reads.full_read_every)
                                                and h.rate == p.rate for h, p in zip(held, plans))
        since = min(h.read_since(reads.overlap) for h in held) if incremental else None   # type: ignore[union-attr]
        fields = shared_fields(monitors)
        widest = max(p.threshold for p in plans)
        where = sampled.key_filter(widest) if widest < sampled.sampling.SPACE else None
        pages = self.store.scan(self.index, min(now - m.window_seconds for m in monitors), now, fields,
                                lambda docs: parse_page_for(docs, monitors), beyond=True, since=since, where=where)
        windows = {}
        for i, (m, plan) in enumerate(zip(monitors, plans)):
            chunk = _under(combine([page[i] for page in pages], m), plan)
            for page in pages:
                page[i] = None               # let the parsed pages go: a full read's are as big as the window
            if chunk.unkeyed and plan.sampled and m.name not in self._unkeyed_logged:
                self._unkeyed_logged.add(m.name)
                log.warning("monitor %s: %d document(s) read without %s (older indices, or a store without the "
                            "ml-events-ingested pipeline): sampled by the processor with the same key "
                            "(docs/log-processor.md#sampled-reads)", m.name, chunk.unkeyed, sampled.sampling.FIELD)
            if incremental:
                kept = held[i]
                added = kept.absorb(chunk, m)      # type: ignore[union-attr]
                log.debug("monitor %s: %d new document(s) since %.3f", m.name, added, since)
            else:
                kept = self.held[m.name] = HeldWindow.from_full_read(chunk, now)
                kept.rate = plan.rate
                if chunk.unstamped and reads.incremental:
                    log.warning("monitor %s: %d document(s) without event.ingested: reading the window whole every "
                                "cycle (docs/log-processor.md#incremental-windows)", m.name, chunk.unstamped)
            del chunk
            start = now - m.window_seconds
            kept.evict(start)
            windows[m.name] = kept.window(m, start, now) if not plan.sampled else kept.sampled_window(m, plan, now)
        return windows

    def plan(self, monitor: Monitor, now: float, held: HeldWindow | None) -> SamplePlan:
        """How much of the monitor's window to read: all of it (rate 1) unless the engine counts more
        predictions than max_rows (read/sampled.py)."""
        start = now - monitor.window_seconds
        whole = SamplePlan(1.0, start, None)
        if not (self.reads.sampled and sampled.can_sample(monitor)) or monitor.name in self._no_engine_figures:
            return whole
        if monitor.window_last is not None and monitor.window_last <= monitor.max_rows:
            return whole          # never more than max_rows predictions: nothing to ask the engine
        where = sampled.predictions_filter(monitor)
        try:
            if monitor.window_last is not None:
                nth = self.store.nth_latest(self.index, where, start, now, monitor.window_last)
                start = start if nth is None else max(start, nth)
            total, aggs = self.store.aggregate(
                self.index, [*where, {"range": {"@timestamp": {"gte": _iso(start), "lte": _iso(now)}}}],
                sampled.figures_aggregations(monitor))
            figures = sampled.read_figures(monitor, total, aggs)
        except (StoreError, ValueError) as exc:
            cause = exc.__cause__ if isinstance(exc, StoreError) else exc
            refused = isinstance(cause, ValueError) or (isinstance(cause, ApiError) and 400 <= cause.meta.status < 500)
            if not refused:
                raise
            self._no_engine_figures.add(monitor.name)
            log.warning("monitor %s: the store cannot count the window (%s): reading it whole, as without sampling "
                        "(docs/log-processor.md#sampled-reads)", monitor.name, exc)
            return whole
        rate = sampled.sampling.rate_for(figures.predictions, monitor.max_rows)
        if rate >= 1.0:
            return whole
        return SamplePlan(rate, start, figures)


def _under(chunk: Chunk, plan: SamplePlan) -> Chunk:
    """The chunk's predictions, feedback and rejected documents under the plan's threshold (a read
    shared with a monitor of a larger rate, documents without a stored key); a rejected document
    without a usable key (-1) is kept: every rate reads it."""
    if not plan.sampled:
        return chunk
    limit = plan.threshold
    def keep(frame):
        keys = frame[SAMPLING_KEY].to_numpy()
        return frame if bool((keys < limit).all()) else frame[keys < limit].reset_index(drop=True)
    return dataclasses.replace(chunk, predictions=keep(chunk.predictions), feedback=keep(chunk.feedback),
                               rejects=keep(chunk.rejects))
