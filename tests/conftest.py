"""Shared fixtures: the store-facing tests run on two real backends, on loopback.

- osmem-server (in memory, the embedded default): one server per session, a clone per test.
- OpenSearch (real Lucene engine, `common.opensearch_runner`): one node per session, emptied per
  test; marked `opensearch`. Where Java 21+ or Maven is missing its tests are skipped with the reason,
  unless REQUIRE_OPENSEARCH=1 (CI), which makes a missing engine an error.

The Prometheus tools at compose's versions (`pinned_tool`, built by `make go-tools`) are skipped the
same way where they could not be built, unless REQUIRE_GO_TOOLS=1 or CI=true.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from osmem_server import OsmemServer

from common import go_tools
from common.net import free_port  # noqa: F401 (the tests import it from here)
from common.opensearch_runner import EngineUnavailable, OpenSearchCluster
from common.store import StoreSettings, apply_index_templates, connect

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def osmem_base():
    """One server for the session; tests write only to their own clone."""
    server = OsmemServer.start(japanese=False, addr="127.0.0.1:0")
    yield server
    server.close()


def start_opensearch(nodes: int, base_dir: Path, **kwargs) -> OpenSearchCluster:
    """A real OpenSearch cluster, or a skip that says what is missing (a failure under REQUIRE_OPENSEARCH=1)."""
    try:
        return OpenSearchCluster.start(nodes, base_dir, **kwargs)
    except EngineUnavailable as exc:
        if os.environ.get("REQUIRE_OPENSEARCH", "") not in ("", "0"):
            pytest.fail(f"REQUIRE_OPENSEARCH is set and the engine cannot run: {exc}", pytrace=False)
        pytest.skip(f"OpenSearch leg skipped: {exc}")


def pinned_tool(binary: str) -> Path:
    """var/tools/bin/<binary> at its pin, or a skip saying how to build it (a failure when required)."""
    path = go_tools.tool(binary)
    if path is None:
        pin = go_tools.pin(binary)
        reason = f"{binary} {pin.reports} (compose's version) is not built: run `make go-tools`"
        if go_tools.required():
            pytest.fail(f"REQUIRE_GO_TOOLS or CI is set and {reason}", pytrace=False)
        pytest.skip(reason)
    return path


@pytest.fixture(scope="session")
def opensearch_node(tmp_path_factory):
    cluster = start_opensearch(1, tmp_path_factory.mktemp("opensearch"))
    yield cluster
    cluster.close()


def empty_opensearch(url: str) -> None:
    """Every index, template and pipeline a test may have left goes; the project's templates return."""
    es = connect(StoreSettings(url=url))
    es.indices.delete(index="*", expand_wildcards="open,closed", ignore_unavailable=True)
    quiet = es.options(ignore_status=404)
    for template in quiet.indices.get_index_template().get("index_templates", []):
        es.indices.delete_index_template(name=template["name"])
    for pipeline in quiet.ingest.get_pipeline().body or {}:
        es.ingest.delete_pipeline(id=pipeline)
    apply_index_templates(es)
    es.close()


@pytest.fixture(params=["osmem", pytest.param("opensearch", marks=pytest.mark.opensearch)])
def store_backend(request) -> str:
    """Which backend the store-facing test runs on (its id shows in the test name)."""
    return request.param


@pytest.fixture
def store_url(request, store_backend) -> str:
    """URL of a fresh, empty store with the project's index templates applied."""
    if store_backend == "opensearch":
        node = request.getfixturevalue("opensearch_node")
        empty_opensearch(node.url)
        yield node.url
        return
    osmem_base = request.getfixturevalue("osmem_base")
    with osmem_base.clone() as clone:
        es = connect(StoreSettings(url=clone.url))
        apply_index_templates(es)
        es.close()
        yield clone.url


@pytest.fixture
def es(store_url):
    client = connect(StoreSettings(url=store_url))
    yield client
    client.close()


def record_reads(store) -> list[bool]:
    """Every window read the store client makes from now on, in order: True for an incremental one
    (a `since` on event.ingested), False for a full read."""
    reads: list[bool] = []
    scan = store.scan
    store.scan = lambda *a, **kw: reads.append(kw.get("since") is not None) or scan(*a, **kw)
    return reads
