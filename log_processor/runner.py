"""Every interval, per monitor: fetch → join → Evidently → export → summary document.

One thread per index: the monitors over one index that are due together share one read of it
(window_reader.py), then each is evaluated in turn.

Evaluations never run on a request. The latest state of each monitor (outcome, timestamps, the
report) lives in a `MonitorState` that the web app reads under the runner's lock. A failing store
is counted, waited out with exponential backoff, and the last verdict stays exported (with its
age visible in mlmon_last_success_timestamp_seconds and /healthz) until the store answers again.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import gc
import logging
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from common.schema import MONITORING_INDEX_PREFIX, daily_index, format_timestamp
from log_processor.evaluate import Evaluation, Reference, evaluate
from log_processor.exporter import Exporter
from log_processor.monitors import BINARY, Monitor, load_monitors
from log_processor.settings import ProcessorSettings
from log_processor.reference import ReferenceError, load_reference
from log_processor.reports import Reports
from log_processor.store import EventStore, StoreError
from log_processor.held_window import HeldWindow
from log_processor.validate import PREDICTION
from log_processor.window import Window, sample
from log_processor.window_reader import WindowReader, WindowReads

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
    status: str = "starting"                # ok | insufficient_data | error | starting
    last_success: float | None = None       # unix time
    last_evaluation: float | None = None
    last_error: str | None = None
    consecutive_errors: int = 0
    summary: dict[str, Any] = field(default_factory=dict)   # what /report.json shows
    reports: Reports | None = None                           # what /report shows (reports.py)


class MonitorRunner:
    def __init__(self, monitor: Monitor, store: EventStore, exporter: Exporter, *, backoff_max: float = 60.0,
                 write_summaries: bool = True, clock: Callable[[], float] = time.time,
                 reads: WindowReads = WindowReads(), reader: WindowReader | None = None):
        """`reader`: shared with the other monitors over the same index (Processor), or this one's own."""
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

    # --- the cycle -------------------------------------------------------------------------------
    @property
    def held(self) -> HeldWindow | None:
        """This monitor's window between cycles (held_window.py), None until read or after an error."""
        return self.reader.held.get(self.monitor.name)

    def run_once(self, cycle: SharedCycle | None = None) -> str:
        """One evaluation cycle, its window from `cycle` (or a read of its own); returns its outcome
        (ok, insufficient_data, error). Never raises."""
        cycle = cycle or SharedCycle(self.reader, [self.monitor], self.clock())
        t0 = time.perf_counter()
        try:
            outcome, summary, evaluation = self._cycle(cycle)
            error = None
        except (StoreError, ReferenceError) as exc:
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
            else:
                s.last_success, s.last_error, s.consecutive_errors = finished, None, 0
                s.summary = summary or {}
                s.reports = evaluation.reports if evaluation else None
        return outcome

    def reference(self) -> Reference:
        if self._reference is None:
            self._reference = load_reference(self.monitor, self.store)
            self.exporter.reference(self.monitor.name, self._reference,
                                    self.monitor.estimation.alert_margin if self.monitor.estimation else None,
                                    task=self.monitor.task, alert_ratio=self.monitor.quality_alert_ratio)
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
        evaluation = None
        if window.rows >= m.min_rows:
            current = sample(window.frame, m.max_rows)
            evaluation = evaluate(reference, current, m)
        clock.lap("evaluate")
        self.exporter.window(m.name, window, reference.rows, evaluation)
        outcome = "ok" if evaluation else "insufficient_data"
        summary = summary_document(m, reference, window, evaluation, outcome, now)
        clock.lap("export")
        summary["phase_seconds"] = clock.laps
        return outcome, summary, evaluation

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


class Schedule:
    """When each monitor of a thread is next due (monotonic seconds).

    A monitor is due `next_delay()` after its last cycle ended, and joins a cycle that starts up to
    `early` of its interval before it is due: one read instead of two a moment apart. Monitors with
    the same interval stay due together; one whose interval is a multiple of another's falls in step
    with it (as long as a cycle takes less than `early` of the shorter interval)."""

    def __init__(self, intervals: list[float], early: float = 0.25):
        self.intervals, self.early = intervals, early
        self.due_at = [0.0] * len(intervals)

    def due(self, now: float) -> list[int]:
        if min(self.due_at) > now:
            return []
        return [i for i, at in enumerate(self.due_at) if at <= now + self.early * self.intervals[i]]

    def ran(self, indexes: list[int], ended: float, delays: list[float]) -> None:
        for i, delay in zip(indexes, delays):
            self.due_at[i] = ended + delay

    def next_at(self) -> float:
        return min(self.due_at)


class IndexThread:
    """The runners of the monitors over one index, in one thread: each cycle, those due (Schedule)
    share one read."""

    def __init__(self, runners: list[MonitorRunner], reader: WindowReader):
        self.runners, self.reader = runners, reader
        self._thread: threading.Thread | None = None

    def run_due(self, due: list[MonitorRunner]) -> None:
        cycle = SharedCycle(self.reader, [r.monitor for r in due], due[0].clock())
        for runner in due:
            runner.run_once(cycle)

    def start(self, stop: threading.Event) -> None:
        def loop() -> None:
            schedule = Schedule([r.monitor.interval_seconds for r in self.runners])
            settled = False
            while not stop.is_set():
                due = schedule.due(time.monotonic())
                if due:
                    self.run_due([self.runners[i] for i in due])
                    schedule.ran(due, time.monotonic(), [self.runners[i].next_delay() for i in due])
                    if settled:
                        gc.collect()    # what the cycle left in reference cycles goes now (settle_memory)
                if not settled:
                    settle_memory()
                    settled = True
                stop.wait(max(0.001, schedule.next_at() - time.monotonic()))
        self._thread = threading.Thread(target=loop, name=f"monitors-{self.reader.index}", daemon=True)
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)


GC_YOUNG_THRESHOLD = 100_000     # allocations between young collections once settled


def settle_memory() -> None:
    """Freeze what start-up and the first cycle left alive (modules, Evidently's and plotly's
    internals, the reference): it lives as long as the process, and otherwise every full garbage
    collection walks it again, ~0.15 s that lands in whichever cycle triggers it (measured: the
    10 k window took 0.45 or 0.60 s depending on that alone).

    Then collect young objects every GC_YOUNG_THRESHOLD allocations instead of CPython's 700. A page
    of 10 000 hits decodes into ~300 000 objects, alive until parsed; with next to nothing left in
    the old generation after the freeze, CPython's rule ran a full collection over them about every
    70 000 allocations, half the cost of decoding a window (1.2 M documents: 14 s of CPU, 7 s
    without). Garbage in reference cycles (Evidently's report, pandas internals) would then wait
    longer for a full collection, so the thread runs one after each cycle: with start-up frozen it
    walks little."""
    pin_mmap_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


M_MMAP_THRESHOLD = -3   # glibc's mallopt parameter


def pin_mmap_threshold(size: int = 256 * 1024) -> bool:
    """Keep glibc serving large blocks with mmap, which go back to the system when freed.

    glibc raises its mmap threshold (up to 32 MiB) each time a large block is freed, after which a
    held window's columns (8 MB per million rows, replaced every cycle) come from the heap, whose
    free space it keeps: at a 1 M window the processor's RSS crept up ~30 MB a cycle, past 1 GiB.
    A fixed threshold stops that (measured: flat at ~475 MB between cycles). Elsewhere than glibc:
    nothing to do, False."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, size))
    except (OSError, AttributeError):
        return False


def summary_document(m: Monitor, reference: Reference, window: Window, ev: Evaluation | None,
                     outcome: str, now: float) -> dict[str, Any]:
    """The per-evaluation document for ml-monitoring-* (mapping in elasticsearch/), also /report.json."""
    def ts(seconds: float) -> str:
        return format_timestamp(datetime.fromtimestamp(seconds, timezone.utc))

    doc: dict[str, Any] = {
        "@timestamp": ts(now),
        "monitor": m.name,
        "task": m.task,
        "model": {"name": reference.model_name, "version": reference.model_version},
        "reference": {"version": reference.version, "sha256": reference.sha256},
        "window": {"start": ts(window.start), "end": ts(window.end)},
        "status": outcome,
        "rows": {"current": window.rows, "reference": reference.rows, "labelled": window.labelled,
                 "evaluated": ev.evaluated_rows if ev else 0},
        "label_coverage": round(window.label_coverage, 6),
        "label_delay_seconds": window.label_delay_quantiles(),
        "rejected": dict(window.rejected),
        "missing_values_share": window.missing_share,
        "duplicated_ids": window.duplicated_ids,
        "predicted_positive_share": float((window.frame[PREDICTION] == 1).mean())
        if window.rows and m.task == BINARY else None,
    }
    if reference.quality_values is not None:
        doc["reference_quality"] = reference.quality_values.metrics
        if reference.quality_values.probabilistic:
            doc["reference_probabilistic_quality"] = reference.quality_values.probabilistic
    if ev is not None:
        doc.update({
            "dataset_drift": ev.dataset_drift,
            "drifted_features": list(ev.drifted_features),
            "drift_share": ev.drifted_share,
            "feature_drift": [{"feature": f.column, "method": f.method, "score": f.score,
                               "threshold": f.threshold, "detected": f.detected, "p_value": f.p_value}
                              for f in ev.feature_drift],
            "prediction_drift": dataclasses.asdict(ev.prediction_drift),
            "target_drift": dataclasses.asdict(ev.target_drift) if ev.target_drift is not None else None,
            "quality": ev.quality,
            "stability": dataclasses.asdict(ev.stability),
        })
        if ev.class_quality:
            doc["class_quality"] = [{"class": c, "metric": k, "value": v} for (c, k), v in ev.class_quality.items()]
        if ev.probabilistic:
            doc["probabilistic_quality"] = ev.probabilistic
        if ev.calibration_curve:
            doc["calibration_curve"] = [{"bin": b, "predicted": p, "observed": o}
                                        for b, (p, o) in ev.calibration_curve.items()]
        if ev.estimation is not None:
            doc["estimated_quality"] = {m: {"value": e.value, "lower": e.lower, "upper": e.upper}
                                        for m, e in ev.estimation.estimates.items()}
            doc["estimation_error"] = ev.estimation.error
    return doc


class Processor:
    """Every monitor's runner plus the shared store client and exporter: what one process runs."""

    def __init__(self, settings: ProcessorSettings, monitors: tuple[Monitor, ...] | None = None):
        pin_mmap_threshold()
        self.settings = settings
        self.monitors = monitors if monitors is not None else load_monitors(
            settings.monitors_file, interval_override=settings.interval)
        self.store = EventStore(settings.store, page_size=settings.page_size, workers=settings.fetch_workers)
        self.exporter = Exporter(m.name for m in self.monitors)
        reads = WindowReads(settings.incremental, settings.read_overlap, settings.full_read_every)
        readers = {m.index: WindowReader(self.store, m.index, reads) for m in self.monitors}
        self.runners = {m.name: MonitorRunner(m, self.store, self.exporter, backoff_max=settings.backoff_max,
                                              write_summaries=settings.write_summaries, reader=readers[m.index])
                        for m in self.monitors}
        self.threads = [IndexThread([r for r in self.runners.values() if r.monitor.index == index], reader)
                        for index, reader in readers.items()]
        self.started_at = time.time()
        self._stop = threading.Event()

    def start(self) -> None:
        self.started_at = time.time()
        for thread in self.threads:
            thread.start(self._stop)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        for thread in self.threads:
            thread.join(timeout)
        self.store.close()

    def stale_after(self, monitor: Monitor) -> float:
        return self.settings.stale_after or max(3 * monitor.interval_seconds, 10.0)
