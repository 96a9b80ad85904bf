"""Debian's exporters as the demo runs them (demo/exporters.py), against the real stores: the node
exporter with its cheap collectors only, and the Elasticsearch exporter's cluster health on both
stores, its JVM heap on OpenSearch (osmem-server has no _nodes/stats)."""
from __future__ import annotations

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from demo import exporters


def samples(url: str) -> list:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def need(binary: str) -> None:
    if exporters.find(binary) is None:
        pytest.skip(f"{binary} not installed ({exporters.INSTALL_HINT})")


def test_node_exporter_runs_only_the_cheap_collectors_on_loopback(tmp_path):
    need(exporters.NODE_EXPORTER)
    with exporters.NodeExporter(tmp_path / "node.log") as node:
        assert node.address.startswith("127.0.0.1:")
        got = samples(node.url)
    collectors = {s.labels["collector"] for s in got if s.name == "node_scrape_collector_success"}
    assert collectors == set(exporters.NODE_COLLECTORS)
    assert all(s.value == 1 for s in got if s.name == "node_scrape_collector_success")
    roots = [s for s in got if s.name == "node_filesystem_avail_bytes" and s.labels["mountpoint"] == "/"]
    assert roots and roots[0].value > 0
    assert not node.child.running


def test_store_exporter_reads_cluster_health_and_where_it_can_the_heap(tmp_path, store_url, store_backend):
    need(exporters.ELASTICSEARCH_EXPORTER)
    with exporters.ElasticsearchExporter(store_url, tmp_path / "es.log") as exporter:
        got = samples(exporter.url)
    by_name = {}
    for s in got:
        by_name.setdefault(s.name, []).append(s)
    assert by_name["elasticsearch_cluster_health_up"][0].value == 1
    colors = {s.labels["color"]: s.value for s in by_name["elasticsearch_cluster_health_status"]}
    assert colors["green"] == 1 and colors["red"] == 0      # the templates give 0 replicas: green
    node_stats = by_name["elasticsearch_node_stats_up"][0].value
    if store_backend == "opensearch":
        assert node_stats == 1
        heap = {s.labels["area"]: s.value for s in by_name["elasticsearch_jvm_memory_used_bytes"]}
        limit = {s.labels["area"]: s.value for s in by_name["elasticsearch_jvm_memory_max_bytes"]}
        assert 0 < heap["heap"] < limit["heap"]
    else:
        assert node_stats == 0 and "elasticsearch_jvm_memory_used_bytes" not in by_name
