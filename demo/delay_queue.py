"""Run callbacks at a later time from one background thread, instead of one sleeping thread each.

The traffic generator sends each request's ground-truth feedback some seconds after its
prediction, the way labels arrive late in production; thousands can be in flight at once.
"""
from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from typing import Callable

log = logging.getLogger(__name__)


class DelayQueue:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()  # ties run in insertion order
        self._cond = threading.Condition()
        self._closed = False
        self._running = 0
        self._thread = threading.Thread(target=self._loop, name="delay-queue", daemon=True)
        self._thread.start()

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        with self._cond:
            if self._closed:
                raise RuntimeError("the delay queue is closed")
            heapq.heappush(self._heap, (self._clock() + delay, next(self._order), callback))
            self._cond.notify()

    def pending(self) -> int:
        with self._cond:
            return len(self._heap) + self._running

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every scheduled callback ran; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._heap or self._running:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining if remaining is None else min(remaining, 0.1))
            return True

    def close(self) -> None:
        """Stop the thread; callbacks not yet due are discarded."""
        with self._cond:
            self._closed = True
            self._heap.clear()
            self._cond.notify_all()
        self._thread.join(5)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._closed:
                    now = self._clock()
                    if self._heap and self._heap[0][0] <= now:
                        break
                    self._cond.wait(None if not self._heap else self._heap[0][0] - now)
                if self._closed:
                    return
                _, _, callback = heapq.heappop(self._heap)
                self._running += 1
            try:
                callback()
            except Exception:  # one failing callback must not stop the others
                log.exception("delayed callback failed")
            finally:
                with self._cond:
                    self._running -= 1
                    self._cond.notify_all()
