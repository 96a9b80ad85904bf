"""Store I/O of the processor: read a window of events in time slices, write summary documents.

Reading: a first page over the whole window, sorted by @timestamp alone, which also brings the
total (a small window is one request); the rest of the range is cut into slices of most of a page
each, fetched by a small pool of threads; inside a slice, search_after paging over (@timestamp,
event.id). How pages are asked for depends on the store (READ_PLANS, chosen by measurement where
the store runs here): whole hits against OpenSearch and osmem-server, where `_source` filtering and
filter_path cost the store more than they save; the needed fields only against Elasticsearch.
Queries carry only the time range (and, for an incremental read, a range on event.ingested:
held_window.py): dataset and model are filtered client-side (validate.py), which is also how
unknown datasets are counted.

Each page is handed to `parse` as soon as it arrives, so memory holds parsed columns, never a
window's worth of JSON documents.
"""
from __future__ import annotations

import dataclasses
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Mapping, Sequence, TypeVar

from elasticsearch import ApiError, Elasticsearch, TransportError

from common.schema import format_timestamp
from common.store import StoreSettings, StoreUnavailable, backend_kind, connect, probe

T = TypeVar("T")
MAX_SLICES = 2000
SLICE_FILL = 0.75       # a slice's expected share of a page: most slices fit one request


@dataclasses.dataclass(frozen=True)
class ReadPlan:
    filter_source: bool     # ask for the needed `_source` fields only, with filter_path
    page_size: int          # hits per search request


# Measured per 120 000-document window, one OpenSearch 3.8 node (docs/benchmarks.md):
# whole hits 1.83 s / filtered 2.00 s at 10 000 a page, 2.08 / 2.44 s at 5 000; filtering cost the
# store 1.7x the CPU. osmem-server: filtering 3-5x slower; 10 000 a page no faster than 5 000.
# Elasticsearch does not run here: the lighter response is its usual advice, unmeasured.
READ_PLANS = {
    "elasticsearch": ReadPlan(filter_source=True, page_size=5000),
    "opensearch": ReadPlan(filter_source=False, page_size=10000),
    "osmem": ReadPlan(filter_source=False, page_size=5000),
}


class StoreError(RuntimeError):
    """A store request failed; `operation` is one of docs/metrics.md's store operations."""

    def __init__(self, operation: str, cause: BaseException):
        super().__init__(f"{operation}: {type(cause).__name__}: {cause}")
        self.operation = operation


@dataclasses.dataclass(frozen=True)
class Slice:
    """A time range read as one search_after sequence: [start, end), [start, end] for the last, or
    (start, ∞) for what lies beyond the range (end None)."""
    start: float
    end: float | None
    inclusive_end: bool


def _iso(epoch_seconds: float) -> str:
    """To the millisecond the store sorts by, rounded (not truncated: a sort value / 1000 in
    binary floating point may sit just below its millisecond)."""
    ms = round(epoch_seconds * 1000)
    return format_timestamp(datetime.fromtimestamp(ms // 1000, timezone.utc) + timedelta(milliseconds=ms % 1000))


class EventStore:
    """One lazily connected client; reconnects after a failure (the store may come back elsewhere)."""

    def __init__(self, settings: StoreSettings, *, page_size: int | None = None, workers: int = 2):
        """`page_size`: fixed, or None for the store's READ_PLANS page size (known once connected)."""
        self.settings = settings
        self._page_size = page_size
        self.workers = max(1, workers)
        self._client: Elasticsearch | None = None
        self.plan = READ_PLANS["elasticsearch"]
        self._lock = threading.Lock()

    @property
    def page_size(self) -> int:
        return self._page_size or self.plan.page_size

    def client(self) -> Elasticsearch:
        with self._lock:
            if self._client is None:
                try:
                    info = probe(self.settings)
                    self._client = connect(self.settings, info, fast_json=True)
                    self.plan = READ_PLANS[backend_kind(info)]
                except StoreUnavailable as exc:
                    raise StoreError("connect", exc) from exc
            return self._client

    def reset(self) -> None:
        """Drop the client after an error, so the next cycle probes the store again."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    close = reset

    def _call(self, operation: str, fn: Callable[[Elasticsearch], T]) -> T:
        client = self.client()
        try:
            return fn(client)
        except (ApiError, TransportError, OSError) as exc:
            self.reset()
            raise StoreError(operation, exc) from exc

    # --- reading ---------------------------------------------------------------------------------
    def scan(self, index: str, start: float, end: float, fields: Sequence[str],
             parse: Callable[[list[dict[str, Any]]], T], *, beyond: bool = False, since: float | None = None,
             operation: str = "search") -> list[T]:
        """Every document with @timestamp in [start, end] (and, with `beyond`, after `end` too: events
        stamped ahead of the reader's clock) and, given `since`, `event.ingested` at or after it (an
        incremental read), parsed page by page.

        The first page is read over [start, end], with the total: a window of one page costs one
        request. It is sorted by @timestamp alone, which the store does cheaply however large the
        window (the event.id tie-break costs a keyword sort of every match: 15 s of the store's CPU
        at 1.2 M documents on osmem-server, against 1.4 s without it). Its documents of the last
        millisecond are dropped, since that millisecond may go on beyond the page; the rest of the
        range, that millisecond included, is cut into slices of most of a page each, read by
        `workers` threads. What lies beyond `end` is one more slice, usually empty.
        """
        ingested = {"range": {"event.ingested": {"gte": _iso(math.floor(since * 1000) / 1000)}}} if since is not None else None
        hits, total = self._page(index, _range(start, end, inclusive_end=True, also=ingested), fields,
                                 [{"@timestamp": "asc"}], None, operation, with_total=True)
        future = [Slice(end, None, inclusive_end=False)] if beyond else []
        if len(hits) < self.page_size:
            results = [parse(_sources(hits))] if hits else []
            slices = future
        else:
            edge_ms = hits[-1]["sort"][0]
            complete = [hit for hit in hits if hit["sort"][0] != edge_ms]
            results = [parse(_sources(complete))] if complete else []
            slices = self._slices(edge_ms / 1000.0, end, total - len(complete)) + future
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="scan") as pool:
            for pages in pool.map(lambda s: self._scan_slice(index, s, fields, parse, ingested, operation), slices):
                results.extend(pages)
        return results

    def _slices(self, low: float, high: float, remaining: int) -> list[Slice]:
        """[low, high] in equal slices holding about SLICE_FILL of a page each (if the documents
        were spread evenly), so that most slices are one request; at least 1 ms wide each."""
        n = min(MAX_SLICES, max(1, math.ceil(remaining / (self.page_size * SLICE_FILL))),
                max(1, int((high - low) * 1000)))
        edges = [low + (high - low) * i / n for i in range(n + 1)]
        edges[-1] = high
        return [Slice(edges[i], edges[i + 1], inclusive_end=i == n - 1) for i in range(n)]

    def _scan_slice(self, index: str, piece: Slice, fields: Sequence[str], parse: Callable[[list[dict[str, Any]]], T],
                    also: dict[str, Any] | None, operation: str) -> list[T]:
        """One slice, paged with search_after over (@timestamp, event.id): cheap on a slice's few matches."""
        query = (_range(piece.start, piece.end, inclusive_end=piece.inclusive_end, also=also) if piece.end is not None
                 else _after(piece.start, also))
        sort = [{"@timestamp": "asc"}, {"event.id": "asc"}]
        pages: list[T] = []
        after = None
        while True:
            hits, _ = self._page(index, query, fields, sort, after, operation)
            if hits:
                pages.append(parse(_sources(hits)))
            if len(hits) < self.page_size:
                return pages
            after = hits[-1]["sort"]

    def _page(self, index: str, query: dict[str, Any], fields: Sequence[str], sort: list[dict[str, str]],
              after: list[Any] | None, operation: str, *, with_total: bool = False,
              size: int | None = None) -> tuple[list[dict], int]:
        """One page of hits in `sort` order, and the total when asked."""
        def search(es: Elasticsearch) -> Any:
            extra: dict[str, Any] = {"search_after": after} if after else {}
            if self.plan.filter_source:      # known once connected, which _call does first
                extra.update(source=list(fields), filter_path=["hits.hits._source", "hits.hits.sort", "hits.total"])
            return es.search(index=index, query=query, size=size or self.page_size, track_total_hits=with_total,
                             sort=sort, ignore_unavailable=True, **extra)

        response = self._call(operation, search)
        hits = response.get("hits") or {}
        total = (hits.get("total") or {}).get("value", 0) if with_total else 0
        return hits.get("hits") or [], int(total)

    # --- writing ---------------------------------------------------------------------------------
    def write_summary(self, index: str, doc_id: str, document: Mapping[str, Any]) -> None:
        self._call("write_summary", lambda es: es.index(index=index, id=doc_id, document=dict(document)))


def _sources(hits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [hit.get("_source") or {} for hit in hits]


def _range(start: float, end: float, *, inclusive_end: bool, also: dict[str, Any] | None = None) -> dict[str, Any]:
    bounds = {"gte": _iso(start), ("lte" if inclusive_end else "lt"): _iso(end)}
    return _with({"range": {"@timestamp": bounds}}, also)


def _after(start: float, also: dict[str, Any] | None) -> dict[str, Any]:
    return _with({"range": {"@timestamp": {"gt": _iso(start)}}}, also)


def _with(query: dict[str, Any], also: dict[str, Any] | None) -> dict[str, Any]:
    return {"bool": {"filter": [query, also]}} if also else query
