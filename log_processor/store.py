"""Store I/O of the processor: read a window of events in time slices, write summary documents.

Reading: a first page over the whole window, which also brings the total (a small window is one
request); the rest of the range is cut into slices of about one page each, fetched by a small pool
of threads; inside a slice, search_after paging over (@timestamp, event.id). Against Elasticsearch only the needed `_source` fields are
asked for, with `filter_path`; against osmem-server whole hits, because there source filtering
and filter_path cost 3-5x the time of the query itself (measured: a 4 000-hit page took 0.02 s
plain and 0.06-0.1 s filtered). Queries carry only the time range: dataset and model are
filtered client-side (validate.py), which is also how unknown datasets are counted. On
osmem-server a term filter costs a pass over the whole index per query, a range filter does not.

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
from common.store import StoreSettings, StoreUnavailable, connect, is_elasticsearch, probe

T = TypeVar("T")
MAX_SLICES = 2000


class StoreError(RuntimeError):
    """A store request failed; `operation` is one of docs/metrics.md's store operations."""

    def __init__(self, operation: str, cause: BaseException):
        super().__init__(f"{operation}: {type(cause).__name__}: {cause}")
        self.operation = operation


@dataclasses.dataclass(frozen=True)
class Slice:
    """A time range read as one search_after sequence; `after` resumes behind a page already read."""
    start: float
    end: float
    inclusive_end: bool
    after: list[Any] | None


def _iso(epoch_seconds: float) -> str:
    """To the millisecond the store sorts by, rounded (not truncated: a sort value / 1000 in
    binary floating point may sit just below its millisecond)."""
    ms = round(epoch_seconds * 1000)
    return format_timestamp(datetime.fromtimestamp(ms // 1000, timezone.utc) + timedelta(milliseconds=ms % 1000))


class EventStore:
    """One lazily connected client; reconnects after a failure (the store may come back elsewhere)."""

    def __init__(self, settings: StoreSettings, *, page_size: int = 5000, workers: int = 2):
        self.settings = settings
        self.page_size = page_size
        self.workers = max(1, workers)
        self._client: Elasticsearch | None = None
        self._filter_responses = True
        self._lock = threading.Lock()

    def client(self) -> Elasticsearch:
        with self._lock:
            if self._client is None:
                try:
                    info = probe(self.settings)
                    self._client = connect(self.settings, info, fast_json=True)
                    self._filter_responses = is_elasticsearch(info)
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
             parse: Callable[[list[dict[str, Any]]], T], *, operation: str = "search",
             newest_first: bool = False, enough: Callable[[list[T]], bool] | None = None) -> list[T]:
        """Every document with @timestamp in [start, end], parsed page by page.

        The first page is read over the whole range, with the total: a window of one page costs
        one request. The rest of the range is cut into slices of about a page, read by `workers`
        threads. With `newest_first` the reading goes from the end backwards and, given `enough`,
        stops as soon as `enough(parsed pages so far)` says so (the "latest N predictions" window).
        """
        order = "desc" if newest_first else "asc"
        hits, total = self._page(index, _range(start, end, inclusive_end=True), fields, order, None,
                                 operation, with_total=True)
        results = [parse([hit.get("_source") or {} for hit in hits])] if hits else []
        if len(hits) < self.page_size or (enough and enough(results)):
            return results
        after = hits[-1]["sort"]
        slices = self._slices(start, end, after, total - len(hits), newest_first)
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="scan") as pool:
            step = self.workers if enough else len(slices)
            for at in range(0, len(slices), step):
                batch = slices[at:at + step]
                for pages in pool.map(lambda s: self._scan_slice(index, s, fields, parse, order, operation), batch):
                    results.extend(pages)
                if enough and enough(results):
                    break
        return results

    def _slices(self, start: float, end: float, after: list[Any], remaining: int,
                newest_first: bool) -> list[Slice]:
        """What the first page left, [its last timestamp, end] (or [start, it] backwards), in slices.

        The slice that touches the first page's last timestamp carries its sort values as
        search_after, so documents sharing that millisecond are neither lost nor read twice.
        """
        edge = after[0] / 1000.0
        low, high = (start, edge) if newest_first else (edge, end)
        n = min(MAX_SLICES, max(1, math.ceil(remaining / self.page_size)), max(1, int((high - low) * 1000)))
        edges = [low + (high - low) * i / n for i in range(n + 1)]
        edges[-1] = high
        slices = [Slice(edges[i], edges[i + 1], inclusive_end=i == n - 1, after=None) for i in range(n)]
        if newest_first:
            slices[-1] = dataclasses.replace(slices[-1], after=after)
            slices.reverse()
        else:
            slices[0] = dataclasses.replace(slices[0], after=after)
        return slices

    def _scan_slice(self, index: str, piece: Slice, fields: Sequence[str],
                    parse: Callable[[list[dict[str, Any]]], T], order: str, operation: str) -> list[T]:
        query = _range(piece.start, piece.end, inclusive_end=piece.inclusive_end)
        pages: list[T] = []
        after = piece.after
        while True:
            hits, _ = self._page(index, query, fields, order, after, operation)
            if hits:
                pages.append(parse([hit.get("_source") or {} for hit in hits]))
            if len(hits) < self.page_size:
                return pages
            after = hits[-1]["sort"]

    def _page(self, index: str, query: dict[str, Any], fields: Sequence[str], order: str,
              after: list[Any] | None, operation: str, *, with_total: bool = False) -> tuple[list[dict], int]:
        """One page of hits sorted by (@timestamp, event.id) in `order`, and the total when asked."""
        def search(es: Elasticsearch) -> Any:
            extra: dict[str, Any] = {"search_after": after} if after else {}
            if self._filter_responses:      # known once connected, which _call does first
                extra.update(source=list(fields), filter_path=["hits.hits._source", "hits.hits.sort", "hits.total"])
            return es.search(index=index, query=query, size=self.page_size, track_total_hits=with_total,
                             sort=[{"@timestamp": order}, {"event.id": order}], ignore_unavailable=True, **extra)

        response = self._call(operation, search)
        hits = response.get("hits") or {}
        total = (hits.get("total") or {}).get("value", 0) if with_total else 0
        return hits.get("hits") or [], int(total)

    # --- writing ---------------------------------------------------------------------------------
    def write_summary(self, index: str, doc_id: str, document: Mapping[str, Any]) -> None:
        self._call("write_summary", lambda es: es.index(index=index, id=doc_id, document=dict(document)))


def _range(start: float, end: float, *, inclusive_end: bool) -> dict[str, Any]:
    bounds = {"gte": _iso(start), ("lte" if inclusive_end else "lt"): _iso(end)}
    return {"range": {"@timestamp": bounds}}
