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
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from log_processor.columns import EID
from log_processor.read.held_window import HeldWindow
from log_processor.monitors import Monitor
from log_processor.read.store import EventStore
from log_processor.read.parse import combine, parse_page_for, shared_fields
from log_processor.read.window import Window

log = logging.getLogger("log_processor")


@dataclass(frozen=True)
class WindowReads:
    """How windows are read (ProcessorSettings): incrementally, with a full read every `full_read_every`
    seconds, and an `overlap` of seconds of ingest time read again for documents not yet searchable."""
    incremental: bool = True
    overlap: float = 10.0
    full_read_every: float = 3600.0


class WindowReader:
    def __init__(self, store: EventStore, index: str, reads: WindowReads = WindowReads()):
        self.store = store
        self.index = index
        self.reads = reads
        self.held: dict[str, HeldWindow] = {}     # by monitor name
        # Predictions each monitor's last read brought that it did not hold before (the delivery count,
        # read/delivery.py); the event ids held when a window was forgotten, so that the full read after
        # an error counts only what is new. A monitor's first read is the baseline: 0.
        self.stored: dict[str, int] = {}
        self._forgotten: dict[str, np.ndarray] = {}

    def forget(self, name: str) -> None:
        """The monitor's next window is read whole (after an error: the store may have lost or gained anything)."""
        held = self.held.pop(name, None)
        if held is not None:
            self._forgotten[name] = held.events.predictions[EID].to_numpy()

    def windows(self, monitors: Sequence[Monitor], now: float) -> dict[str, Window]:
        """Each monitor's window ending `now`, from one read of the index."""
        assert monitors and all(m.index == self.index for m in monitors)
        reads = self.reads
        held = [self.held.get(m.name) for m in monitors]
        incremental = reads.incremental and all(h is not None and h.can_read_incrementally(now, reads.full_read_every)
                                                for h in held)
        since = min(h.read_since(reads.overlap) for h in held) if incremental else None   # type: ignore[union-attr]
        fields = shared_fields(monitors)
        pages = self.store.scan(self.index, min(now - m.window_seconds for m in monitors), now, fields,
                                lambda docs: parse_page_for(docs, monitors), beyond=True, since=since)
        windows = {}
        for i, m in enumerate(monitors):
            chunk = combine([page[i] for page in pages], m)
            for page in pages:
                page[i] = None               # let the parsed pages go: a full read's are as big as the window
            if incremental:
                kept = held[i]
                added = kept.absorb(chunk, m)      # type: ignore[union-attr]
                self.stored[m.name] = kept.new_predictions      # type: ignore[union-attr]
                log.debug("monitor %s: %d new document(s) since %.3f", m.name, added, since)
            else:
                before = held[i].events.predictions[EID].to_numpy() if held[i] is not None \
                    else self._forgotten.pop(m.name, None)
                self.stored[m.name] = _new_ids(chunk.predictions[EID].to_numpy(), before)
                kept = self.held[m.name] = HeldWindow.from_full_read(chunk, now)
                if chunk.unstamped and reads.incremental:
                    log.warning("monitor %s: %d document(s) without event.ingested: reading the window whole every "
                                "cycle (docs/log-processor.md#incremental-windows)", m.name, chunk.unstamped)
            del chunk
            start = now - m.window_seconds
            kept.evict(start)
            windows[m.name] = kept.window(m, start, now)
        return windows


def _new_ids(read: np.ndarray, before: np.ndarray | None) -> int:
    """How many distinct event ids of `read` are not in `before`; 0 without a `before` (a first read)."""
    if before is None:
        return 0
    return int((~np.isin(np.unique(read), before)).sum())
