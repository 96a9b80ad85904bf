"""The shipper's /metrics: its own counters (ShipperStats) as `shipper_*` series, read at scrape time.

A custom Collector (prometheus_client's pattern for values another object owns): nothing is counted
twice, the shipper thread keeps writing plain integers and a scrape only reads them. Process series
(CPU, memory, open files of the process the shipper runs in) come from prometheus_client's own
collectors. `serve(shipper, host, port)` starts the HTTP endpoint in a daemon thread; docs/metrics.md
lists the series.
"""
from __future__ import annotations

from typing import Callable, Iterator

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from common.process_metrics import add_process_collectors
from shipper.shipper import ShipperStats

# (name, help, the ShipperStats field); counters get `_total` on exposition
COUNTERS = (
    ("shipper_lines_read", "Lines read from the followed files (a batch re-read after a stop counts again)", "lines_read"),
    ("shipper_events_shipped", "Events the store acknowledged as created, offsets saved past them", "shipped"),
    ("shipper_events_duplicate", "Events the store already had (409 on create): shipped before, not stored twice", "duplicates"),
    ("shipper_events_retried", "Events sent again after the store was unavailable or refused them for now", "events_retried"),
    ("shipper_bulk_retries", "Bulk requests retried with back-off", "retries"),
    ("shipper_events_dead_lettered", "Lines written to the dead-letter file (not JSON, no id, rejected for good)", "dead_lettered"),
)


class ShipperCollector(Collector):
    """`shipper_*` from the stats object `stats()` returns at scrape time."""

    def __init__(self, stats: Callable[[], ShipperStats]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        for name, documentation, attribute in COUNTERS:
            family = CounterMetricFamily(name, documentation)
            family.add_metric((), getattr(stats, attribute))
            yield family
        yield GaugeMetricFamily("shipper_bytes_behind", "Bytes written to the followed files and not yet shipped",
                                value=stats.lag_bytes)
        yield GaugeMetricFamily("shipper_store_available",
                                "1 while the store takes the shipper's bulk requests, 0 while it retries",
                                value=1.0 if stats.store_available else 0.0)
        # absent until the first successful bulk request, so "never" is not read as 1970
        if stats.last_bulk_success:
            yield GaugeMetricFamily("shipper_last_bulk_success_timestamp_seconds",
                                    "Unix time of the last bulk request the store acknowledged in full",
                                    value=stats.last_bulk_success)


def registry_for(stats: Callable[[], ShipperStats]) -> CollectorRegistry:
    """shipper_* plus process_* and python_info, in a registry of their own."""
    registry = add_process_collectors(CollectorRegistry())
    registry.register(ShipperCollector(stats))
    return registry


def serve(stats: Callable[[], ShipperStats], host: str, port: int):
    """GET /metrics on host:port in a daemon thread; returns (server, thread) — server.shutdown() stops it.
    OSError (e.g. the port is taken) is left to the caller."""
    return start_http_server(port, addr=host, registry=registry_for(stats))
