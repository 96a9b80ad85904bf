"""A monitor's events kept between cycles, so that a cycle reads only what reached the store since.

Pure: chunks in, a Window out; window_reader.py does the reading. The held events are every parsed
prediction, feedback and rejected document with @timestamp from the span's start on (no upper
bound: an event stamped ahead of the processor's clock enters the window when its time comes).
`window.last` is applied when the window is assembled, not by evicting: keeping the span is what
lets a re-sent prediction be recognised as a duplicate of one older than the latest N.

The checkpoint is the latest `event.ingested` absorbed (the store's clock, or the embedded
shipper's). The next read asks for `event.ingested >= checkpoint - overlap`: events ingested just
before the last read but not yet searchable then (refresh) are read now, and what the overlap reads
twice is dropped by event id. A full read replaces everything: on start, after a store error, every
`full_read_every` seconds, and while some held document has no `event.ingested` (an incremental read
could never see such a document, so it cannot be trusted to stand in for a full one).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from log_processor.monitors import Monitor
from log_processor.columns import EID, TIMESTAMP
from log_processor.read.parse import Chunk
from log_processor.read.sampled import SamplePlan
from log_processor.read.window import Window, assemble, assemble_sampled, in_order, time_ordered


@dataclass
class HeldWindow:
    events: Chunk
    checkpoint: float | None       # latest event.ingested held, epoch seconds
    full_read_at: float            # processor clock of the last full read
    rate: float = 1.0              # the sampling rate the held events were read at (read/sampled.py)

    @classmethod
    def from_full_read(cls, chunk: Chunk, now: float) -> "HeldWindow":
        return cls(_in_order(chunk), chunk.ingested, now)

    def can_read_incrementally(self, now: float, full_read_every: float) -> bool:
        return (self.checkpoint is not None and not self.events.unstamped
                and now - self.full_read_at < full_read_every)

    def read_since(self, overlap: float) -> float:
        assert self.checkpoint is not None
        return self.checkpoint - overlap

    def absorb(self, chunk: Chunk, monitor: Monitor) -> int:
        """Append what is new in `chunk` (documents already held are dropped); returns how many were new."""
        held = self.events
        fresh = [_unseen(new, old) for new, old in ((chunk.predictions, held.predictions),
                                                    (chunk.feedback, held.feedback),
                                                    (chunk.rejects, held.rejects))]
        added = sum(len(f) for f in fresh)
        if added:
            predictions, feedback, rejects = fresh
            self.events = Chunk(_merged(held.predictions, predictions), _merged(held.feedback, feedback),
                                pd.concat([held.rejects, rejects], ignore_index=True) if len(rejects) else held.rejects,
                                held.ingested, held.unstamped, held.unkeyed)
        if chunk.ingested is not None:
            self.checkpoint = max(self.checkpoint or chunk.ingested, chunk.ingested)
        return added

    def evict(self, start: float) -> None:
        """Forget what is older than the span's start (a rejected document without a time: after one cycle)."""
        e = self.events
        def young(frame: pd.DataFrame) -> pd.DataFrame:     # frames in time order: a slice off the front
            ts = frame[TIMESTAMP].to_numpy()
            if time_ordered(ts):
                first = np.searchsorted(ts, start, "left")
                return frame.iloc[first:] if first else frame
            return frame[ts >= start].reset_index(drop=True)
        self.events = Chunk(young(e.predictions), young(e.feedback), young(e.rejects), e.ingested, e.unstamped,
                            e.unkeyed)

    def window(self, monitor: Monitor, start: float, end: float) -> Window:
        return assemble(self.events, monitor, start, end)

    def sampled_window(self, monitor: Monitor, plan: SamplePlan, end: float) -> Window:
        assert plan.figures is not None and plan.rate == self.rate
        return assemble_sampled(self.events, monitor, plan.start, end, plan.rate, plan.figures)


def _in_order(chunk: Chunk) -> Chunk:
    """Predictions and feedback by (timestamp, event id), as window.assemble reads them fastest."""
    return Chunk(in_order(chunk.predictions), in_order(chunk.feedback), chunk.rejects, chunk.ingested, chunk.unstamped,
                 chunk.unkeyed)


def _merged(held: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """`held` (in order) and `new` rows as one frame in order. New rows are mostly later than the held
    ones, so only the held rows from the new rows' earliest time on are sorted again with them: a
    cycle's cost follows what it read, not the window (a full sort of a 1 M-row window took 0.8 s)."""
    if not len(new):
        return held
    new = in_order(new)
    if not len(held):
        return new
    cut = int(np.searchsorted(held[TIMESTAMP].to_numpy(), new[TIMESTAMP].iloc[0], "left"))
    tail = in_order(pd.concat([held.iloc[cut:], new], ignore_index=True))
    return pd.concat([held.iloc[:cut], tail], ignore_index=True) if cut else tail


def _unseen(new: pd.DataFrame, held: pd.DataFrame) -> pd.DataFrame:
    new = new.drop_duplicates(EID)
    return new[~new[EID].isin(held[EID])] if len(held) and len(new) else new
