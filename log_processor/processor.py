"""What one processor process runs: every monitor's runner, their index threads, the shared store
client and the exporter (app.py serves it; __main__.py starts it)."""
from __future__ import annotations

import logging
import threading
import time

from log_processor.export.evidently_workspace import SnapshotCounters, SnapshotWriter, backend_for
from log_processor.export.metrics import Exporter
from log_processor.memory import pin_mmap_threshold
from log_processor.monitors import Monitor, load_monitors
from log_processor.read.store import EventStore
from log_processor.read.window_reader import WindowReader, WindowReads
from log_processor.runner import MonitorRunner
from log_processor.schedule import IndexThread
from log_processor.settings import ProcessorSettings
from log_processor.shard import Shard

log = logging.getLogger("log_processor")


def owned_monitors(monitors: tuple[Monitor, ...], shard: Shard) -> tuple[Monitor, ...]:
    """The monitors this replica evaluates; the others belong to the other replicas (shard.py)."""
    owned = tuple(m for m in monitors if shard.owns(m.name))
    if shard.count > 1:
        others = ", ".join(m.name for m in monitors if m not in owned) or "none"
        log.info("shard %s: evaluating %s; left to the other replicas: %s",
                 shard, ", ".join(m.name for m in owned) or "no monitor", others)
        if not owned:
            log.warning("shard %s owns none of the %d monitors (more replicas than monitors?)", shard, len(monitors))
    return owned


class Processor:
    """Every monitor's runner plus the shared store client and exporter: what one process runs."""

    def __init__(self, settings: ProcessorSettings, monitors: tuple[Monitor, ...] | None = None):
        pin_mmap_threshold()
        self.settings = settings
        configured = monitors if monitors is not None else load_monitors(
            settings.monitors_file, interval_override=settings.interval)
        self.monitors = owned_monitors(configured, settings.shard)
        self.store = EventStore(settings.store, page_size=settings.page_size, workers=settings.fetch_workers)
        self.exporter = Exporter((m.name for m in self.monitors), shard=settings.shard,
                                 segment_gauges=settings.segment_gauges)
        self.snapshots = None if settings.evidently_workspace is None else SnapshotWriter(
            backend_for(settings.evidently_workspace, settings.evidently_secret, settings.snapshot_timeout),
            self.monitors, SnapshotCounters(self.exporter.registry, [m.name for m in self.monitors]),
            interval=settings.snapshot_interval, retention=settings.snapshot_retention)
        reads = WindowReads(settings.incremental, settings.read_overlap, settings.full_read_every)
        readers = {m.index: WindowReader(self.store, m.index, reads) for m in self.monitors}
        self.runners = {m.name: MonitorRunner(m, self.store, self.exporter, backoff_max=settings.backoff_max,
                                              write_summaries=settings.write_summaries, reader=readers[m.index],
                                              snapshots=self.snapshots)
                        for m in self.monitors}
        self.threads = [IndexThread([r for r in self.runners.values() if r.monitor.index == index], reader)
                        for index, reader in readers.items()]
        self.started_at = time.time()
        self._stop = threading.Event()

    def start(self) -> None:
        self.started_at = time.time()
        if self.snapshots is not None:
            self.snapshots.start()
        for thread in self.threads:
            thread.start(self._stop)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        for thread in self.threads:
            thread.join(timeout)
        if self.snapshots is not None:
            self.snapshots.stop()
        self.store.close()

    def stale_after(self, monitor: Monitor) -> float:
        return self.settings.stale_after or max(3 * monitor.interval_seconds, 10.0)
