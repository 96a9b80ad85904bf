"""The summary document of one evaluation, written to ml-monitoring-* (mapping in elasticsearch/) and
shown on /report.json. Its task-specific fields come from the task (tasks/)."""
from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from typing import Any

from common.schema import format_timestamp
from log_processor.evaluate.evaluation import Evaluation
from log_processor.evaluate.reference import Reference
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
        **task_for(m).summary_fields(window.frame, m),
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
