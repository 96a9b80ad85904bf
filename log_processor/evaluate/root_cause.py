"""The root cause of an incident, ranked: which drifted features matter to the model, and which
segments hurt most. Pure.

A feature's drift strength is how far its statistic went past its threshold (score / threshold,
>= 1 when it drifted; thresholds sized to the rows tested, evaluate/drift_thresholds.py), taken at
the worst place it drifted: the whole window or any flagged segment. Its weight is that strength x
its importance to the model (evaluate/importance.py: permutation importance on the reference,
summing to 1), so a feature the model ignores ranks last however far it moved; without an importance
(a reference without a model artifact) every feature weighs 1 and the ranking is by drift alone.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from log_processor.evaluate.evaluation import Evaluation
from log_processor.evaluate.segments import SegmentEvaluation


@dataclass(frozen=True)
class Cause:
    feature: str
    drift: float            # score / threshold at the worst place it drifted
    importance: float       # share of the model's output change (1.0 when unknown)
    weight: float           # drift x importance: the ranking key
    where: tuple[str, ...]  # "window" and/or "field=value" of the segments it drifted in


@dataclass(frozen=True)
class WorstSegment:
    segment: str            # field=value
    field: str
    value: str
    share: float            # of the evaluated rows
    drifted: tuple[str, ...]
    quality_degraded: bool


def rank_causes(evaluation: Evaluation | None, segments: SegmentEvaluation | None,
                importance: dict[str, float] | None) -> tuple[Cause, ...]:
    strength: dict[str, float] = {}
    where: dict[str, list[str]] = {}

    def seen(feature: str, score: float, threshold: float, place: str) -> None:
        if not (math.isfinite(score) and math.isfinite(threshold) and threshold > 0):
            return
        strength[feature] = max(strength.get(feature, 0.0), score / threshold)
        where.setdefault(feature, []).append(place)

    if evaluation is not None:
        for f in evaluation.feature_drift:
            if f.detected:
                seen(f.column, f.score, f.threshold, "window")
    if segments is not None:
        for s in segments.segments:
            for t in s.tests:
                if t.detected and t.kind == "feature":
                    seen(t.column, t.score, t.threshold, s.label)
    causes = []
    for feature, drift in strength.items():
        weight_of = 1.0 if importance is None else float(importance.get(feature, 0.0))
        causes.append(Cause(feature, drift, weight_of, drift * weight_of, tuple(where[feature])))
    return tuple(sorted(causes, key=lambda c: (-c.weight, -c.drift, c.feature)))


def worst_segments(segments: SegmentEvaluation | None, k: int) -> tuple[WorstSegment, ...]:
    """The flagged segments, worst first (SegmentEvaluation's order), at most k."""
    if segments is None:
        return ()
    return tuple(WorstSegment(s.label, s.field, s.value, s.share, s.drifted, s.quality_degraded)
                 for s in segments.segments if s.flagged)[:k]
