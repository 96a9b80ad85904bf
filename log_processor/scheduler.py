"""One thread per monitor: every interval, fetch → join → Evidently → export → summary document.

Evaluations never run on a request. The latest state of each monitor (outcome, timestamps, the
report) lives in a `MonitorState` that the web app reads under the runner's lock. A failing store
is counted, waited out with exponential backoff, and the last verdict stays exported (with its
age visible in mlmon_last_success_timestamp_seconds and /healthz) until the store answers again.
"""
from __future__ import annotations

import ctypes
import ctypes.util
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
from log_processor.monitors import Monitor, load_monitors
from log_processor.settings import ProcessorSettings
from log_processor.reference import ReferenceError, load_reference
from log_processor.store import EventStore, StoreError
from log_processor.held_window import HeldWindow
from log_processor.validate import PREDICTION, combine, parse_page, source_fields
from log_processor.window import Window, sample

log = logging.getLogger("log_processor")


@dataclass(frozen=True)
class WindowReads:
    """How windows are read (ProcessorSettings): incrementally, with a full read every `full_read_every`
    seconds, and an `overlap` of seconds of ingest time read again for documents not yet searchable."""
    incremental: bool = True
    overlap: float = 10.0
    full_read_every: float = 3600.0


@dataclass
class MonitorState:
    name: str
    status: str = "starting"                # ok | insufficient_data | error | starting
    last_success: float | None = None       # unix time
    last_evaluation: float | None = None
    last_error: str | None = None
    consecutive_errors: int = 0
    summary: dict[str, Any] = field(default_factory=dict)   # what /report.json shows
    html_drift: str | None = None
    html_quality: str | None = None


class MonitorRunner:
    def __init__(self, monitor: Monitor, store: EventStore, exporter: Exporter, *, backoff_max: float = 60.0,
                 write_summaries: bool = True, clock: Callable[[], float] = time.time,
                 reads: WindowReads = WindowReads()):
        self.monitor = monitor
        self.reads = reads
        self.held: HeldWindow | None = None      # the window between cycles (held_window.py)
        self.store = store
        self.exporter = exporter
        self.backoff_max = backoff_max
        self.write_summaries = write_summaries
        self.clock = clock
        self.lock = threading.Lock()
        self.state = MonitorState(monitor.name)
        self._reference: Reference | None = None
        self._thread: threading.Thread | None = None

    # --- the cycle -------------------------------------------------------------------------------
    def run_once(self) -> str:
        """One evaluation cycle; returns its outcome (ok, insufficient_data, error). Never raises."""
        started = self.clock()
        t0 = time.perf_counter()
        try:
            outcome, summary, evaluation = self._cycle(started)
            error = None
        except (StoreError, ReferenceError) as exc:
            outcome, summary, evaluation, error = "error", None, None, str(exc)
            if isinstance(exc, StoreError):
                self.exporter.store_error(self.monitor.name, exc.operation)
                self.held = None                   # the store may have lost or gained anything: read it whole
        except Exception as exc:   # a bug or a bad window must not kill the thread
            outcome, summary, evaluation, error = "error", None, None, f"{type(exc).__name__}: {exc}"
            self.held = None
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
                s.html_drift = evaluation.html_drift if evaluation else None
                s.html_quality = evaluation.html_quality if evaluation else None
        return outcome

    def reference(self) -> Reference:
        if self._reference is None:
            self._reference = load_reference(self.monitor, self.store)
            self.exporter.reference(self.monitor.name, self._reference)
            log.info("monitor %s: reference %s (%d rows, sha256 %s)", self.monitor.name,
                     self._reference.version, self._reference.rows, self._reference.sha256[:12])
        return self._reference

    def _cycle(self, now: float) -> tuple[str, dict[str, Any], Evaluation | None]:
        m = self.monitor
        reference = self.reference()
        window = self.fetch_window(now)
        self.exporter.rejected_documents(m.name, window.rejected)
        evaluation = None
        if window.rows >= m.min_rows:
            current = sample(window.frame, m.max_rows)
            evaluation = evaluate(reference, current, m)
        self.exporter.window(m.name, window, reference.rows, evaluation)
        outcome = "ok" if evaluation else "insufficient_data"
        return outcome, summary_document(m, reference, window, evaluation, outcome, now), evaluation

    def fetch_window(self, now: float) -> Window:
        """The window ending now: the held events topped up with what reached the store since the
        last read, or all of them read afresh (held_window.py says when)."""
        m, reads = self.monitor, self.reads
        start = now - m.window_seconds
        held = self.held
        parse = lambda docs: parse_page(docs, m)   # noqa: E731
        if reads.incremental and held is not None and held.can_read_incrementally(now, reads.full_read_every):
            chunks = self.store.scan(m.index, start, now, source_fields(m), parse, beyond=True,
                                     since=held.read_since(reads.overlap))
            held.absorb(combine(chunks, m), m)
        else:
            chunks = self.store.scan(m.index, start, now, source_fields(m), parse, beyond=True)
            held = self.held = HeldWindow.from_full_read(combine(chunks, m), now)
            if held.events.unstamped and reads.incremental:
                log.warning("monitor %s: %d document(s) without event.ingested: reading the window whole every "
                            "cycle (docs/log-processor.md#incremental-windows)", m.name, held.events.unstamped)
        del chunks
        held.evict(start)
        return held.window(m, start, now)

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

    def start(self, stop: threading.Event) -> None:
        def loop() -> None:
            settled = False
            while not stop.is_set():
                self.run_once()
                if not settled:
                    settle_memory()
                    settled = True
                stop.wait(self.next_delay())
        self._thread = threading.Thread(target=loop, name=f"monitor-{self.monitor.name}", daemon=True)
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def snapshot(self) -> MonitorState:
        with self.lock:
            return MonitorState(**self.state.__dict__)


def settle_memory() -> None:
    """Freeze what start-up and the first cycle left alive (modules, Evidently's and plotly's
    internals, the reference): it lives as long as the process, and otherwise every full garbage
    collection walks it again, ~0.15 s that lands in whichever cycle triggers it (measured: the
    10 k window took 0.45 or 0.60 s depending on that alone). Later garbage is collected as usual."""
    pin_mmap_threshold()
    gc.collect()
    gc.freeze()


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
        "predicted_positive_share": float((window.frame[PREDICTION] == 1).mean()) if window.rows else None,
    }
    if ev is not None:
        doc.update({
            "dataset_drift": ev.dataset_drift,
            "drifted_features": list(ev.drifted_features),
            "drift_share": ev.drifted_share,
            "feature_drift": [{"feature": f.column, "method": f.method, "score": f.score,
                               "threshold": f.threshold, "detected": f.detected, "p_value": f.p_value}
                              for f in ev.feature_drift],
            "prediction_drift": {"column": ev.prediction_drift.column, "method": ev.prediction_drift.method,
                                 "score": ev.prediction_drift.score, "threshold": ev.prediction_drift.threshold,
                                 "detected": ev.prediction_drift.detected, "p_value": ev.prediction_drift.p_value},
            "quality": ev.quality,
        })
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
        self.runners = {m.name: MonitorRunner(m, self.store, self.exporter, backoff_max=settings.backoff_max,
                                              write_summaries=settings.write_summaries, reads=reads)
                        for m in self.monitors}
        self.started_at = time.time()
        self._stop = threading.Event()

    def start(self) -> None:
        self.started_at = time.time()
        for runner in self.runners.values():
            runner.start(self._stop)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        for runner in self.runners.values():
            runner.join(timeout)
        self.store.close()

    def stale_after(self, monitor: Monitor) -> float:
        return self.settings.stale_after or max(3 * monitor.interval_seconds, 10.0)
