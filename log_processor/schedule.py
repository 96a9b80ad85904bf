"""When each monitor runs: the monitors over one index share a thread, and those due together share
one read of it (runner.SharedCycle)."""
from __future__ import annotations

import gc
import threading
import time

from log_processor.memory import settle_memory
from log_processor.read.window_reader import WindowReader
from log_processor.runner import MonitorRunner, SharedCycle


class Schedule:
    """When each monitor of a thread is next due (monotonic seconds).

    A monitor is due `next_delay()` after its last cycle ended, and joins a cycle that starts up to
    `early` of its interval before it is due: one read instead of two a moment apart. Monitors with
    the same interval stay due together; one whose interval is a multiple of another's falls in step
    with it (as long as a cycle takes less than `early` of the shorter interval)."""

    def __init__(self, intervals: list[float], early: float = 0.25):
        self.intervals, self.early = intervals, early
        self.due_at = [0.0] * len(intervals)

    def due(self, now: float) -> list[int]:
        if min(self.due_at) > now:
            return []
        return [i for i, at in enumerate(self.due_at) if at <= now + self.early * self.intervals[i]]

    def ran(self, indexes: list[int], ended: float, delays: list[float]) -> None:
        for i, delay in zip(indexes, delays):
            self.due_at[i] = ended + delay

    def next_at(self) -> float:
        return min(self.due_at)


class IndexThread:
    """The runners of the monitors over one index, in one thread: each cycle, those due (Schedule)
    share one read."""

    def __init__(self, runners: list[MonitorRunner], reader: WindowReader):
        self.runners, self.reader = runners, reader
        self._thread: threading.Thread | None = None

    def run_due(self, due: list[MonitorRunner]) -> None:
        cycle = SharedCycle(self.reader, [r.monitor for r in due], due[0].clock())
        for runner in due:
            runner.run_once(cycle)

    def start(self, stop: threading.Event) -> None:
        def loop() -> None:
            schedule = Schedule([r.monitor.interval_seconds for r in self.runners])
            settled = False
            while not stop.is_set():
                due = schedule.due(time.monotonic())
                if due:
                    self.run_due([self.runners[i] for i in due])
                    schedule.ran(due, time.monotonic(), [self.runners[i].next_delay() for i in due])
                    if settled:
                        gc.collect()    # what the cycle left in reference cycles goes now (settle_memory)
                if not settled:
                    settle_memory()
                    settled = True
                stop.wait(max(0.001, schedule.next_at() - time.monotonic()))
        self._thread = threading.Thread(target=loop, name=f"monitors-{self.reader.index}", daemon=True)
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
