"""Debian's Prometheus exporters for the embedded stack: node metrics and the store's health.

`prometheus-node-exporter` and `prometheus-elasticsearch-exporter` (apt packages; `make system-deps`
installs them where it can) run on loopback free ports when installed, as the demo already runs
Prometheus; without them the demo runs without those series and says so. The node exporter runs only
cheap collectors (cpu, meminfo, filesystem, loadavg, diskstats, netdev): no textfile, systemd or
hardware scans. The Elasticsearch exporter reads the store's `_cluster/health` and `_nodes/stats`
(cluster health works against osmem-server and OpenSearch alike; node stats, i.e. the heap, only
where the store answers them: OpenSearch yes, osmem no — docs/demo.md#exporters).

    with NodeExporter(log_file) as node:           # FileNotFoundError when not installed
        node.address  # 127.0.0.1:PORT for prometheus.yml's `node` job
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Sequence

from common.net import free_port
from common.supervisor import Child, http_ok

NODE_EXPORTER = "prometheus-node-exporter"
ELASTICSEARCH_EXPORTER = "prometheus-elasticsearch-exporter"
NODE_COLLECTORS = ("cpu", "meminfo", "filesystem", "loadavg", "diskstats", "netdev")
INSTALL_HINT = "sudo apt-get install prometheus-node-exporter prometheus-elasticsearch-exporter (or `make system-deps`)"


def find(binary: str) -> str | None:
    return shutil.which(binary)


class Exporter:
    """One exporter binary on a loopback port, ready once GET /metrics answers 200."""

    name = "exporter"
    binary = ""

    def __init__(self, args: Sequence[str], log_file: Path, port: int | None = None,
                 ready_timeout: float = 30.0) -> None:
        path = find(self.binary)
        if path is None:
            raise FileNotFoundError(f"{self.binary} not installed ({INSTALL_HINT})")
        self.port = port or free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.address}"
        self.ready_timeout = ready_timeout
        self.child = Child(self.name, [path, f"--web.listen-address={self.address}", *args], Path(log_file))

    def start(self) -> "Exporter":
        self.child.start()
        try:
            self.child.wait_ready(lambda: http_ok(self.url + "/metrics", lambda s: s == 200, timeout=2.0),
                                  self.ready_timeout, f"{self.url}/metrics answered 200", interval=0.1)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self.child.stop(grace=5.0)

    def __enter__(self) -> "Exporter":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class NodeExporter(Exporter):
    name = "node_exporter"
    binary = NODE_EXPORTER

    def __init__(self, log_file: Path, port: int | None = None, collectors: Sequence[str] = NODE_COLLECTORS):
        super().__init__(["--collector.disable-defaults", *(f"--collector.{c}" for c in collectors)],
                         log_file, port)


class ElasticsearchExporter(Exporter):
    name = "elasticsearch_exporter"
    binary = ELASTICSEARCH_EXPORTER

    def __init__(self, store_url: str, log_file: Path, port: int | None = None):
        super().__init__([f"--es.uri={store_url}", "--es.timeout=5s"], log_file, port)


def missing() -> list[str]:
    """The exporter packages not installed here."""
    return [binary for binary in (NODE_EXPORTER, ELASTICSEARCH_EXPORTER) if find(binary) is None]
