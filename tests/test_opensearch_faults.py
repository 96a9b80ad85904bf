"""Faults on the real engine: a node killed (kill -9) while events ship, and brought back.

Each test runs its own OpenSearch cluster (one JVM per node, data on disk), so a killed node keeps what
it had acknowledged. What must hold: every event.id written is stored exactly once, and the processor
keeps producing verdicts.
"""
from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from common.store import StoreSettings, apply_index_templates, connect
from shipper import Shipper
from benchmarks import synthetic
from tests.conftest import start_opensearch
from tests.test_log_processor_store import monitor_for, reference_file, runner_for  # noqa: F401 (fixture)
from tests.test_shipper import make_event, running, settings_for, stored_ids, wait_for, write

pytestmark = [pytest.mark.opensearch, pytest.mark.slow]


def test_a_killed_node_keeps_acknowledged_events_on_disk_and_the_shipper_resumes(tmp_path):
    with start_opensearch(1, tmp_path / "engine") as cluster:
        node = cluster.nodes[0]
        es = connect(StoreSettings(url=cluster.url))
        apply_index_templates(es)
        events_file = tmp_path / "events.jsonl"
        settings = settings_for(tmp_path, cluster.url)
        shipper = Shipper(settings)
        with running(shipper) as thread:
            before = write(events_file, [make_event(i) for i in range(3)])
            wait_for(lambda: shipper.stats.shipped == 3, what="the first 3 events")
            cluster.kill_node(node)                 # no flush, no goodbye
            offsets_before = settings.offsets_file.read_text()
            while_down = write(events_file, [make_event(i) for i in range(3, 8)])
            wait_for(lambda: shipper.stats.retries >= 2, what="retries while the node is down")
            assert not shipper.stats.store_available
            assert settings.offsets_file.read_text() == offsets_before   # not advanced without an ack
            cluster.start_node(node)                # same ports, same data directory
            wait_for(lambda: shipper.stats.shipped == 8, timeout=60, what="the events written while down")
            es = connect(StoreSettings(url=cluster.url))
            assert stored_ids(es) == set(before) | set(while_down)   # the first 3 came back from disk
            assert es.count(index="ml-events-*")["count"] == 8
    assert not thread.is_alive() and cluster.pids() == []


def _writer(path: Path, events: list[dict], stop: threading.Event, per_batch: int = 200) -> threading.Thread:
    """Appends the events in batches while the test goes on, as a serving process logs them."""
    def run() -> None:
        for start in range(0, len(events), per_batch):
            if stop.is_set():
                return
            with open(path, "a") as handle:
                for event in events[start:start + per_batch]:
                    handle.write(json.dumps(event) + "\n")
            time.sleep(0.05)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_three_nodes_one_killed_mid_shipping_every_event_once_and_verdicts_go_on(tmp_path, reference_file):
    now = datetime.now(timezone.utc)
    rows = synthetic.chosen_rows("normal", 4000, 21)
    events = list(synthetic.events(rows, now - timedelta(minutes=10), now - timedelta(seconds=5),
                                   feedback_share=0.5, seed=4))
    emitted = {e["event"]["id"] for e in events}
    assert len(emitted) == len(events)
    with start_opensearch(3, tmp_path / "engine") as cluster:
        es = connect(StoreSettings(url=cluster.url))
        # ml-events-* as a user's cluster would hold it: 3 primaries, each with a replica on another node
        apply_index_templates(es, settings={"ml-events": {"number_of_shards": 3, "number_of_replicas": 1}})
        events_file = tmp_path / "events.jsonl"
        events_file.touch()
        shipper = Shipper(settings_for(tmp_path, cluster.url, batch_size=250,
                                       store=StoreSettings(url=cluster.url, request_timeout=10.0)))
        stop = threading.Event()
        runner, _ = runner_for(cluster.url, monitor_for(reference_file))
        victim = cluster.nodes[2]                  # the shipper and the processor talk to node 1
        with running(shipper):
            writing = _writer(events_file, events, stop)
            wait_for(lambda: shipper.stats.shipped >= len(events) // 4, timeout=60, what="a quarter shipped")
            cluster.kill_node(victim)
            shipped_at_kill = shipper.stats.shipped
            assert shipped_at_kill < len(events), "the node must die mid-shipping"
            wait_for(lambda: cluster.health(cluster.nodes[0])["number_of_nodes"] == 2, timeout=90,
                     what="the cluster to notice the dead node")
            verdict_while_down = runner.run_once()
            cluster.start_node(victim, timeout=120)
            writing.join(60)
            wait_for(lambda: shipper.stats.shipped + shipper.stats.duplicates >= len(events), timeout=120,
                     what="every event acknowledged")
            cluster.wait_healthy(120, status="green")
        stop.set()
        es = connect(StoreSettings(url=cluster.url))
        es.indices.refresh(index="ml-events-*")
        stored = [hit["_id"] for hit in _all_hits(es)]
        assert len(stored) == len(set(stored)), "an event.id is stored twice"
        assert set(stored) == emitted, f"{len(emitted - set(stored))} events lost"
        assert shipper.stats.dead_lettered == 0
        assert verdict_while_down == "ok", runner.state.last_error     # a verdict with a node down
        assert runner.run_once() == "ok", runner.state.last_error
        assert runner.state.consecutive_errors == 0
    assert cluster.pids() == []


def _all_hits(es):
    response = es.search(index="ml-events-*", size=5000, sort=["_doc"], scroll="1m", source=False)
    while response["hits"]["hits"]:
        yield from response["hits"]["hits"]
        response = es.scroll(scroll_id=response["_scroll_id"], scroll="1m")
    es.clear_scroll(scroll_id=response["_scroll_id"])
