"""File → Elasticsearch shipper: the embedded stand-in for Filebeat/Fluentd.

Tails the serving's JSON-lines event files (following rotation), bulk-indexes each event into
the daily `ml-events-YYYY.MM.DD` index of its @timestamp with `_id = event.id` and op_type
create, and saves its read offsets only after the store acknowledged a batch. So a restart
resumes where it stopped, a re-shipped event is a 409 (counted as a duplicate, not an error),
and while the store is down it retries with exponential backoff instead of dropping anything.
Lines that cannot become documents go to a dead-letter file.

    python -m demo.shipper          # follow until Ctrl-C
    python -m demo.shipper --once   # ship what is there now, then exit
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from elasticsearch import ApiError, Elasticsearch, TransportError

from common.schema import EVENTS_INDEX_PREFIX, daily_index, event_id, format_timestamp, stamp_ingested, utc_now
from common.store import StoreSettings, StoreUnavailable, connect
from common.env import SettingsError, env_number
from demo.offsets import OffsetStore
from demo.tail import Chunk, Line, RotatingFileTail

log = logging.getLogger("demo.shipper")
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class ShipperSettings:
    files: tuple[Path, ...] = (REPO_ROOT / "var/events/ml-events.jsonl",)
    state_dir: Path = REPO_ROOT / "var/shipper"
    index_prefix: str = EVENTS_INDEX_PREFIX
    batch_size: int = 2000           # lines per bulk request: 16 k events/s into OpenSearch against 12 k at 500 (docs/benchmarks.md)
    poll_interval: float = 0.5
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    log_interval: float = 10.0
    store: StoreSettings = field(default_factory=StoreSettings)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "ShipperSettings":
        env = os.environ if env is None else env
        files = tuple(Path(p.strip()) for p in env.get("SHIPPER_FILES", "").split(",") if p.strip())
        settings = cls(
            files=files or cls.files,
            state_dir=Path(env["SHIPPER_STATE_DIR"]) if env.get("SHIPPER_STATE_DIR") else cls.state_dir,
            index_prefix=env.get("SHIPPER_INDEX_PREFIX") or cls.index_prefix,
            batch_size=env_number(env, "SHIPPER_BATCH_SIZE", cls.batch_size, int, 1),
            poll_interval=env_number(env, "SHIPPER_POLL_INTERVAL", cls.poll_interval, float, 0.01),
            backoff_initial=env_number(env, "SHIPPER_BACKOFF_INITIAL", cls.backoff_initial, float, 0.01),
            backoff_max=env_number(env, "SHIPPER_BACKOFF_MAX", cls.backoff_max, float, 0.01),
            log_interval=env_number(env, "SHIPPER_LOG_INTERVAL", cls.log_interval, float, 0.1),
            store=StoreSettings.from_env(env),
        )
        if settings.backoff_max < settings.backoff_initial:
            raise SettingsError("SHIPPER_BACKOFF_MAX must not be smaller than SHIPPER_BACKOFF_INITIAL")
        return settings

    @property
    def offsets_file(self) -> Path:
        return self.state_dir / "offsets.json"

    @property
    def dead_letter_file(self) -> Path:
        return self.state_dir / "dead-letters.jsonl"


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

    def snapshot(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Document:
    index: str
    id: str
    source: dict[str, Any]


@dataclass(frozen=True)
class DeadLetter:
    source: Path
    line: Line
    reason: str

    def record(self) -> str:
        return json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "file": str(self.source),
                           "offset": self.line.start, "reason": self.reason,
                           "line": self.line.data.decode("utf-8", "replace")}, ensure_ascii=False)


def to_document(data: bytes, index_prefix: str) -> Document | str:
    """The document one line becomes, or the reason it cannot become one."""
    try:
        event = json.loads(data)
    except ValueError as exc:  # includes invalid UTF-8
        return f"not valid JSON: {exc}"
    if not isinstance(event, dict):
        return f"not a JSON object but {type(event).__name__}"
    doc_id = event_id(event)
    if doc_id is None:
        return "no event.id"
    timestamp = event.get("@timestamp")
    try:
        index = daily_index(index_prefix, timestamp)
    except (TypeError, ValueError, AttributeError):
        return f"@timestamp {timestamp!r} is not an ISO-8601 time"
    return Document(index, doc_id, event)


def item_outcome(item: Mapping[str, Any]) -> tuple[str, str]:
    """("created" | "duplicate" | "retry" | "rejected", reason) for one bulk response item."""
    result = item.get("create") or next(iter(item.values()), {})
    status = int(result.get("status", 500))
    if status < 300:
        return "created", ""
    if status == 409:
        return "duplicate", ""
    error = result.get("error") or {}
    reason = f"{status} {error.get('type', '')}: {error.get('reason', '')}" if isinstance(error, dict) else f"{status} {error}"
    if status == 429 or status >= 500:
        return "retry", reason
    return "rejected", reason


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
            if not pending:
                break
            attempt += 1
            delay = min(self.settings.backoff_max, self.settings.backoff_initial * 2 ** (attempt - 1))
            self.stats.retries += 1
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
        operations: list[Any] = []
        now = format_timestamp(utc_now())
        for doc in documents:
            operations.append({"create": {"_index": doc.index, "_id": doc.id}})
            operations.append(stamp_ingested(doc.source, now))
        response = self._client.bulk(operations=operations)
        items = response["items"]
        if len(items) != len(documents):
            raise ApiError(f"bulk answered {len(items)} items for {len(documents)} documents",
                           meta=response.meta, body=response.body)
        return items

    def _drop_client(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            finally:
                self._client = None

    def _write_dead_letters(self, dead: list[DeadLetter]) -> None:
        path = self.settings.dead_letter_file
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as handle:
            handle.writelines(d.record() + "\n" for d in dead)
            handle.flush()
            os.fsync(handle.fileno())
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.shipper", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--once", action="store_true", help="ship what is complete now, then exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = ShipperSettings.from_env()
    except SettingsError as exc:
        print(f"python -m demo.shipper: {exc}", file=sys.stderr)
        return 2
    shipper = Shipper(settings)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    if args.once:
        shipper.drain(stop)
        shipper.close()
    else:
        shipper.run(stop)
    s = shipper.stats
    log.info("stopped: shipped=%d duplicates=%d dead_lettered=%d retries=%d lag_bytes=%d",
             s.shipped, s.duplicates, s.dead_lettered, s.retries, s.lag_bytes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
