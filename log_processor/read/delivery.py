"""What a monitor's window says about the pipeline that filled it: the newest stored prediction, the
ingest lag, and how many predictions reached the store since the last cycle (docs/alerts.md#eventsnotarriving).

Pure: a window (and the reader's count) in, a `Delivery` out. The ingest lag is `event.ingested` −
`@timestamp` of the window's predictions, computed from the rows the cycle holds anyway: osmem-server
runs no script in an aggregation (its answer: `script in aggregation is not supported`), so a
percentiles aggregation over the difference would work on OpenSearch and Elasticsearch only, and
cost them a second pass over the window the read has already brought.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from log_processor.columns import INGESTED, TIMESTAMP
from log_processor.read.window import Window

LAG_QUANTILES = ("0.5", "0.95")


@dataclass(frozen=True)
class Delivery:
    newest: float | None                     # newest prediction's @timestamp in the window, epoch seconds
    lag: dict[str, float] = field(default_factory=dict)   # quantile -> seconds; empty without event.ingested
    stored: int = 0                          # predictions new to the monitor since its last read

    def age(self, now: float) -> float | None:
        return None if self.newest is None else now - self.newest


def delivery(window: Window, stored: int) -> Delivery:
    frame = window.frame
    if not len(frame):
        return Delivery(None, {}, stored)
    times = frame[TIMESTAMP].to_numpy(dtype=float)
    newest = float(np.nanmax(times)) if np.isfinite(times).any() else None
    lag: dict[str, float] = {}
    if INGESTED in frame:
        delays = frame[INGESTED].to_numpy(dtype=float) - times
        delays = delays[np.isfinite(delays)]
        if len(delays):
            lag = {q: float(np.quantile(delays, float(q))) for q in LAG_QUANTILES}
    return Delivery(newest, lag, stored)
