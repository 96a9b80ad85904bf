"""EventStore.scan on both backends and both ways of reading (by time slices, as for osmem-server;
one scroll in index order, as for OpenSearch): every document of the window exactly once, with a
closed or an open end, including many documents sharing the millisecond where a page ends; and an
incremental read (`since`) brings exactly what was ingested from then on."""
import json
import math
import time
import urllib.request
from datetime import datetime, timedelta, timezone

import pytest
from elasticsearch import helpers

from common.schema import format_timestamp, parse_timestamp, stamp_ingested
from common.store import StoreSettings
from log_processor.read.store import READ_PLANS, SLICE_FILL, EventStore
from log_processor.columns import Columns

START = datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc)


def load(es, stamps, first=0):
    """One document per timestamp; the ids sort differently from the timestamps on purpose."""
    ids = [f"{(7919 * i) % 100_003:06d}" for i in range(first, first + len(stamps))]
    actions = [{"_op_type": "create", "_index": f"ml-events-{ts:%Y.%m.%d}", "_id": doc_id,
                "_source": stamp_ingested({"@timestamp": format_timestamp(ts), "event": {"id": doc_id}})}
               for doc_id, ts in zip(ids, stamps)]
    ok, errors = helpers.bulk(es, actions, refresh=True, raise_on_error=False)
    assert errors == []
    return {a["_id"]: a["_source"]["@timestamp"] for a in actions}


def ids(pages):
    return [doc_id for page in pages for doc_id in page]


@pytest.fixture(params=[False, True], ids=["by-time", "in-index-order"])
def doc_order(request):
    return request.param


def read(store_url, start, end, page_size=100, doc_order=False, **kw):
    store = EventStore(StoreSettings(url=store_url), page_size=page_size, workers=2, doc_order=doc_order)
    try:
        return store.scan("ml-events-*", start.timestamp(), end.timestamp(), ["@timestamp", "event.id"],
                          lambda docs: Columns(docs)("event.id"), **kw)
    finally:
        store.close()


def record_searches(store, method="search"):
    """The keyword arguments of every call of `method` the store's client makes, in order."""
    client = store.client()
    calls = []
    original = getattr(client, method)

    def counting(**kw):
        calls.append(kw)
        return original(**kw)

    setattr(client, method, counting)
    return calls


# 1 000 documents over ten minutes, then 250 in one millisecond (more than two pages), then 300 more.
STAMPS = ([START + timedelta(milliseconds=600 * i) for i in range(1000)]
          + [START + timedelta(minutes=10, milliseconds=7)] * 250
          + [START + timedelta(minutes=11, milliseconds=13 * i) for i in range(300)])


@pytest.mark.parametrize("beyond", [False, True])
def test_every_document_once_with_or_without_what_lies_beyond(es, store_url, beyond, doc_order):
    loaded = load(es, STAMPS)
    end = START + timedelta(minutes=10, milliseconds=7)       # inside the tied millisecond; 300 documents after it
    got = ids(read(store_url, START, end, beyond=beyond, doc_order=doc_order))
    expected = {i for i, ts in loaded.items() if beyond or ts <= format_timestamp(end)}
    assert len(expected) == len(loaded) - (0 if beyond else 300)
    assert len(got) == len(set(got)) == len(expected) and set(got) == expected   # no duplicates, nothing lost


@pytest.mark.parametrize("beyond", [False, True])
def test_a_full_page_of_ties_at_the_first_page_edge(es, store_url, beyond, doc_order):
    """The first page ends inside the 250-document millisecond."""
    tied = [START] * 250
    loaded = load(es, [START - timedelta(seconds=1)] * 50 + tied + [START + timedelta(seconds=1)] * 50)
    got = ids(read(store_url, START - timedelta(minutes=1), START + timedelta(minutes=1), beyond=beyond, doc_order=doc_order))
    assert sorted(got) == sorted(loaded)


def test_the_keyword_tie_break_sorts_only_a_millisecond_that_fills_a_page(es, store_url):
    """Pages are sorted by @timestamp alone (numeric, cheap); the 250 documents of one millisecond
    (2.5 pages) are the only ones paged over (@timestamp, event.id), and read exactly once."""
    loaded = load(es, STAMPS)
    store = EventStore(StoreSettings(url=store_url), page_size=100, doc_order=False)
    calls = record_searches(store)
    got = ids(store.scan("ml-events-*", START.timestamp(), (START + timedelta(minutes=15)).timestamp(),
                         ["@timestamp", "event.id"], lambda docs: Columns(docs)("event.id")))
    store.close()
    assert len(got) == len(set(got)) == len(loaded)
    tied = [call for call in calls if len(call["sort"]) == 2]
    tied_ms = format_timestamp(START + timedelta(minutes=10, milliseconds=7))
    assert [call["query"]["range"]["@timestamp"] for call in tied] == [{"gte": tied_ms, "lte": tied_ms}] * 3
    assert [bool(call.get("search_after")) for call in tied] == [False, True, True]


def test_window_bounds_are_inclusive_and_other_documents_left_out(es, store_url, doc_order):
    loaded = load(es, STAMPS)
    start, end = START + timedelta(seconds=60), START + timedelta(minutes=10, milliseconds=7)
    expected = {i for i, ts in loaded.items() if format_timestamp(start) <= ts <= format_timestamp(end)}
    got = ids(read(store_url, start, end, doc_order=doc_order))
    assert len(got) == len(expected) and set(got) == expected
    assert len(expected) == 1000 - 100 + 250                  # 100 before start; the tied millisecond is the end


def test_a_window_that_fits_one_page_is_one_request(es, store_url, doc_order):
    load(es, STAMPS[:80])
    store = EventStore(StoreSettings(url=store_url), page_size=100, doc_order=doc_order)
    calls = record_searches(store)
    pages = store.scan("ml-events-*", START.timestamp(), (START + timedelta(hours=1)).timestamp(),
                       ["event.id"], lambda docs: len(docs))
    assert pages == [80] and len(calls) == 1
    store.close()


def test_an_incremental_read_brings_what_was_ingested_since(es, store_url, doc_order):
    """Two batches a moment apart (OpenSearch stamps event.ingested itself, osmem-server keeps the
    writer's stamp); reading since the second began gives the second whole, over several pages,
    late @timestamps included, and nothing of the first."""
    first = load(es, STAMPS[:400])
    time.sleep(1.1)
    since = time.time()
    time.sleep(0.05)
    second = load(es, [ts + timedelta(microseconds=1000) for ts in STAMPS[400:1000]] + [START] * 120, first=400)
    got = ids(read(store_url, START, START + timedelta(minutes=5), beyond=True, since=since - 0.01, doc_order=doc_order))
    assert sorted(got) == sorted(second) and not set(got) & set(first)


def test_an_empty_or_missing_index_is_an_empty_window(store_url, doc_order):
    assert read(store_url, START, START + timedelta(minutes=1), doc_order=doc_order) == []


def test_a_document_the_fast_decoder_refuses_is_still_read(es, store_url, doc_order):
    """A lone surrogate in some free-text field: msgspec refuses the page, the standard library reads it."""
    loaded = load(es, STAMPS[:150])
    body = json.dumps({"@timestamp": format_timestamp(START), "event": {"id": "odd"}, "note": "x\ud800y"})
    request = urllib.request.Request(f"{store_url}/ml-events-{START:%Y.%m.%d}/_doc/odd?refresh=true", method="PUT",
                                     data=body.encode(), headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=10).close()      # sent as the escape \ud800, as a shipper would
    got = ids(read(store_url, START, START + timedelta(minutes=20), doc_order=doc_order))
    assert sorted(got) == sorted([*loaded, "odd"])


def test_an_evenly_spread_window_is_about_one_request_per_slice(es, store_url):
    """Slices are cut to hold most of a page, so a second page per slice is the exception."""
    load(es, STAMPS[:1000])                                   # one document every 600 ms, for 10 minutes
    store = EventStore(StoreSettings(url=store_url), page_size=100, doc_order=False)
    calls = record_searches(store)
    pages = store.scan("ml-events-*", START.timestamp(), (START + timedelta(minutes=10)).timestamp(),
                       ["event.id"], lambda docs: len(docs))
    store.close()
    assert sum(pages) == 1000
    assert all(call["sort"] == [{"@timestamp": "asc"}] for call in calls)   # no keyword tie-break: no tied page
    slices = math.ceil((1000 - 99) / (100 * SLICE_FILL))
    assert len(calls) <= 1 + slices + 2                       # a couple of slices may spill into a second page


def test_in_index_order_a_window_is_one_scroll_cleared_after(es, store_url):
    """One search, then a scroll call per further page (sorted by _doc, no tie-break), and the
    scroll's context is freed at the end rather than left to expire."""
    loaded = load(es, STAMPS)
    store = EventStore(StoreSettings(url=store_url), page_size=100, doc_order=True)
    searches, scrolls, cleared = (record_searches(store, method) for method in ("search", "scroll", "clear_scroll"))
    got = ids(store.scan("ml-events-*", START.timestamp(), (START + timedelta(minutes=15)).timestamp(),
                         ["@timestamp", "event.id"], lambda docs: Columns(docs)("event.id")))
    store.close()
    assert len(got) == len(set(got)) == len(loaded)
    assert len(searches) == 1 and searches[0]["sort"] == ["_doc"] and searches[0]["scroll"]
    assert len(scrolls) == math.ceil(len(loaded) / 100) - 1
    assert len(cleared) == 1 and cleared[0]["scroll_id"] == scrolls[-1]["scroll_id"]


def test_the_elasticsearch_plan_filtered_pages_read_every_document_once(es, store_url, doc_order):
    """Elasticsearch does not run here; its plan (`_source` filtering with filter_path, which must keep
    the scroll id and the sort values) is run against the stores that do."""
    loaded = load(es, STAMPS)
    store = EventStore(StoreSettings(url=store_url), page_size=100, doc_order=doc_order)
    store.client()
    store.plan = READ_PLANS["elasticsearch"]
    searches = record_searches(store)
    pages = store.scan("ml-events-*", START.timestamp(), (START + timedelta(minutes=15)).timestamp(),
                       ["event.id"], lambda docs: docs)
    store.close()
    assert all(call["filter_path"] and call["source"] == ["event.id"] for call in searches)
    got = Columns([doc for page in pages for doc in page])("event.id")
    assert len(got) == len(set(got)) == len(loaded)


def test_the_store_stamps_event_ingested_where_it_runs_pipelines(es, store_backend):
    """OpenSearch (as Elasticsearch) runs the ml-events pipeline: its clock wins over the writer's.
    osmem-server has no pipelines, and its template was applied without one: the writer's stamp stays."""
    written = "2001-01-01T00:00:00.000Z"
    es.index(index=f"ml-events-{START:%Y.%m.%d}", id="x", refresh=True,
             document={"@timestamp": format_timestamp(START), "event": {"id": "x", "ingested": written}})
    stored = es.get(index=f"ml-events-{START:%Y.%m.%d}", id="x")["_source"]["event"]["ingested"]
    if store_backend == "opensearch":
        assert abs(parse_timestamp(stored).timestamp() - time.time()) < 60
    else:
        assert stored == written
