"""Process CPU, memory and open files for a service's private registry (prometheus_client's own collectors).

`add_process_collectors(registry)` registers prometheus_client's ProcessCollector (this process's
process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds, ...) and
PlatformCollector (python_info). Serving runs under gunicorn, where the process that answers
/metrics is one worker of several: `ProcessTreeCollector` reads the same series for the gunicorn
master and every worker it has (from /proc), each with a `pid` and a `role` label, whichever worker
answers the scrape (docs/metrics.md#process-series).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

PROC = Path("/proc")


def add_process_collectors(registry: CollectorRegistry) -> CollectorRegistry:
    """This process's process_* series and python_info in `registry` (returned)."""
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


def children_of(pid: int, proc: Path = PROC) -> list[int]:
    """The pids whose parent is `pid`, from /proc (empty where there is no /proc).

    /proc/PID/task/*/children where the kernel has it (one small read per thread); else every
    /proc/*/stat is read for its parent pid (20 ms on a busy host)."""
    try:
        tasks = list((proc / str(pid) / "task").iterdir())
        return sorted({int(child) for task in tasks for child in (task / "children").read_text().split()})
    except (OSError, ValueError):
        pass
    found = []
    try:
        entries = list(proc.iterdir())
    except OSError:
        return found
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # the command name (field 2) may hold spaces and parentheses: the fields after the last ")"
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            found.append(int(entry.name))
    return sorted(found)


class ProcessTreeCollector(Collector):
    """process_* of a parent and its children, labelled pid and role ("master" / "worker").

    `parent` returns the parent's pid at scrape time (in a gunicorn worker: os.getppid, the master).
    """

    def __init__(self, parent: Callable[[], int] = os.getppid, proc: Path = PROC) -> None:
        self._parent, self._proc = parent, proc

    def _processes(self) -> Iterable[tuple[int, str]]:
        master = self._parent()
        yield master, "master"
        for child in children_of(master, self._proc):
            yield child, "worker"

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for pid, role in self._processes():
            for family in ProcessCollector(pid=lambda pid=pid: pid, proc=str(self._proc), registry=None).collect():
                target = merged.get(family.name)
                if target is None:
                    target = merged[family.name] = Metric(family.name, family.documentation, family.type, family.unit)
                for sample in family.samples:
                    target.add_sample(sample.name, {**sample.labels, "pid": str(pid), "role": role},
                                      sample.value, sample.timestamp)
        yield from merged.values()
