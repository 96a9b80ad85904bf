"""The log processor's latest verdict, read from its /metrics (the contract in docs/metrics.md).

Reading the metric contract rather than the processor's internals means the demo checks exactly
what Prometheus, the dashboards and the alert rules see.
"""
from __future__ import annotations

import urllib.request
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Verdict:
    monitor: str
    available: bool = False             # mlmon_verdict_available == 1
    dataset_drift: bool = False
    drifted_features: tuple[str, ...] = ()
    feature_scores: dict[str, float] = field(default_factory=dict)
    quality: dict[str, float] = field(default_factory=dict)  # accuracy, precision, recall, f1
    rows: dict[str, int] = field(default_factory=dict)       # current, reference, labelled, evaluated
    estimated: dict[str, float] = field(default_factory=dict)   # from the calibrated scores, all rows
    estimated_band: dict[str, tuple[float, float]] = field(default_factory=dict)   # (lower, upper)
    # regression monitors (trip_duration): mae, rmse, ... of the window's labelled rows, and the reference's
    regression_quality: dict[str, float] = field(default_factory=dict)
    reference_regression_quality: dict[str, float] = field(default_factory=dict)
    target_drift: bool | None = None    # mlmon_target_drift_detected; None while the gauge is absent
    target_drift_score: float | None = None
    evaluations: int = 0                # all outcomes
    last_evaluation: float = 0.0        # unix time
    newest_event: float | None = None   # mlmon_newest_event_timestamp_seconds: a prediction was read
    no_data: bool = False               # mlmon_no_data == 1: blind (or quiet), the verdict is the last one
    # "field=value" of each flagged segment (drift or quality; worst K only) -> its drifted columns
    flagged_segments: dict[str, tuple[str, ...]] = field(default_factory=dict)
    root_cause: tuple[str, ...] = ()    # mlmon_root_cause's features, rank 1 first

    def summary(self) -> str:
        if not self.available:
            return f"no verdict yet ({self.rows.get('current', 0)} rows in the window)"
        if self.dataset_drift:
            return f"DRIFT on {', '.join(self.drifted_features)}"
        drifted = f" ({', '.join(self.drifted_features)} alone)" if self.drifted_features else ""
        return f"no dataset drift{drifted}"


def parse_verdict(metrics_text: str, monitor: str) -> Verdict:
    """The verdict of `monitor` in a Prometheus text exposition (pure)."""
    values: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.labels.get("monitor") == monitor:
                values.setdefault(sample.name, []).append((sample.labels, sample.value))

    def single(name: str) -> float:
        found = values.get(name)
        return found[0][1] if found else 0.0

    def by_metric(name: str) -> dict[str, float]:
        return {labels["metric"]: value for labels, value in values.get(name, [])}

    estimated = by_metric("mlmon_estimated_classification_quality")
    lower = by_metric("mlmon_estimated_classification_quality_lower")
    upper = by_metric("mlmon_estimated_classification_quality_upper")
    target_drift = values.get("mlmon_target_drift_detected")
    target_score = values.get("mlmon_target_drift_score")
    drifted = sorted(labels["feature"] for labels, value in values.get("mlmon_feature_drift_detected", [])
                     if value == 1)
    flagged = {(labels["field"], labels["segment"]) for name in ("mlmon_segment_drift_detected",
                                                                 "mlmon_segment_quality_degraded")
               for labels, value in values.get(name, []) if value == 1}
    columns: dict[tuple[str, str], list[str]] = {}
    for labels, _ in values.get("mlmon_segment_drifted_column", []):
        columns.setdefault((labels["field"], labels["segment"]), []).append(labels["column"])
    causes = sorted(values.get("mlmon_root_cause", []), key=lambda item: int(item[0]["rank"]))
    return Verdict(
        monitor=monitor,
        available=single("mlmon_verdict_available") == 1,
        dataset_drift=single("mlmon_dataset_drift") == 1,
        drifted_features=tuple(drifted),
        feature_scores={labels["feature"]: value
                        for labels, value in values.get("mlmon_feature_drift_score", [])},
        quality={labels["metric"]: value for labels, value in values.get("mlmon_classification_quality", [])},
        rows={labels["kind"]: int(value) for labels, value in values.get("mlmon_window_rows", [])},
        estimated=estimated,
        estimated_band={metric: (lower[metric], upper[metric]) for metric in estimated
                        if metric in lower and metric in upper},
        regression_quality=by_metric("mlmon_regression_quality"),
        reference_regression_quality=by_metric("mlmon_reference_regression_quality"),
        target_drift=(target_drift[0][1] == 1) if target_drift else None,
        target_drift_score=target_score[0][1] if target_score else None,
        evaluations=int(sum(value for _, value in values.get("mlmon_evaluations_total", []))),
        last_evaluation=single("mlmon_last_evaluation_timestamp_seconds"),
        newest_event=single("mlmon_newest_event_timestamp_seconds") if "mlmon_newest_event_timestamp_seconds" in values
        else None,
        no_data=single("mlmon_no_data") == 1,
        flagged_segments={f"{f}={v}": tuple(sorted(columns.get((f, v), []))) for f, v in sorted(flagged)},
        root_cause=tuple(labels["feature"] for labels, _ in causes),
    )


def fetch_verdict(metrics_url: str, monitor: str, timeout: float = 5.0) -> Verdict:
    return fetch_verdicts(metrics_url, (monitor,), timeout)[monitor]


def fetch_verdicts(metrics_url: str, monitors: tuple[str, ...], timeout: float = 5.0) -> dict[str, Verdict]:
    """Every named monitor's verdict from one scrape."""
    with urllib.request.urlopen(metrics_url, timeout=timeout) as response:
        text = response.read().decode()
    return {monitor: parse_verdict(text, monitor) for monitor in monitors}
