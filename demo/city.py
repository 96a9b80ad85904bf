"""The demo's fourth phase: one city drifts alone (docs/demo.md#one-city).

After the recovery, one window's worth of requests in which one city (serving.data.CITY_DRIFT:
Springfield, 12 % of them) is served by drivers whose conversion rate reads higher than their twins'.
Every label follows the normal world, so the model stays right: a covariate shift in one slice. What
the story must show, for each monitor of the ranker that slices by the rider's city:

- the whole window's verdict stays "no dataset drift" (the shift is diluted to an eighth);
- the segment context.city=Springfield is flagged, with the shifted feature among its drifted columns;
- the root cause ranks the shifted feature first;
- with alerting, SegmentDrift fires and each channel gets a firing message that names the city and
  ranks the feature first (the monitor's incident; see demo/report.py for why it may take an update).

The phase is skipped, with the reason printed, when no monitor slices by the city or the window
cannot hold `segments.min_rows` of the city's rows (phases shorter than ~420 requests).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from demo.report import PhaseResult
from log_processor.monitors import Monitor
from serving.model import MODEL_NAME

FIELD = "context.city"
PHASE = "city"
_FIRST_CAUSE = re.compile(r"\b1\. ([A-Za-z0-9_.]+) \(drift x importance")


@dataclass(frozen=True)
class CityStory:
    city: str
    share: float
    feature: str
    seed: int

    @classmethod
    def shipped(cls, seed: int) -> "CityStory":
        from serving.data import CITY_DRIFT
        return cls(str(CITY_DRIFT["city"]), float(CITY_DRIFT["share"]), str(CITY_DRIFT["feature"]), seed)

    @property
    def segment(self) -> str:
        return f"{FIELD}={self.city}"

    def monitors(self, monitors: tuple[Monitor, ...]) -> tuple[Monitor, ...]:
        """The monitors the story is about: the ranker's, slicing by the rider's city."""
        return tuple(m for m in monitors if m.model_name == MODEL_NAME and m.segments is not None
                     and FIELD in m.segments.fields)

    def traffic(self, n_requests: int) -> Any:
        """The phase's requests (serving.data.generate_city_traffic): driver_ids, outcomes, city."""
        from serving.data import generate_city_traffic
        return generate_city_traffic(n_requests, self.seed)

    def skip_reason(self, monitors: tuple[Monitor, ...], traffic: Any) -> str | None:
        """Why the phase cannot tell its story (None: it can)."""
        about = self.monitors(monitors)
        if not about:
            return f"no monitor of {MODEL_NAME} slices by {FIELD} (monitors.yaml `segments:`)"
        rows = int((traffic["city"] == self.city).sum())
        need = max(m.segments.min_rows for m in about)
        if rows < need:
            return (f"its {len(traffic)} requests hold {rows} from {self.city}, fewer than segments.min_rows "
                    f"({need}): use phases of at least {int(need / self.share) + 1} requests")
        return None

    def failures(self, result: PhaseResult, monitors: tuple[Monitor, ...], channels: tuple[str, ...]) -> list[str]:
        """Why the city phase did not hold, per monitor of the story (empty when it did)."""
        failures = []
        for monitor in self.monitors(monitors):
            name, v = monitor.name, result.verdicts.get(monitor.name)
            if v is None or not v.available:
                failures.append(f"{name}: city phase: the log processor gave no verdict")
                continue
            if v.dataset_drift:
                failures.append(f"{name}: city phase: the whole window reported dataset drift "
                                f"({', '.join(v.drifted_features)}); only {self.city} was shifted")
            drifted = v.flagged_segments.get(self.segment)
            if drifted is None:
                failures.append(f"{name}: city phase: segment {self.segment} not flagged "
                                f"(flagged: {', '.join(v.flagged_segments) or 'none'})")
            elif self.feature not in drifted:
                failures.append(f"{name}: city phase: {self.segment} flagged without {self.feature} "
                                f"({', '.join(drifted) or 'no drifted column'})")
            if ("DataDriftDetected", name) in result.alerts:
                failures.append(f"{name}: city phase: DataDriftDetected fired")
            if v.root_cause[:1] != (self.feature,):
                failures.append(f"{name}: city phase: root cause ranks {', '.join(v.root_cause) or 'nothing'}, "
                                f"not {self.feature} first")
            if channels:
                failures += self._message_failures(result, name, channels)
        return failures

    def _message_failures(self, result: PhaseResult, monitor: str, channels: tuple[str, ...]) -> list[str]:
        if ("SegmentDrift", monitor) not in result.alerts:
            return [f"{monitor}: city phase: SegmentDrift did not fire"]
        failures = []
        for channel in channels:
            told = self.telling(result.texts, channel, monitor)
            if not told:
                failures.append(f"{monitor}: city phase: no {channel} message names SegmentDrift in {self.city}")
            elif not any(first_cause(t) == self.feature for t in told):
                failures.append(f"{monitor}: city phase: the {channel} message does not rank {self.feature} "
                                f"first in its root cause")
        return failures

    def telling(self, texts: list[tuple[str, str, str, str]], channel: str, monitor: str) -> list[str]:
        """The firing messages of `channel` about `monitor` that name SegmentDrift in the city."""
        return [text for ch, about, status, text in texts if ch == channel and about == monitor
                and status == "firing" and "SegmentDrift" in text and self.city in text]


def first_cause(text: str) -> str | None:
    """The feature ranked first in a message's root cause ("1. conv_rate (drift x importance ..."), or None."""
    found = _FIRST_CAUSE.search(text)
    return found[1] if found else None


def message_body(channel: str, text: str, body: dict[str, Any] | None) -> str:
    """What a message says, for the checks above: the webhook's JSON (its annotations), else the text."""
    return json.dumps(body) if channel == "webhook" and body else text
