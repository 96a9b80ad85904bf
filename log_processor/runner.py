"""One monitor's cycle: read its window → evaluate it against the reference → export the evaluation
(gauges, summary document, report pages). schedule.py decides when; processor.py wires the runners.

Evaluations never run on a request. The latest state of each monitor (outcome, timestamps, the
report) lives in a `MonitorState` that the web app reads under the runner's lock. A failing store
is counted, waited out with exponential backoff, and the last verdict stays exported (with its
age visible in mlmon_last_success_timestamp_seconds and /healthz) until the store answers again.
"""
from __future__ import annotations

import logging
import threading
import time
import traceback
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from common.schema import MONITORING_INDEX_PREFIX, daily_index
from log_processor.evaluate.evaluation import Evaluation, evaluate
from log_processor.evaluate.quality import with_predicted_shares
from log_processor.evaluate.reference import Reference, ReferenceUnusable, load_reference
from log_processor.evaluate.root_cause import rank_causes
from log_processor.evaluate.segments import evaluate_segments
from log_processor.export.evidently_snapshot import snapshot_of
from log_processor.export.evidently_workspace import SnapshotWriter
from log_processor.export.metrics import Exporter
from log_processor.export.reports import Reports
from log_processor.export.summary import segment_fields, summary_document
from log_processor.monitors import Monitor, blind_after_default
from log_processor.read.delivery import Delivery, delivery
from log_processor.read.held_window import HeldWindow
from log_processor.read.store import EventStore, StoreError
from log_processor.read.window import Window, sample
from log_processor.read.window_reader import WindowReader, WindowReads

log = logging.getLogger("log_processor")


class PhaseClock:
    """Seconds per phase of a cycle, for the summary document: where a slow cycle went (the window's
    read and assembly, Evidently, the export) without a profiler."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.laps[phase] = round(now - self._last, 4)
        self._last = now


class SharedCycle:
    """The windows of the monitors due together, read once, when the first of them asks (its cycle's
    duration includes the read); a failed read fails each of them the same way."""

    def __init__(self, reader: WindowReader, monitors: list[Monitor], now: float):
        self.reader, self.monitors, self.now = reader, monitors, now
        self._read: dict[str, Window] | Exception | None = None

    def window(self, monitor: Monitor) -> Window:
        if self._read is None:
            try:
                self._read = self.reader.windows(self.monitors, self.now)
            except Exception as exc:
                self._read = exc
        if isinstance(self._read, Exception):
            raise self._read
        return self._read[monitor.name]


@dataclass
class MonitorState:
    name: str
    status: str = "starting"                # ok | insufficient_data | no_data | error | starting
    last_success: float | None = None       # unix time
    last_evaluation: float | None = None
    last_error: str | None = None
    consecutive_errors: int = 0
    summary: dict[str, Any] = field(default_factory=dict)   # what /report.json shows
    reports: Reports | None = None                           # what /report shows (export/reports.py)


class MonitorRunner:
    def __init__(self, monitor: Monitor, store: EventStore, exporter: Exporter, *, backoff_max: float = 60.0,
                 write_summaries: bool = True, clock: Callable[[], float] = time.time,
                 reads: WindowReads = WindowReads(), reader: WindowReader | None = None,
                 blind_after: float | None = None, snapshots: SnapshotWriter | None = None):
        """`reader`: shared with the other monitors over the same index (Processor), or this one's own.
        `blind_after`: the processor-wide LOGPROC_BLIND_AFTER; the monitor's own `blind_after` wins.
        `snapshots`: the Evidently UI's writer, offered a snapshot when one is due (never waited for)."""
        self.monitor = monitor
        self.reader = reader or WindowReader(store, monitor.index, reads)
        self.store = store
        self.exporter = exporter
        self.backoff_max = backoff_max
        self.write_summaries = write_summaries
        self.clock = clock
        self.lock = threading.Lock()
        self.state = MonitorState(monitor.name)
        self._reference: Reference | None = None
        self.blind_after = monitor.blind_after_seconds or blind_after or blind_after_default(monitor)
        self._newest: float | None = None      # newest prediction ever seen: outlives the window's eviction
        self.snapshots = snapshots

    # --- the cycle -------------------------------------------------------------------------------
    @property
    def held(self) -> HeldWindow | None:
        """This monitor's window between cycles (read/held_window.py), None until read or after an error."""
        return self.reader.held.get(self.monitor.name)

    def run_once(self, cycle: SharedCycle | None = None) -> str:
        """One evaluation cycle, its window from `cycle` (or a read of its own); returns its outcome
        (ok, insufficient_data, no_data, error). Never raises."""
        cycle = cycle or SharedCycle(self.reader, [self.monitor], self.clock())
        t0 = time.perf_counter()
        try:
            outcome, summary, evaluation = self._cycle(cycle)
            error = None
        except (StoreError, ReferenceUnusable) as exc:
            outcome, summary, evaluation, error = "error", None, None, str(exc)
            if isinstance(exc, StoreError):
                self.exporter.store_error(self.monitor.name, exc.operation)
                self.reader.forget(self.monitor.name)   # the store may have lost or gained anything: read it whole
        except Exception as exc:   # a bug or a bad window must not kill the thread
            outcome, summary, evaluation, error = "error", None, None, f"{type(exc).__name__}: {exc}"
            self.reader.forget(self.monitor.name)
            log.error("monitor %s: evaluation failed\n%s", self.monitor.name, traceback.format_exc())
        duration = time.perf_counter() - t0
        finished = self.clock()
        self.exporter.cycle(self.monitor.name, outcome, duration, finished)
        if summary is not None:
            summary["duration_seconds"] = round(duration, 3)
            self._write_summary(summary, finished)
        with self.lock:
            s = self.state
            s.status, s.last_evaluation = outcome, finished
            if outcome == "error":
                s.last_error, s.consecutive_errors = error, s.consecutive_errors + 1
                log.warning("monitor %s: %s (attempt %d)", self.monitor.name, error, s.consecutive_errors)
            elif outcome == "no_data":      # not a success: last_success stays, and without a new verdict the
                s.last_error, s.consecutive_errors = None, 0        # summary and the report stay too
                if evaluation is not None:
                    s.summary, s.reports = summary or {}, Reports(evaluation.snapshots)
            else:
                s.last_success, s.last_error, s.consecutive_errors = finished, None, 0
                s.summary = summary or {}
                s.reports = Reports(evaluation.snapshots) if evaluation else None
        return outcome

    def reference(self) -> Reference:
        if self._reference is None:
            self._reference = load_reference(self.monitor, self.store)
            self.exporter.reference(self.monitor, self._reference)
            log.info("monitor %s: reference %s (%d rows, sha256 %s)", self.monitor.name,
                     self._reference.version, self._reference.rows, self._reference.sha256[:12])
        return self._reference

    def _cycle(self, cycle: SharedCycle) -> tuple[str, dict[str, Any], Evaluation | None]:
        m, now = self.monitor, cycle.now
        reference = self.reference()
        clock = PhaseClock()
        window = cycle.window(m)
        clock.lap("window")
        self.exporter.rejected_documents(m.name, window.rejected)
        blind = self._blind(window, now)
        evaluation = segments = None
        if window.rows >= m.min_rows and window.sample_rows >= m.min_rows:     # equal but for a sampled read
            current = sample(window.frame, m.max_rows)
            evaluation = evaluate(reference, current, m)
            predicted = window.predicted_shares(m.classes)
            if predicted is not None and evaluation.class_share:
                evaluation = replace(evaluation, class_share=with_predicted_shares(evaluation.class_share, predicted))
        clock.lap("evaluate")
        if evaluation is not None and m.segments is not None:     # monitors.yaml `segments:`
            segments = evaluate_segments(reference, current, m)
            clock.lap("segments")
        causes = rank_causes(evaluation, segments, reference.importance)
        if evaluation is not None or not blind:     # blind and too few rows: the last verdict stays exported
            self.exporter.window(m, window, reference.rows, evaluation)
            self.exporter.segments(m, segments, causes)
        outcome = "no_data" if blind else "ok" if evaluation else "insufficient_data"
        summary = summary_document(m, reference, window, evaluation, outcome, now)
        summary.update(segment_fields(segments, causes, reference.importance))
        if self.snapshots is not None and self.snapshots.due(m.name, now):
            self.snapshots.offer(m.name, snapshot_of(m, self.exporter.latest(m.name)), now,
                                 {"reference": reference.version, "model_version": str(reference.model_version)})
        clock.lap("export")
        summary["phase_seconds"] = clock.laps
        return outcome, summary, evaluation

    def _blind(self, window: Window, now: float) -> bool:
        """Export what the window says about delivery; True when the newest stored prediction is older than
        blind_after (docs/alerts.md#eventsnotarriving): the cycle is `no_data`, not a success. What the
        window still holds is evaluated as usual (late labels still count); once it holds too few rows for
        a verdict, the last verdict's series stay as they were instead of being cleared: nobody observed a
        change. A monitor that never saw a prediction is not blind: it has no verdict to keep."""
        seen = delivery(window, self.reader.stored.pop(self.monitor.name, 0))
        if seen.newest is not None:
            self._newest = max(self._newest or seen.newest, seen.newest)
        seen = Delivery(self._newest, seen.lag, seen.stored)
        blind = self._newest is not None and now - self._newest > self.blind_after
        self.exporter.delivery(self.monitor.name, seen, self.blind_after, blind)
        return blind

    def fetch_window(self, now: float) -> Window:
        """The window ending now, read for this monitor alone (window_reader.py)."""
        return self.reader.windows([self.monitor], now)[self.monitor.name]

    def _write_summary(self, summary: dict[str, Any], at: float) -> None:
        if not self.write_summaries:
            return
        index = daily_index(MONITORING_INDEX_PREFIX, summary["@timestamp"])
        try:
            self.store.write_summary(index, f"{self.monitor.name}-{int(at * 1000)}", summary)
        except StoreError as exc:
            self.exporter.store_error(self.monitor.name, exc.operation)
            log.warning("monitor %s: summary not written: %s", self.monitor.name, exc)

    # --- the thread ------------------------------------------------------------------------------
    def next_delay(self) -> float:
        """The interval, or after errors an exponential backoff capped at backoff_max."""
        interval = self.monitor.interval_seconds
        errors = self.state.consecutive_errors
        if not errors:
            return interval
        return min(max(interval, self.backoff_max), interval * 2 ** min(errors - 1, 16))

    def snapshot(self) -> MonitorState:
        with self.lock:
            return MonitorState(**self.state.__dict__)


