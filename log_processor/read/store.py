"""Store I/O of the processor: read a window of events page by page, write summary documents.

How pages are asked for depends on the store (READ_PLANS, chosen by measurement where the store
runs here). Every store is read as one scroll in index order: a Lucene engine (OpenSearch,
Elasticsearch) then decompresses its stored documents block by block, and osmem-server too does a
third less work than by time. Reading by time (`doc_order=False`, the plan measured first and kept
as the tests' second way) is a first page over the whole window, sorted by @timestamp alone, which
also brings the total (a small window is one request); the rest of the range cut into slices of
most of a page each, fetched by a small pool of threads; the event.id tie-break (a keyword sort)
only where one millisecond holds a whole page.
Whole hits are asked for from OpenSearch and osmem-server, where `_source` filtering and
filter_path cost the store more than they save; the needed fields only from Elasticsearch.
Queries carry only the time range (and, for an incremental read, a range on event.ingested:
held_window.py): dataset and model are filtered client-side (parse.py), which is also how
unknown datasets are counted.

Each page is decoded straight into the fields the read needs (page_decoder.py) and handed to
`parse` as soon as it arrives, so memory holds parsed columns, never a window's worth of JSON
documents.
"""
from __future__ import annotations

import dataclasses
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Mapping, TypeVar

from elasticsearch import ApiError, Elasticsearch, TransportError

from common.schema import format_timestamp
from common.store import FastJsonSerializer, StoreSettings, StoreUnavailable, backend_kind, connect, probe
from log_processor.read.page_decoder import Fields, PageDecoder, field_types

T = TypeVar("T")
MAX_SLICES = 2000
FROM_LIMIT = 10000      # the engines' default index.max_result_window: from + size up to it
SLICE_FILL = 0.75       # a slice's expected share of a page: most slices fit one request


@dataclasses.dataclass(frozen=True)
class ReadPlan:
    filter_source: bool     # ask for the needed `_source` fields only, with filter_path
    page_size: int          # hits per search request
    doc_order: bool         # one scroll in index order (_doc) instead of time slices


# Measured per 120 000-document window, one OpenSearch 3.8 node (docs/benchmarks.md):
# whole hits 1.83 s / filtered 2.00 s at 10 000 a page, 2.08 / 2.44 s at 5 000; filtering cost the
# store 1.7x the CPU. osmem-server: filtering 3-5x slower; 10 000 a page no faster than 5 000.
# Elasticsearch does not run here: the lighter response is its usual advice, unmeasured.
# Index order: a Lucene engine fetches a page of documents that lie next to each other in a segment by
# decompressing each stored-fields block once, and block by block per document otherwise; over a 1.2 M
# window on OpenSearch, one scroll in _doc order cost the engine 5.8-8.1 s of CPU against 25-30 s
# for the time slices. osmem-server, same window, full cycles alternated: 23.5-25.1 s in index order
# (its CPU 21-22 s) against 32.3-35.9 s by time (37-41 s).
READ_PLANS = {
    "elasticsearch": ReadPlan(filter_source=True, page_size=5000, doc_order=True),
    "opensearch": ReadPlan(filter_source=False, page_size=10000, doc_order=True),
    "osmem": ReadPlan(filter_source=False, page_size=5000, doc_order=True),
}
SCROLL_KEEP_ALIVE = "2m"        # between two pages of one scroll: a page's parsing takes ~0.1 s


class StoreError(RuntimeError):
    """A store request failed; `operation` is one of docs/metrics.md's store operations."""

    def __init__(self, operation: str, cause: BaseException):
        super().__init__(f"{operation}: {type(cause).__name__}: {cause}")
        self.operation = operation


@dataclasses.dataclass(frozen=True)
class Slice:
    """A time range read by one thread: [start, end), [start, end] for the last, or (start, ∞) for
    what lies beyond the range (end None)."""
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

    def __init__(self, settings: StoreSettings, *, page_size: int | None = None, workers: int = 2,
                 doc_order: bool | None = None):
        """`page_size`, `doc_order`: fixed, or None for the store's READ_PLANS (known once connected)."""
        self.settings = settings
        self._page_size = page_size
        self._doc_order = doc_order
        self.workers = max(1, workers)
        self._client: Elasticsearch | None = None
        self._serializer = FastJsonSerializer()
        self._decoders: dict[tuple[tuple[str, Any], ...], PageDecoder] = {}
        self.plan = READ_PLANS["elasticsearch"]
        self._lock = threading.Lock()

    @property
    def page_size(self) -> int:
        return self._page_size or self.plan.page_size

    @property
    def doc_order(self) -> bool:
        return self.plan.doc_order if self._doc_order is None else self._doc_order

    def client(self) -> Elasticsearch:
        with self._lock:
            if self._client is None:
                try:
                    info = probe(self.settings)
                    self._client = connect(self.settings, info, serializer=self._serializer)
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

    def _call(self, operation: str, fn: Callable[[Elasticsearch], T], fields: Fields | None = None) -> T:
        """`fn`'s request; given the `fields` a read needs, its responses are decoded into them alone
        (page_decoder.py)."""
        client = self.client()
        decode = None
        if fields is not None:
            typed = field_types(fields)
            key = tuple(typed.items())
            decode = self._decoders.get(key) or self._decoders.setdefault(key, PageDecoder(typed))
        try:
            with self._serializer.decoding(decode):
                return fn(client)
        except (ApiError, TransportError, OSError) as exc:
            self.reset()
            raise StoreError(operation, exc) from exc

    # --- reading ---------------------------------------------------------------------------------
    def scan(self, index: str, start: float, end: float, fields: Fields,
             parse: Callable[[list[Any]], T], *, beyond: bool = False, since: float | None = None,
             operation: str = "search", where: dict[str, Any] | None = None) -> list[T]:
        """Every document with @timestamp in [start, end] (and, with `beyond`, after `end` too: events
        stamped ahead of the reader's clock) and, given `since`, `event.ingested` at or after it (an
        incremental read), parsed page by page: `parse` gets a page's documents with `fields` alone,
        as structs or dicts (read them with validate.Columns). `where`: one more filter (a sampled
        read's range on the sampling key, read/sampled.py).

        In index order (`doc_order`, every store's plan): one scroll (_scroll). Otherwise by time: the
        first page is read over [start, end], with the total: a window of one page costs one
        request. It is sorted by @timestamp alone, which the store does cheaply however large the
        window (the event.id tie-break costs a keyword sort of every match: 15 s of the store's CPU
        at 1.2 M documents on osmem-server, against 1.4 s without it). Its documents of the last
        millisecond are dropped, since that millisecond may go on beyond the page; the rest of the
        range, that millisecond included, is cut into slices of most of a page each, read by
        `workers` threads the same way (_scan_slice). What lies beyond `end` is one more slice,
        usually empty.
        """
        self.client()                    # connects: how to read depends on the store
        ingested = {"range": {"event.ingested": {"gte": _iso(math.floor(since * 1000) / 1000)}}} if since is not None else None
        if where is not None:
            ingested = where if ingested is None else {"bool": {"filter": [ingested, where]}}
        if self.doc_order:
            bounds = {"gte": _iso(start)} if beyond else {"gte": _iso(start), "lte": _iso(end)}
            return self._scroll(index, _with({"range": {"@timestamp": bounds}}, ingested), fields, parse, operation)
        hits, total = self._page(index, _range(start, end, inclusive_end=True, also=ingested), fields,
                                 [{"@timestamp": "asc"}], None, operation, with_total=True)
        future = [Slice(end, None, inclusive_end=False)] if beyond else []
        if len(hits) < self.page_size:
            results = [parse(_sources(hits))] if hits else []
            slices = future
        else:
            complete, edge_ms = _before_last_millisecond(hits)
            results = [parse(_sources(complete))] if complete else []
            slices = self._slices(edge_ms / 1000.0, end, total - len(complete)) + future
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="scan") as pool:
            for pages in pool.map(lambda s: self._scan_slice(index, s, fields, parse, ingested, operation), slices):
                results.extend(pages)
        return results

    def _scroll(self, index: str, query: dict[str, Any], fields: Fields,
                parse: Callable[[list[Any]], T], operation: str) -> list[T]:
        """Every match once, in index order, from one scroll (a snapshot of the index: no tie-break
        needed); each page is parsed while the next is fetched. A window of one page is one search."""
        filtered = self._source_filter(fields, "_scroll_id")
        paging = {k: v for k, v in filtered.items() if k != "source"}     # the search's `source` holds
        results: list[T] = []
        scroll_id = None
        try:
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="parse") as pool:
                response = self._call(operation, lambda es: es.search(
                    index=index, query=query, size=self.page_size, sort=["_doc"], scroll=SCROLL_KEEP_ALIVE,
                    track_total_hits=True, ignore_unavailable=True, **filtered), fields)
                hits = response.get("hits") or {}
                total = int((hits.get("total") or {}).get("value", 0))
                seen, parsing = 0, None
                while True:
                    scroll_id = response.get("_scroll_id") or scroll_id
                    page = (response.get("hits") or {}).get("hits") or []
                    seen += len(page)
                    if parsing is not None:
                        results.append(parsing.result())
                    parsing = pool.submit(parse, _sources(page)) if page else None
                    if not page or seen >= total:
                        break
                    response = self._call(operation, lambda es: es.scroll(
                        scroll_id=scroll_id, scroll=SCROLL_KEEP_ALIVE, **paging), fields)
                if parsing is not None:
                    results.append(parsing.result())
        finally:
            if scroll_id:
                self._clear_scroll(scroll_id)
        return results

    def _clear_scroll(self, scroll_id: str) -> None:
        """Free the scroll's context now rather than when it expires; a failure here loses nothing."""
        client = self._client
        if client is not None:
            try:
                client.clear_scroll(scroll_id=scroll_id)
            except (ApiError, TransportError, OSError):
                pass

    def _source_filter(self, fields: Fields, *keep: str) -> dict[str, Any]:
        """Only the needed `_source` fields, for stores where that is cheaper (READ_PLANS)."""
        if not self.plan.filter_source:
            return {}
        return {"source": list(fields), "filter_path": ["hits.hits._source", "hits.hits.sort", "hits.total", *keep]}

    def _slices(self, low: float, high: float, remaining: int) -> list[Slice]:
        """[low, high] in equal slices holding about SLICE_FILL of a page each (if the documents
        were spread evenly), so that most slices are one request; at least 1 ms wide each."""
        n = min(MAX_SLICES, max(1, math.ceil(remaining / (self.page_size * SLICE_FILL))),
                max(1, int((high - low) * 1000)))
        edges = [low + (high - low) * i / n for i in range(n + 1)]
        edges[-1] = high
        return [Slice(edges[i], edges[i + 1], inclusive_end=i == n - 1) for i in range(n)]

    def _scan_slice(self, index: str, piece: Slice, fields: Fields, parse: Callable[[list[Any]], T],
                    also: dict[str, Any] | None, operation: str) -> list[T]:
        """One slice, sorted by @timestamp alone, a numeric sort. A full page may end inside a
        millisecond that goes on past it: that millisecond's documents are set aside and the slice goes
        on from it. Only a millisecond holding a whole page is paged over (@timestamp, event.id) with
        search_after: the keyword tie-break cost a third of OpenSearch's CPU over a 1.2 M window when
        every slice used it (docs/benchmarks.md)."""
        low, low_op = piece.start, "gte" if piece.end is not None else "gt"
        high = {("lte" if piece.inclusive_end else "lt"): _iso(piece.end)} if piece.end is not None else {}
        pages: list[T] = []
        while True:
            query = _with({"range": {"@timestamp": {low_op: _iso(low), **high}}}, also)
            hits, _ = self._page(index, query, fields, [{"@timestamp": "asc"}], None, operation)
            if len(hits) < self.page_size:
                if hits:
                    pages.append(parse(_sources(hits)))
                return pages
            complete, edge_ms = _before_last_millisecond(hits)
            if complete:
                pages.append(parse(_sources(complete)))
                low, low_op = edge_ms / 1000.0, "gte"
            else:
                pages.extend(self._scan_millisecond(index, edge_ms, fields, parse, also, operation))
                low, low_op = edge_ms / 1000.0, "gt"

    def _scan_millisecond(self, index: str, ms: int, fields: Fields, parse: Callable[[list[Any]], T],
                          also: dict[str, Any] | None, operation: str) -> list[T]:
        """Every document of one millisecond, paged with search_after over (@timestamp, event.id)."""
        query = _with({"range": {"@timestamp": {"gte": _iso(ms / 1000.0), "lte": _iso(ms / 1000.0)}}}, also)
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

    def _page(self, index: str, query: dict[str, Any], fields: Fields, sort: list[dict[str, str]],
              after: list[Any] | None, operation: str, *, with_total: bool = False,
              size: int | None = None) -> tuple[list[dict], int]:
        """One page of hits in `sort` order, and the total when asked."""
        def search(es: Elasticsearch) -> Any:
            extra: dict[str, Any] = {"search_after": after} if after else {}
            extra.update(self._source_filter(fields))    # the plan is known once connected, which _call does first
            return es.search(index=index, query=query, size=size or self.page_size, track_total_hits=with_total,
                             sort=sort, ignore_unavailable=True, **extra)

        response = self._call(operation, search, fields)
        hits = response.get("hits") or {}
        total = (hits.get("total") or {}).get("value", 0) if with_total else 0
        return hits.get("hits") or [], int(total)

    def aggregate(self, index: str, filters: list[dict[str, Any]], aggs: dict[str, Any],
                  operation: str = "count") -> tuple[int, dict[str, Any]]:
        """(matches, aggregations) of one size-0 search: what the engine counts without returning rows."""
        query = {"bool": {"filter": filters}}
        response = self._call(operation, lambda es: es.search(
            index=index, query=query, size=0, track_total_hits=True, ignore_unavailable=True,
            **({"aggs": aggs} if aggs else {})))
        total = ((response.get("hits") or {}).get("total") or {}).get("value", 0)
        return int(total), dict(response.get("aggregations") or {})

    def nth_latest(self, index: str, filters: list[dict[str, Any]], start: float, end: float, n: int,
                   operation: str = "count") -> float | None:
        """The @timestamp (epoch seconds) of the n-th latest match in [start, end], None when there
        are fewer than n. Up to FROM_LIMIT it is one hit at that offset; beyond (the engine's
        max_result_window), the latest time from which n or more match, bisected to the millisecond
        with counts (~20 of them)."""
        def within(low: float) -> list[dict[str, Any]]:
            return [*filters, {"range": {"@timestamp": {"gte": _iso(low), "lte": _iso(end)}}}]
        if n <= FROM_LIMIT:
            response = self._call(operation, lambda es: es.search(
                index=index, query={"bool": {"filter": within(start)}}, size=1, from_=n - 1,
                sort=[{"@timestamp": "desc"}], source=False, track_total_hits=False, ignore_unavailable=True))
            hits = (response.get("hits") or {}).get("hits") or []
            value = (hits[0].get("sort") or [None])[0] if hits else None
            return float(value) / 1000.0 if isinstance(value, (int, float)) else None
        if self.aggregate(index, within(start), {}, operation)[0] < n:
            return None
        low, high = round(start * 1000), round(end * 1000)      # count([low, end]) >= n; find the largest such low
        while high - low > 1:
            middle = (low + high) // 2
            if self.aggregate(index, within(middle / 1000.0), {}, operation)[0] >= n:
                low = middle
            else:
                high = middle
        return low / 1000.0

    # --- writing ---------------------------------------------------------------------------------
    def write_summary(self, index: str, doc_id: str, document: Mapping[str, Any]) -> None:
        self._call("write_summary", lambda es: es.index(index=index, id=doc_id, document=dict(document)))


def _sources(hits: list[dict[str, Any]]) -> list[Any]:
    """The documents of a page: structs of the fields read (page_decoder.py), or dicts; None where a
    hit has no `_source`."""
    return [hit.get("_source") for hit in hits]


def _before_last_millisecond(hits: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """A full page sorted by @timestamp: its hits before its last millisecond, which may go on past
    the page, and that millisecond (epoch ms, the sort value)."""
    edge_ms = hits[-1]["sort"][0]
    return [hit for hit in hits if hit["sort"][0] != edge_ms], edge_ms


def _range(start: float, end: float, *, inclusive_end: bool, also: dict[str, Any] | None = None) -> dict[str, Any]:
    bounds = {"gte": _iso(start), ("lte" if inclusive_end else "lt"): _iso(end)}
    return _with({"range": {"@timestamp": bounds}}, also)


def _with(query: dict[str, Any], also: dict[str, Any] | None) -> dict[str, Any]:
    return {"bool": {"filter": [query, also]}} if also else query
