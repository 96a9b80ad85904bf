"""common/process_metrics.py: the process series of a process tree (serving's gunicorn master and
workers) from /proc, by the kernel's children lists or, without them, by every process's parent."""
from __future__ import annotations

import os
import subprocess
import sys

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from common.process_metrics import ProcessTreeCollector, add_process_collectors, children_of


def test_children_of_reads_the_kernel_lists_and_falls_back_to_every_stat(tmp_path):
    sleepers = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) for _ in range(2)]
    try:
        assert set(children_of(os.getpid())) >= {p.pid for p in sleepers}
    finally:
        for p in sleepers:
            p.kill()
            p.wait()
    # a /proc without task/*/children: the parent pid (field 4 of stat, after a name with spaces and ")")
    for pid, ppid, name in ((10, 1, "gunicorn: master"), (11, 10, "gunicorn: worker (x)"), (12, 10, "w) 2"), (13, 11, "x")):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(f"{pid} ({name}) S {ppid} 1 1 0 -1\n")
    (tmp_path / "self").mkdir()
    assert children_of(10, tmp_path) == [11, 12]
    assert children_of(99, tmp_path) == []


def test_tree_collector_labels_each_process_and_the_plain_one_reports_this_process():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        registry = CollectorRegistry()
        registry.register(ProcessTreeCollector(parent=os.getpid))
        samples = [s for f in text_string_to_metric_families(generate_latest(registry).decode()) for s in f.samples]
        rss = {s.labels["pid"]: s.labels["role"] for s in samples if s.name == "process_resident_memory_bytes"}
        assert rss[str(os.getpid())] == "master" and rss[str(child.pid)] == "worker"
        assert all(s.value >= 0 for s in samples)
    finally:
        child.kill()
        child.wait()
    own = {s.name: s for f in text_string_to_metric_families(generate_latest(add_process_collectors(CollectorRegistry())).decode())
           for s in f.samples}
    assert own["process_resident_memory_bytes"].labels == {} and own["process_resident_memory_bytes"].value > 10e6
    assert own["python_info"].labels["major"] == str(sys.version_info.major)
