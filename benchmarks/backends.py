"""The stores a benchmark runs on, started fresh, with what they cost the machine.

`osmem` is osmem-server (in memory; a Go memory limit as one gives Elasticsearch a heap);
`opensearch-1` / `opensearch-3` are real OpenSearch clusters of 1 or 3 nodes (one JVM each,
common/opensearch_runner.py) holding ml-events-* in as many primaries as nodes, with one replica
where there is a second node, as a user's cluster would.
BENCH_STORES (e.g. "osmem,opensearch-1") chooses; by default every store that can run here.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from osmem_server import OsmemServer

from common.opensearch_runner import EngineUnavailable, OpenSearchCluster, find_java_home
from common.store import StoreSettings, apply_index_templates, connect

ALL = ("osmem", "opensearch-1", "opensearch-3")
OSMEM_MEMORY_LIMIT_GIB = 16
OPENSEARCH_HEAP = os.environ.get("BENCH_OPENSEARCH_HEAP", "2g")
_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Backend:
    name: str
    url: str
    pids: Callable[[], list[int]]
    close: Callable[[], None]

    def usage(self) -> tuple[float, float]:
        """(CPU seconds used so far, resident MB now) of the store's processes."""
        cpu = rss = 0.0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                cpu += (int(fields[11]) + int(fields[12])) / _TICKS
                status = Path(f"/proc/{pid}/status").read_text()
                rss += int(next(l for l in status.splitlines() if l.startswith("VmRSS:")).split()[1]) / 1024
            except (OSError, StopIteration, IndexError, ValueError):
                continue
        return cpu, rss

    def merges(self) -> int | None:
        """Segment merges running in the store now (OpenSearch's node stats); None where it has none."""
        try:
            with urllib.request.urlopen(f"{self.url}/_nodes/stats/indices/merge", timeout=10) as response:
                nodes = json.load(response)["nodes"].values()
            return sum(node["indices"]["merges"]["current"] for node in nodes)
        except (OSError, ValueError, KeyError):
            return None

    def settle(self, idle_cores: float = 0.1, quiet_seconds: int = 3, timeout: float = 300.0) -> tuple[float, float]:
        """Wait until the store is quiet after a bulk load: no merge running and under `idle_cores` of
        CPU for `quiet_seconds` seconds in a row (a freshly loaded engine merges its segments for a
        minute or more, on the cores the processor runs on). Returns (seconds waited, store CPU spent)."""
        started, (cpu_start, _) = time.monotonic(), self.usage()
        quiet, last = 0, cpu_start
        while quiet < quiet_seconds and time.monotonic() - started < timeout:
            time.sleep(1.0)
            cpu, _ = self.usage()
            quiet = quiet + 1 if cpu - last < idle_cores and not self.merges() else 0
            last = cpu
        return time.monotonic() - started, last - cpu_start


def chosen(default: tuple[str, ...] = ALL) -> list[str]:
    """The stores to run on: BENCH_STORES, or each default one that can run here (said when not)."""
    raw = os.environ.get("BENCH_STORES")
    names = [n.strip() for n in raw.split(",") if n.strip()] if raw else list(default)
    unknown = set(names) - set(ALL)
    if unknown:
        raise SystemExit(f"BENCH_STORES: unknown store(s) {', '.join(sorted(unknown))} (known: {', '.join(ALL)})")
    if not raw and any(n.startswith("opensearch") for n in names):
        try:
            find_java_home()
        except EngineUnavailable as exc:
            print(f"  OpenSearch left out: {exc}", flush=True)
            names = [n for n in names if not n.startswith("opensearch")]
    return names


def start(name: str) -> Backend:
    """A fresh, empty store with the project's index templates."""
    if name == "osmem":
        backend, settings = _start_osmem(), None
    else:
        nodes = int(name.rsplit("-", 1)[1])
        tmp = tempfile.TemporaryDirectory(prefix="bench-opensearch-")
        cluster = OpenSearchCluster.start(nodes, Path(tmp.name), heap=OPENSEARCH_HEAP)

        def close() -> None:
            cluster.close()
            tmp.cleanup()
        backend = Backend(name, cluster.url, cluster.pids, close)
        settings = {"ml-events": {"number_of_shards": nodes, "number_of_replicas": min(1, nodes - 1),
                                  "refresh_interval": "1s"}}
    es = connect(StoreSettings(url=backend.url))
    apply_index_templates(es, settings=settings)
    es.close()
    return backend


def _start_osmem() -> Backend:
    """GOMEMLIMIT as a heap size; GOGC=100 below it (docs/benchmarks.md says why)."""
    saved = {key: os.environ.get(key) for key in ("GOGC", "GOMEMLIMIT")}
    os.environ.update(GOGC="100", GOMEMLIMIT=f"{OSMEM_MEMORY_LIMIT_GIB}GiB")
    try:
        server = OsmemServer.start(japanese=False, addr="127.0.0.1:0")
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return Backend("osmem", server.url, lambda: [server.pid], server.close)
