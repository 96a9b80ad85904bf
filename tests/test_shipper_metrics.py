"""The shipper's /metrics (issue 32, point 3): its counters as shipper_* series over real HTTP,
against a real osmem-server, plus process series; the CLI serves them on SHIPPER_METRICS_PORT."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request

import pytest
from osmem_server import OsmemServer
from prometheus_client.parser import text_string_to_metric_families

from common.env import SettingsError
from common.store import StoreSettings, apply_index_templates, connect
from shipper import Shipper, ShipperSettings
from shipper.metrics import serve
from tests.conftest import REPO_ROOT, free_port
from tests.test_shipper import make_event, running, settings_for, wait_for, write


def scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    return {s.name: s.value for family in text_string_to_metric_families(text) for s in family.samples
            if not s.labels}


@pytest.fixture
def osmem():
    server = OsmemServer.start(japanese=False, addr=f"127.0.0.1:{free_port()}")
    client = connect(StoreSettings(url=server.url))
    apply_index_templates(client)
    client.close()
    yield server
    server.close()


def test_metrics_follow_reads_shipments_dead_letters_retries_and_lag(tmp_path, osmem):
    events_file = tmp_path / "events.jsonl"
    settings = settings_for(tmp_path, osmem.url)
    shipper = Shipper(settings)
    port = free_port()
    server, _ = serve(lambda: shipper.stats, "127.0.0.1", port)
    url = f"http://127.0.0.1:{port}"
    try:
        before = scrape(url)
        assert before["shipper_events_shipped_total"] == 0 and before["shipper_lines_read_total"] == 0
        assert "shipper_last_bulk_success_timestamp_seconds" not in before   # none yet, not 1970
        assert before["process_resident_memory_bytes"] > 0 and before["process_open_fds"] > 0
        started = time.time()
        with running(shipper):
            write(events_file, [make_event(i) for i in range(5)], raw="not json\n")
            wait_for(lambda: shipper.stats.shipped == 5 and shipper.stats.dead_lettered == 1, what="5 shipped")
            after = scrape(url)
            assert after["shipper_lines_read_total"] == 6
            assert after["shipper_events_shipped_total"] == 5
            assert after["shipper_events_dead_lettered_total"] == 1
            assert after["shipper_events_retried_total"] == 0 and after["shipper_bytes_behind"] == 0
            assert after["shipper_store_available"] == 1
            assert after["shipper_last_bulk_success_timestamp_seconds"] >= started
            last_success = after["shipper_last_bulk_success_timestamp_seconds"]

            osmem.close()                      # the store goes away: retries, bytes behind, no new success
            write(events_file, [make_event(i) for i in range(5, 8)])
            wait_for(lambda: shipper.stats.retries >= 2, what="retries")
            down = scrape(url)
            assert down["shipper_events_retried_total"] >= 2 * 3     # 3 events per retried bulk request
            assert down["shipper_bulk_retries_total"] >= 2
            assert down["shipper_store_available"] == 0
            assert down["shipper_last_bulk_success_timestamp_seconds"] == last_success
            assert down["shipper_events_shipped_total"] == 5
    finally:
        server.shutdown()


def test_cli_serves_metrics_on_its_port_and_settings_check_it(tmp_path, osmem):
    assert ShipperSettings.from_env({}).metrics_port == 9310
    assert ShipperSettings.from_env({"SHIPPER_METRICS_PORT": "0"}).metrics_port == 0
    with pytest.raises(SettingsError, match="SHIPPER_METRICS_PORT='70000' must be between 0 and 65535"):
        ShipperSettings.from_env({"SHIPPER_METRICS_PORT": "70000"})
    events_file = tmp_path / "events.jsonl"
    write(events_file, [make_event(i) for i in range(3)])
    port = free_port()
    env = {**os.environ, "SHIPPER_FILES": str(events_file), "SHIPPER_STATE_DIR": str(tmp_path / "state"),
           "ELASTICSEARCH_URL": osmem.url, "SHIPPER_METRICS_PORT": str(port)}
    process = subprocess.Popen([sys.executable, "-m", "shipper"], cwd=REPO_ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def shipped() -> bool:
            try:
                return scrape(f"http://127.0.0.1:{port}").get("shipper_events_shipped_total") == 3
            except OSError:
                return False
        wait_for(shipped, timeout=60, what="the CLI's /metrics to show 3 shipped")
        # a second shipper on the same port: exit 2 naming the setting, not a traceback
        taken = subprocess.run([sys.executable, "-m", "shipper"], cwd=REPO_ROOT, env=env,
                               capture_output=True, text=True, timeout=60)
        assert taken.returncode == 2 and f"SHIPPER_METRICS_PORT={port}" in taken.stderr, taken.stderr
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=30)
    assert process.returncode == 0, out
