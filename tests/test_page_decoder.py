"""Search pages decoded straight into the fields a read needs (log_processor/page_decoder.py): the
same chunks as from dicts, malformed documents included; what the types do not fit goes to the usual
decoder; the typed decoding is the asking thread's alone; an error answer keeps its message."""
import json
import threading

import msgspec
import pandas as pd
import pytest

from common.store import FastJsonSerializer, StoreSettings
from log_processor.page_decoder import PageDecoder
from log_processor.store import EventStore, StoreError
from log_processor.validate import Columns, parse_page, source_fields
from tests.test_log_processor_window import MONITOR, fb, pred


def response(docs, **extra):
    hits = [{"_index": "ml-events-x", "_id": str(i), "_score": None, **({"_source": d} if d is not ... else {}),
             "sort": [i]} for i, d in enumerate(docs)]
    return json.dumps({"took": 1, "hits": {"total": {"value": len(hits)}, "hits": hits}, **extra}).encode()


def malformed_page():
    """Every kind of bad value that still has objects where the monitor's paths need them."""
    no_key = pred("x")
    del no_key["request_id"]
    no_score = pred("s")
    del no_score["prediction"]["score"]
    unknown = pred("u")
    unknown["event"]["dataset"] = "ml.mystery"
    bad_target = fb("a", at=3)
    bad_target["target"]["trip_completed"] = "yes"
    null_features = pred("n")
    null_features["features"] = None
    return [pred("a"), pred("b", conv_rate="0.5"), pred("c", acc_rate=[1]), pred("d", conv_rate={"x": 1}),
            pred("e", avg_daily_trips=...), pred("t", conv_rate=True), pred("f", model="other_model"),
            no_key, no_score, unknown, bad_target, null_features, fb("b", at=4), {"not": "an event"}, ...]


def test_a_typed_page_parses_to_exactly_the_chunk_of_its_dicts():
    docs = malformed_page()
    decoded = PageDecoder(source_fields(MONITOR))(response(docs))
    typed = [hit.get("_source") for hit in decoded["hits"]["hits"]]
    assert all(isinstance(d, msgspec.Struct) for d in typed[:-1]) and typed[-1] is None     # the last: no _source
    assert decoded["hits"]["total"] == {"value": len(docs)} and decoded["hits"]["hits"][3]["sort"] == [3]
    typed_chunk = parse_page(typed, MONITOR)
    dict_chunk = parse_page([d if d is not ... else None for d in docs], MONITOR)
    pd.testing.assert_frame_equal(typed_chunk.predictions, dict_chunk.predictions)
    pd.testing.assert_frame_equal(typed_chunk.feedback, dict_chunk.feedback)
    pd.testing.assert_frame_equal(typed_chunk.rejects.drop(columns="_eid"), dict_chunk.rejects.drop(columns="_eid"))
    assert (typed_chunk.ingested, typed_chunk.unstamped) == (dict_chunk.ingested, dict_chunk.unstamped)
    assert len(typed_chunk.predictions) == 3 and len(typed_chunk.feedback) == 1   # a, e, n (features kept as NaN); b's label
    # b, c, d, t and the label "yes"; no key, no score; a mystery dataset, a non-event, a hit without _source
    assert dict(typed_chunk.rejected) == {"not_a_number": 5, "missing_field": 2, "unknown_dataset": 3}


def test_columns_come_back_by_their_json_keys_whole_objects_included():
    page = response([{"@timestamp": "t", "a": {"b": 1, "c": [2]}, "skipped": 3}, {"a": None}])
    docs = [hit["_source"] for hit in PageDecoder(["@timestamp", "a.b", "a"])(page)["hits"]["hits"]]
    columns = Columns(docs)
    assert columns("@timestamp") == ["t", None]
    assert columns("a") == [{"b": 1, "c": [2]}, None]              # asked for whole: kept whole
    with pytest.raises(KeyError):
        columns("skipped")                                          # not asked for, not decoded


@pytest.mark.parametrize("body", [
    response([pred("a"), {**pred("b"), "prediction": "a string where an object belongs"}]),
    json.dumps({"error": {"type": "search_phase_execution_exception", "reason": "x"}, "status": 500}).encode(),
    response([pred("a")]).replace(b'"request_id"', b'"request_id": "\\ud800", "x"'),   # a lone surrogate
], ids=["an object that is not one", "an error body", "what msgspec refuses"])
def test_what_the_types_do_not_fit_goes_to_the_usual_decoding(body):
    decoder = PageDecoder(source_fields(MONITOR))
    serializer = FastJsonSerializer()
    with serializer.decoding(decoder):
        decoded = serializer.loads(body)
    assert decoder(body) is None
    assert decoded == json.loads(body)                              # dicts, every field


def test_the_typed_decoding_is_the_asking_threads_alone():
    serializer, body = FastJsonSerializer(), response([pred("a")])
    other = {}
    with serializer.decoding(PageDecoder(["event.id"])):
        typed = serializer.loads(body)
        reader = threading.Thread(target=lambda: other.update(serializer.loads(body)))
        reader.start()
        reader.join()
    assert isinstance(typed["hits"]["hits"][0]["_source"], msgspec.Struct)
    assert other == json.loads(body) == serializer.loads(body)       # another thread, and after: plain dicts


def test_an_error_answer_to_a_typed_read_keeps_the_stores_message(store_url):
    store = EventStore(StoreSettings(url=store_url))
    try:
        with pytest.raises(StoreError) as error:
            store.scan("_not-an-index-name", 0, 10, source_fields(MONITOR), len)
    finally:
        store.close()
    assert error.value.operation == "search" and "400" in str(error.value)
    assert "invalid_index_name_exception" in str(error.value)
