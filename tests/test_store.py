"""The store connection: distribution detection, plain JSON against OpenSearch-compatible servers."""
import pytest
from elasticsearch import helpers

from common.schema import daily_index, prediction_event
from common.store import StoreSettings, StoreUnavailable, connect, is_elasticsearch, probe
from tests.conftest import free_port


def test_osmem_is_detected_as_not_elasticsearch(store_url):
    info = probe(StoreSettings(url=store_url))
    assert info["version"]["distribution"] == "opensearch"
    assert not is_elasticsearch(info)


def test_real_elasticsearch_info_is_recognised():
    info = {"version": {"number": "9.1.0", "build_flavor": "default"}, "tagline": "You Know, for Search"}
    assert is_elasticsearch(info)


def test_body_requests_work_through_the_plain_json_node(es):
    """Without the plain-JSON node osmem answers 406 to every request with a body."""
    event = prediction_event(model_name="m", model_version="1", request_id="r1",
                             features={"conv_rate": 0.5, "acc_rate": 0.9, "avg_daily_trips": 10},
                             driver_id=1001, score=0.7, label=1, latency_ms=3.2)
    index = daily_index("ml-events-", event["@timestamp"])
    ok, errors = helpers.bulk(es, [{"_op_type": "create", "_index": index, "_id": event["event"]["id"],
                                    "_source": event}], raise_on_error=False, refresh=True)
    assert (ok, errors) == (1, [])
    hit = es.search(index="ml-events-*", query={"term": {"request_id": "r1"}})["hits"]["hits"][0]
    assert hit["_id"] == event["event"]["id"]
    mapping = es.indices.get_mapping(index=index)[index]["mappings"]["properties"]
    assert mapping["features"]["properties"]["avg_daily_trips"]["type"] == "integer"


def test_unreachable_store_raises_store_unavailable():
    with pytest.raises(StoreUnavailable, match="did not answer"):
        probe(StoreSettings(url=f"http://127.0.0.1:{free_port()}", request_timeout=2))
