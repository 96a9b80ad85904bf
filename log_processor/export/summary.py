"""The summary document of one evaluation, written to ml-monitoring-* (mapping in elasticsearch/) and
shown on /report.json. Its task-specific fields come from the task (tasks/)."""
from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from typing import Any

from common.schema import format_timestamp
from log_processor.evaluate.evaluation import Evaluation
from log_processor.evaluate.reference import Reference
from log_processor.evaluate.root_cause import Cause, worst_segments
from log_processor.evaluate.segments import SegmentEvaluation
from log_processor.monitors import Monitor
from log_processor.read.window import Window
from log_processor.tasks import task_for


def summary_document(m: Monitor, reference: Reference, window: Window, ev: Evaluation | None,
                     outcome: str, now: float) -> dict[str, Any]:
    """The per-evaluation document for ml-monitoring-* (mapping in elasticsearch/), also /report.json."""
    def ts(seconds: float) -> str:
        return format_timestamp(datetime.fromtimestamp(seconds, timezone.utc))

    doc: dict[str, Any] = {
        "@timestamp": ts(now),
        "monitor": m.name,
        "task": m.task,
        "model": {"name": reference.model_name, "version": reference.model_version},
        "reference": {"version": reference.version, "sha256": reference.sha256},
        "window": {"start": ts(window.start), "end": ts(window.end)},
        "status": outcome,
        "rows": {"current": window.rows, "reference": reference.rows, "labelled": window.labelled,
                 "evaluated": ev.evaluated_rows if ev else 0},
        "label_coverage": round(window.label_coverage, 6),
        "label_delay_seconds": window.label_delay_quantiles(),
        "rejected": dict(window.rejected),
        "missing_values_share": window.missing_share,
        "duplicated_ids": window.duplicated_ids,
        "sampling_rate": window.sampling_rate,
        **task_for(m).summary_fields(window.frame, m, window.predicted_shares(m.classes)),
    }
    if reference.quality_values is not None:
        doc["reference_quality"] = reference.quality_values.metrics
        if reference.quality_values.probabilistic:
            doc["reference_probabilistic_quality"] = reference.quality_values.probabilistic
    if ev is not None:
        doc.update({
            "dataset_drift": ev.dataset_drift,
            "drifted_features": list(ev.drifted_features),
            "drift_share": ev.drifted_share,
            "feature_drift": [{"feature": f.column, "method": f.method, "score": f.score,
                               "threshold": f.threshold, "detected": f.detected, "p_value": f.p_value}
                              for f in ev.feature_drift],
            "prediction_drift": dataclasses.asdict(ev.prediction_drift),
            "target_drift": dataclasses.asdict(ev.target_drift) if ev.target_drift is not None else None,
            "quality": ev.quality,
            "stability": dataclasses.asdict(ev.stability),
        })
        if ev.class_quality:
            doc["class_quality"] = [{"class": c, "metric": k, "value": v} for (c, k), v in ev.class_quality.items()]
        if ev.probabilistic:
            doc["probabilistic_quality"] = ev.probabilistic
        if ev.calibration_curve:
            doc["calibration_curve"] = [{"bin": b, "predicted": p, "observed": o}
                                        for b, (p, o) in ev.calibration_curve.items()]
        if ev.estimation is not None:
            doc["estimated_quality"] = {m: {"value": e.value, "lower": e.lower, "upper": e.upper}
                                        for m, e in ev.estimation.estimates.items()}
            doc["estimation_error"] = ev.estimation.error
    return doc


WORST_SEGMENTS = 5      # in the summary's root cause (every segment is under `segments`)


def segment_fields(segments: SegmentEvaluation | None, causes: tuple[Cause, ...],
                   importance: dict[str, float] | None) -> dict[str, Any]:
    """The summary's `root_cause` (drifted features ranked by drift x importance, the worst segments
    with their traffic share) and `segments` (every segment of the window, worst first)."""
    doc: dict[str, Any] = {"root_cause": {
        "features": [{"rank": i, "feature": c.feature, "weight": c.weight, "drift": c.drift,
                      "importance": c.importance, "where": list(c.where)} for i, c in enumerate(causes, 1)],
        "worst_segments": [dataclasses.asdict(w) for w in worst_segments(segments, WORST_SEGMENTS)],
        "importance": importance or {},
    }}
    if segments is not None:
        doc["segments"] = {
            "method": segments.method, "alpha": segments.alpha, "tests": segments.tests,
            "evaluated": segments.evaluated, "flagged": segments.flagged, "skipped": segments.skipped,
            "pooled": segments.pooled,
            "items": [{"field": s.field, "segment": s.value, "rows": s.rows, "share": s.share,
                       "labelled": s.labelled, "tested": s.tested, "drift_detected": s.drift_detected,
                       "quality_degraded": s.quality_degraded, "drifted": list(s.drifted),
                       "min_adjusted_p_value": s.min_adjusted, "quality": s.quality, "estimated_quality": s.estimated,
                       "tests": [dataclasses.asdict(t) for t in s.tests]} for s in segments.segments],
        }
    return doc
