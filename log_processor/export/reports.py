"""A cycle's Evidently reports, kept as snapshots and rendered to HTML when `/report` first asks.

Rendering is a page view's cost, not a cycle's: the three reports' HTML took ~0.2 s of every cycle
at a 1 M window (~3.8 MB of HTML each) for a page opened far less often than a cycle runs. A snapshot
already holds what its page shows (Evidently builds the widgets while it computes), so rendering it
later gives the same page.
"""
from __future__ import annotations

import threading
from typing import Any, Mapping

PARTS = ("drift", "quality", "target")      # /report?part=: the reports a cycle may have


class Reports:
    def __init__(self, snapshots: Mapping[str, Any] | None = None):
        unknown = set(snapshots or {}) - set(PARTS)
        if unknown:
            raise ValueError(f"unknown report part(s) {sorted(unknown)}; known: {', '.join(PARTS)}")
        self._snapshots = {part: s for part, s in (snapshots or {}).items() if s is not None}
        self._html: dict[str, str] = {}
        self._lock = threading.Lock()      # the web server's threads may ask for one page at once

    def has(self, part: str) -> bool:
        return part in self._snapshots

    def html(self, part: str) -> str | None:
        """The part's page (None: this cycle has no such report), rendered on the first request."""
        snapshot = self._snapshots.get(part)
        if snapshot is None:
            return None
        with self._lock:
            if part not in self._html:
                self._html[part] = snapshot.get_html_str(as_iframe=False)
            return self._html[part]
