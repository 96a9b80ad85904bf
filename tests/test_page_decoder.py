"""Search pages decoded straight into the fields a read needs (log_processor/read/page_decoder.py): the
same chunks as from dicts, malformed documents included; what the types do not fit goes to the usual
decoder; the typed decoding is the asking thread's alone; an error answer keeps its message."""
import dataclasses
import json
import threading
from typing import Any

import msgspec
import pandas as pd
import pytest

from common.store import FastJsonSerializer, StoreSettings
from log_processor.read.page_decoder import PageDecoder
from log_processor.read.store import EventStore, StoreError
from log_processor.monitors import load_monitors
from log_processor.columns import Columns, score_column
from log_processor.read.parse import parse_page, shared_fields, source_fields
from tests import task_data as data
from tests.test_log_processor_window import MONITOR, fb, pred
from tests.test_tasks_validate import feedback, prediction


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


@pytest.fixture
def multiclass(tmp_path):
    (m,) = load_monitors(data.write_monitor(tmp_path, data.MULTICLASS_YAML, data.multiclass_rows(20, seed=0)))
    return m


def scored(i, scores, cls="long"):
    return prediction(i, {"class": cls, "class_scores": scores}, "trip_type")


def test_score_vectors_are_decoded_as_tuples_and_parse_as_from_dicts(multiclass):
    docs = [scored(0, [0.1, 0.2, 0.7]), scored(1, [1, 0, 0], "short"), prediction(2, {"class": "long"}, "trip_type"),
            scored(3, None), feedback(0, {"class": "long"}, "trip_type")]
    decoded = PageDecoder(source_fields(multiclass))(response(docs))
    typed = [hit["_source"] for hit in decoded["hits"]["hits"]]
    assert Columns(typed)("prediction.class_scores") == [(0.1, 0.2, 0.7), (1.0, 0.0, 0.0), None, None, None]
    assert Columns(typed).typed and not Columns(docs).typed
    typed_chunk, dict_chunk = parse_page(typed, multiclass), parse_page(docs, multiclass)
    pd.testing.assert_frame_equal(typed_chunk.predictions, dict_chunk.predictions)
    pd.testing.assert_frame_equal(typed_chunk.rejects, dict_chunk.rejects)
    assert typed_chunk.predictions[[score_column(c) for c in data.CLASSES]].to_numpy().tolist() == [[0.1, 0.2, 0.7],
                                                                                                 [1.0, 0.0, 0.0]]
    assert typed_chunk.rejected == {"missing_field": 2}          # no vector, a null vector


@pytest.mark.parametrize("bad, reason", [([0.5, 0.5], "scores_length"), ([0.5, "a", 0.5], "not_a_number"),
                                         ([0.5, True, 0.5], "not_a_number"), ("0.5,0.5,0", "scores_length"),
                                         ([7777.5, 0, 0], "non_finite")])
def test_a_vector_that_does_not_fit_sends_its_page_to_the_checked_reading(multiclass, bad, reason):
    docs = [scored(0, [0.1, 0.2, 0.7]), scored(1, bad), scored(2, [0.3, 0.3, 0.4])]
    body = response(docs).replace(b"7777.5", b"1e400")        # beyond a double: inf once decoded
    assert PageDecoder(source_fields(multiclass))(body) is None      # read as dicts: every value checked
    chunk = parse_page([h["_source"] for h in json.loads(body)["hits"]["hits"]], multiclass)
    assert len(chunk.predictions) == 2 and chunk.rejected == {reason: 1}


def test_a_field_two_monitors_type_differently_is_read_untyped(multiclass):
    four = dataclasses.replace(multiclass, name="four", classes=("a", "b", "c", "d"))
    assert shared_fields([multiclass, multiclass])["prediction.class_scores"] == tuple[float, float, float]
    assert shared_fields([multiclass, four])["prediction.class_scores"] is Any
    assert list(shared_fields([MONITOR, multiclass])) == list(dict.fromkeys([*source_fields(MONITOR),
                                                                            *source_fields(multiclass)]))


def test_vectors_handed_over_as_dicts_are_checked_whatever_their_container(multiclass):
    docs = [scored(0, (0.1, 0.2, 0.7)), scored(1, ("0.5", 0.2, 0.3)), scored(2, (True, 0.0, 0.0)), scored(3, (1, 2))]
    chunk = parse_page(docs, multiclass)
    assert chunk.predictions[score_column("long")].tolist() == [0.7]
    assert chunk.rejected == {"not_a_number": 2, "scores_length": 1}
