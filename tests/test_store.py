"""The store connection: distribution detection, plain JSON against OpenSearch-compatible servers."""
import pytest
from elasticsearch import helpers

from common.schema import daily_index, prediction_event
from common.store import StoreSettings, StoreUnavailable, backend_kind, connect, is_elasticsearch, probe
from tests.conftest import free_port


def test_osmem_is_detected_as_not_elasticsearch(store_url):
    info = probe(StoreSettings(url=store_url))
    assert info["version"]["distribution"] == "opensearch"
    assert not is_elasticsearch(info)


def test_real_elasticsearch_info_is_recognised():
    info = {"version": {"number": "9.1.0", "build_flavor": "default"}, "tagline": "You Know, for Search"}
    assert is_elasticsearch(info) and backend_kind(info) == "elasticsearch"


def test_each_backend_is_told_apart_and_the_reader_takes_its_plan(store_url, store_backend):
    """osmem-server and OpenSearch both say "opensearch 3.8": the reader still tells them apart."""
    from log_processor.read.store import READ_PLANS, EventStore

    assert backend_kind(probe(StoreSettings(url=store_url))) == store_backend
    reader = EventStore(StoreSettings(url=store_url))
    reader.client()
    assert reader.plan == READ_PLANS[store_backend] and reader.page_size == READ_PLANS[store_backend].page_size
    assert EventStore(StoreSettings(url=store_url), page_size=123).page_size == 123
    reader.close()


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


def test_the_templates_are_enforced_a_wrong_type_is_rejected(es):
    """The mapping is the contract: a feature that is not a number never lands in ml-events-*."""
    good = prediction_event(model_name="m", model_version="1", request_id="ok",
                            features={"conv_rate": 0.5, "acc_rate": 0.9, "avg_daily_trips": 10},
                            driver_id=1001, score=0.7, label=1, latency_ms=3.2)
    bad = prediction_event(model_name="m", model_version="1", request_id="bad",
                           features={"conv_rate": 0.5, "acc_rate": 0.9, "avg_daily_trips": 10},
                           driver_id=1001, score=0.7, label=1, latency_ms=3.2)
    bad["features"]["conv_rate"] = "not a number"  # as a shipper of someone else's logs might send it
    index = daily_index("ml-events-", good["@timestamp"])
    actions = [{"_op_type": "create", "_index": index, "_id": e["event"]["id"], "_source": e} for e in (good, bad)]
    ok, errors = helpers.bulk(es, actions, raise_on_error=False, refresh=True)
    assert ok == 1 and len(errors) == 1
    assert errors[0]["create"]["_id"] == bad["event"]["id"] and errors[0]["create"]["status"] == 400
    assert "pars" in errors[0]["create"]["error"]["type"]  # mapper_parsing_exception / document_parsing_exception
    assert es.count(index="ml-events-*")["count"] == 1


@pytest.mark.opensearch
def test_opensearch_needs_the_shim_and_works_through_it(opensearch_node):
    """OpenSearch sends no X-Elastic-Product header: the plain client refuses it, ours does not."""
    from elastic_transport import Urllib3HttpNode
    from elasticsearch import Elasticsearch, UnsupportedProductError

    from common.store import PlainJsonNode

    assert issubclass(PlainJsonNode, Urllib3HttpNode)
    plain = Elasticsearch(opensearch_node.url, node_class=Urllib3HttpNode)
    with pytest.raises(UnsupportedProductError):
        plain.options(headers={"accept": "application/json"}).cluster.health()
    plain.close()
    es = connect(StoreSettings(url=opensearch_node.url))
    assert es.info()["version"]["distribution"] == "opensearch"
    assert es.cluster.health()["status"] in ("green", "yellow")
    es.close()
