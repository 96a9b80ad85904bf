"""Monitors sharded over processor replicas (LOGPROC_SHARD=i/n, log_processor/shard.py).

Two real `python -m log_processor` processes over one store and one file of four monitors: each
monitor's series come from exactly one of them, the one its name hashes to. The hash is checked
against the real Prometheus's `hashmod` relabelling, and each bad setting stops the start with
exit 2 and a line naming LOGPROC_SHARD.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timedelta, timezone

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from common.env import SettingsError
from common.supervisor import Child, http_ok
from demo.alerting_stack import PrometheusProcess, find_prometheus
from log_processor.settings import ProcessorSettings
from log_processor.shard import Shard, hashmod
from tests.conftest import REPO_ROOT, free_port
from tests.test_alerting_e2e import MONITORS_YAML, chosen_rows, events, load

MONITORS = ("shard_w", "shard_x", "shard_y", "shard_z")   # hashmod 2: 0, 1, 0, 1


@pytest.mark.parametrize("text, shard", [("0/1", Shard(0, 1)), ("1/2", Shard(1, 2)), (" 2/3 ", Shard(2, 3))])
def test_a_shard_setting_is_i_of_n(text, shard):
    assert Shard.parse(text) == shard
    assert ProcessorSettings.from_env({"LOGPROC_SHARD": text}).shard == shard


def test_by_default_one_replica_owns_every_monitor():
    shard = ProcessorSettings.from_env({}).shard
    assert shard == Shard(0, 1) and all(shard.owns(name) for name in MONITORS)


@pytest.mark.parametrize("text", ["3/2", "2/2", "x", "1", "1/0", "-1/2", "1/2/3", "a/b", "1.0/2"])
def test_a_bad_shard_setting_is_an_error_naming_the_variable(text):
    with pytest.raises(SettingsError, match=r"LOGPROC_SHARD=.*(0 <= i < n)"):
        ProcessorSettings.from_env({"LOGPROC_SHARD": text})


def test_the_processor_refuses_to_start_on_a_bad_shard_with_exit_2():
    env = {**os.environ, "LOGPROC_SHARD": "3/2"}
    done = subprocess.run([sys.executable, "-m", "log_processor"], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "bad configuration: LOGPROC_SHARD='3/2'" in done.stderr


def test_each_monitor_belongs_to_exactly_one_of_n_replicas():
    names = [f"monitor_{i}" for i in range(300)]
    for n in (1, 2, 3, 5):
        owners = [[i for i in range(n) if Shard(i, n).owns(name)] for name in names]
        assert all(len(o) == 1 for o in owners)
        counts = [sum(o == [i] for o in owners) for i in range(n)]
        assert min(counts) > 300 / n / 2, counts     # spread, not all on one replica


@pytest.mark.skipif(find_prometheus() is None, reason="prometheus not installed (make system-deps)")
def test_the_hash_is_prometheus_hashmod(tmp_path):
    """The real Prometheus relabels a `monitor` label with `hashmod`: the same shard as ours for every name."""
    names = [f"monitor_{i}" for i in range(40)] + list(MONITORS) + ["driver_ranker", "trip_duration", "ünïcode"]
    modulus = 3
    config = {"global": {"scrape_interval": "1h"}, "scrape_configs": [{
        "job_name": "shards",
        "static_configs": [{"targets": [f"127.0.0.1:{9 + i}"], "labels": {"monitor": name}}
                           for i, name in enumerate(names)],
        "relabel_configs": [{"source_labels": ["monitor"], "modulus": modulus, "target_label": "shard",
                             "action": "hashmod"}]}]}
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config, allow_unicode=True))
    with PrometheusProcess(tmp_path / "prometheus.yml", tmp_path) as prometheus:
        deadline = time.monotonic() + 30     # service discovery hands the targets over just after ready
        while len(targets := prometheus.targets()) < len(names) and time.monotonic() < deadline:
            time.sleep(0.2)
    assert len(targets) == len(names)
    theirs = {t["labels"]["monitor"]: int(t["labels"]["shard"]) for t in targets}
    assert theirs == {name: hashmod(name, modulus) for name in names}


def _metric_monitors(address: str) -> dict[str, set[str]]:
    """monitor label -> the mlmon_ families that carry it, as one replica's /metrics shows them."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
        text = response.read().decode()
    out: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if "monitor" in sample.labels:
                out.setdefault(sample.labels["monitor"], set()).add(family.name)
    return out


def _evaluated(address: str) -> set[str]:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {s.labels["monitor"] for f in text_string_to_metric_families(text) for s in f.samples
            if s.name == "mlmon_evaluations_total" and s.labels.get("outcome") == "ok" and s.value >= 1}


@pytest.mark.slow
def test_two_replicas_split_four_monitors_each_monitors_series_come_from_one(tmp_path, store_url, es):
    reference = tmp_path / "reference.parquet"
    chosen_rows("normal", 2000, 101)[["conv_rate", "acc_rate", "avg_daily_trips", "prediction",
                                       "prediction_score", "target"]].to_parquet(reference)
    blocks = [MONITORS_YAML.format(name=name, rows=300, reference=reference).split("monitors:\n", 1)[1]
              for name in MONITORS]
    monitors = tmp_path / "monitors.yaml"
    monitors.write_text("monitors:\n" + "".join(blocks))
    load(es, events(chosen_rows("normal", 300, 7), "n", datetime.now(timezone.utc) - timedelta(minutes=2),
                    timedelta(milliseconds=100)))

    replicas = {}
    with Child("replica_0", [sys.executable, "-m", "log_processor"], tmp_path / "replica_0.log", cwd=REPO_ROOT,
               env=_env(store_url, monitors, "0/2")) as first, \
            Child("replica_1", [sys.executable, "-m", "log_processor"], tmp_path / "replica_1.log", cwd=REPO_ROOT,
                  env=_env(store_url, monitors, "1/2")) as second:
        for shard, child in enumerate((first, second)):
            address = f"127.0.0.1:{child.env['LOGPROC_PORT']}"
            child.wait_ready(lambda: http_ok(f"http://{address}/metrics", lambda s: s == 200, timeout=1), 90,
                             "GET /metrics answered 200")
            replicas[shard] = address
        owned = {shard: {m for m in MONITORS if Shard(shard, 2).owns(m)} for shard in replicas}
        assert all(owned.values()), owned           # the four names split over both replicas
        deadline = time.monotonic() + 90
        while any(_evaluated(a) != owned[s] for s, a in replicas.items()) and time.monotonic() < deadline:
            time.sleep(0.5)
        seen = {shard: _metric_monitors(address) for shard, address in replicas.items()}
        health = {shard: http_ok(f"http://{address}/healthz", lambda s: s == 200, timeout=2)
                  for shard, address in replicas.items()}

    for shard in replicas:
        assert _ok(seen[shard], owned[shard]), (shard, sorted(seen[shard]))
        assert set(seen[shard]) == owned[shard], f"replica {shard}/2 exports {sorted(seen[shard])}"
    assert all(health.values())
    assert "shard 0/2: shard_w (every 1s), shard_y (every 1s) of 4" in (tmp_path / "replica_0.log").read_text()


def _ok(families_by_monitor: dict[str, set[str]], owned: set[str]) -> bool:
    """Each owned monitor evaluated a window: its drift verdict is among its series."""
    return all("mlmon_dataset_drift" in families_by_monitor.get(m, set()) for m in owned)


def _env(store_url: str, monitors, shard: str) -> dict[str, str]:
    return {**os.environ, "ELASTICSEARCH_URL": store_url, "LOGPROC_HOST": "127.0.0.1",
            "LOGPROC_PORT": str(free_port()), "LOGPROC_MONITORS_FILE": str(monitors), "LOGPROC_INTERVAL": "1",
            "LOGPROC_THREADS": "2", "LOGPROC_SHARD": shard, "LOGPROC_WRITE_SUMMARIES": "false"}


def test_a_replica_that_owns_no_monitor_is_healthy_and_exports_its_shard(tmp_path):
    """More replicas than monitors: the idle one still answers /healthz 200 and /metrics shows its shard,
    so ProcessorShardsIncomplete can count it."""
    from log_processor.app import create_app
    from log_processor.monitors import load_monitors
    from log_processor.processor import Processor
    monitors = load_monitors(REPO_ROOT / "log_processor" / "monitors.yaml")
    shard = next(Shard(i, 7) for i in range(7) if not any(Shard(i, 7).owns(m.name) for m in monitors))
    processor = Processor(ProcessorSettings(shard=shard), monitors)
    assert processor.monitors == () and processor.runners == {}
    client = create_app(processor=processor, start=False).test_client()
    health = client.get("/healthz")
    assert health.status_code == 200 and health.get_json()["monitors"] == {}
    metrics = {s.name: s for f in text_string_to_metric_families(client.get("/metrics").get_data(as_text=True))
               for s in f.samples}
    assert metrics["mlmon_processor_shards"].labels == {"shard": str(shard.index)}
    assert metrics["mlmon_processor_shards"].value == 7
    processor.stop()
