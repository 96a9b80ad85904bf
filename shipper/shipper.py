"""The shipper's loop: read complete lines, deliver them, and only then commit the offsets.

A restart resumes where it stopped; while the store is down each batch is retried with exponential
back-off and nothing is dropped; lines that cannot become documents go to the dead-letter file.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping

from elasticsearch import ApiError, Elasticsearch, TransportError

from common.store import StoreSettings, StoreUnavailable, connect
from shipper.bulk import Document, bulk_create, item_outcome, to_document
from shipper.dead_letters import DeadLetter, append_dead_letters
from shipper.offsets import OffsetStore
from shipper.settings import ShipperSettings
from shipper.tail import Chunk, Line, RotatingFileTail

log = logging.getLogger("shipper")


@dataclass
class ShipperStats:
    """What the runner shows; written by the shipper thread only."""
    shipped: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    retries: int = 0
    lag_bytes: int = 0
    store_available: bool = True
    last_error: str = ""
    lines_read: int = 0               # shipper/metrics.py exports these too
    events_retried: int = 0
    last_bulk_success: float = 0.0    # Unix time; 0 = none yet

    def snapshot(self) -> dict[str, Any]:
        return asdict(self)


class Shipper:
    def __init__(self, settings: ShipperSettings,
                 connect_store: Callable[[StoreSettings], Elasticsearch] = connect) -> None:
        self.settings = settings
        self.stats = ShipperStats()
        self._connect = connect_store
        self._client: Elasticsearch | None = None
        self._offsets = OffsetStore(settings.offsets_file)
        saved = self._offsets.load()
        self._tails = [RotatingFileTail(path, saved.get(str(path))) for path in settings.files]
        self._last_log = 0.0

    def run(self, stop: threading.Event) -> None:
        """Follow the files until `stop` is set."""
        log.info("shipping %s to %s (offsets in %s)", ", ".join(map(str, self.settings.files)),
                 self.settings.store.url, self.settings.offsets_file)
        while not stop.is_set():
            handled = self.ship_once(stop)
            self._log_progress()
            if handled == 0:
                stop.wait(self.settings.poll_interval)
        self.close()

    def drain(self, stop: threading.Event | None = None) -> None:
        """Ship everything that is complete now, then return."""
        stop = stop or threading.Event()
        while self.ship_once(stop) and not stop.is_set():
            pass

    def ship_once(self, stop: threading.Event | None = None) -> int:
        """One batch per followed file; the number of lines delivered (or dead-lettered)."""
        stop = stop or threading.Event()
        handled = 0
        for tail in self._tails:
            before = tail.position
            chunk = tail.read(self.settings.batch_size)
            if chunk is None:
                if tail.position != before:  # moved past a finished rotated file
                    self._save_offsets()
                continue
            self.stats.lines_read += len(chunk.lines)
            acknowledged = self._ship_chunk(chunk, stop)
            if acknowledged is None:
                break  # stopping while the store is down: nothing committed, nothing lost
            tail.commit(chunk.end)
            self._save_offsets()
            # counted only now: "shipped" means acknowledged by the store *and* past the saved offset
            self.stats.shipped += acknowledged["created"]
            self.stats.duplicates += acknowledged["duplicate"]
            handled += len(chunk.lines)
        self.stats.lag_bytes = sum(t.pending_bytes() for t in self._tails)
        return handled

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _ship_chunk(self, chunk: Chunk, stop: threading.Event) -> Counter | None:
        """Deliver one chunk; how many documents were created / duplicates, None when stopped first."""
        documents: list[tuple[Line, Document]] = []
        dead: list[DeadLetter] = []
        for line in chunk.lines:
            if not line.data.strip():
                continue
            outcome = to_document(line.data, self.settings.index_prefix)
            if isinstance(outcome, Document):
                documents.append((line, outcome))
            else:
                dead.append(DeadLetter(chunk.path, line, outcome))
        delivered = self._deliver(documents, stop)
        if delivered is None:
            return None
        rejected, acknowledged = delivered
        dead += [DeadLetter(chunk.path, line, reason) for line, reason in rejected]
        if dead:
            self._write_dead_letters(dead)
        return acknowledged

    def _deliver(self, documents: list[tuple[Line, Document]],
                 stop: threading.Event) -> tuple[list[tuple[Line, str]], Counter] | None:
        """Bulk-create until every document is acknowledged.

        Returns the documents the store rejected for good and the count of each acknowledgement
        (created, duplicate); None when `stop` was set before the store took everything.
        """
        pending = documents
        rejected: list[tuple[Line, str]] = []
        acknowledged: Counter = Counter()
        attempt = 0
        while pending:
            try:
                items = self._bulk([doc for _, doc in pending])
            except (TransportError, ApiError, StoreUnavailable) as exc:
                self._drop_client()
                problem = f"store unavailable: {exc}"
            else:
                retry, problem = [], ""
                for (line, doc), item in zip(pending, items):
                    outcome, reason = item_outcome(item)
                    if outcome in ("created", "duplicate"):
                        acknowledged[outcome] += 1
                    elif outcome == "rejected":
                        rejected.append((line, reason))
                    else:
                        retry.append((line, doc))
                        problem = problem or f"store refused documents for now: {reason}"
                pending = retry
                if not retry:   # every item answered for good: the store took the request
                    self.stats.last_bulk_success = time.time()
            if not pending:
                break
            attempt += 1
            delay = min(self.settings.backoff_max, self.settings.backoff_initial * 2 ** (attempt - 1))
            self.stats.retries += 1
            self.stats.events_retried += len(pending)
            self.stats.store_available = False
            self.stats.last_error = problem
            log.warning("%s; retry %d in %.1fs (%d document(s) waiting, offsets not advanced)",
                        problem, attempt, delay, len(pending))
            if stop.wait(delay):
                return None
        if attempt:
            log.info("store accepted the batch after %d retr%s", attempt, "y" if attempt == 1 else "ies")
        self.stats.store_available = True
        return rejected, acknowledged

    def _bulk(self, documents: list[Document]) -> list[Mapping[str, Any]]:
        if self._client is None:
            self._client = self._connect(self.settings.store)
        return bulk_create(self._client, documents)

    def _drop_client(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            finally:
                self._client = None

    def _write_dead_letters(self, dead: list[DeadLetter]) -> None:
        path = self.settings.dead_letter_file
        append_dead_letters(path, dead)
        self.stats.dead_lettered += len(dead)
        log.warning("dead-lettered %d line(s) from %s (%d in total) to %s; first: line at byte %d, %s",
                    len(dead), dead[0].source, self.stats.dead_lettered, path, dead[0].line.start,
                    dead[0].reason)

    def _save_offsets(self) -> None:
        self._offsets.save({str(t.path): t.position for t in self._tails})

    def _log_progress(self) -> None:
        now = time.monotonic()
        if now - self._last_log >= self.settings.log_interval:
            self._last_log = now
            s = self.stats
            log.info("shipped=%d duplicates=%d dead_lettered=%d retries=%d lag_bytes=%d",
                     s.shipped, s.duplicates, s.dead_lettered, s.retries, s.lag_bytes)
