"""The HTML of /report: a monitor's page (window facts, then Evidently's reports in frames) and the
page shown when a report is missing. Pure: summary document in, HTML out."""
from __future__ import annotations

import html
from typing import Any

from log_processor.monitors import Monitor
from log_processor.tasks import task_for


def no_report_page(name: str, status: str, part: str) -> tuple[str, int]:
    reason = {"insufficient_data": "the window has too few rows for a verdict",
              "starting": "the first evaluation has not finished yet",
              "error": "the last evaluations failed (see /healthz)"}.get(status, "no report yet")
    if part == "quality":
        reason = "too few labelled rows in the window for quality metrics"
    if part == "target":
        reason = "too few labelled rows in the window for a target-drift verdict"
    return (f"<!doctype html><title>{html.escape(name)}</title><h1>{html.escape(name)}</h1>"
            f"<p>No {part} report: {html.escape(reason)}.</p>", 503)


def _task_sections(title: str, summary: dict[str, Any]) -> str:
    """The task's quality against the reference's, and the probabilistic family, as one line each."""
    def line(title: str, values: dict[str, float], reference: dict[str, float]) -> str:
        shown = " · ".join(f"{html.escape(m)} {v:.3f}" + (f" (reference {reference[m]:.3f})" if m in reference else "")
                           for m, v in values.items())
        return f"<b>{html.escape(title)}</b>: {shown}" if values else ""
    parts = [line(title, summary.get("quality") or {}, summary.get("reference_quality") or {}),
             line("Probabilistic quality", summary.get("probabilistic_quality") or {},
                  summary.get("reference_probabilistic_quality") or {})]
    return "<br>".join(p for p in parts if p)


def monitor_page(monitor: Monitor, summary: dict[str, Any], has_quality: bool, has_target: bool) -> str:
    """Window facts on top, then Evidently's drift report and (with enough labels) its quality and
    target-drift reports; the quality section is titled by the monitor's task."""
    n = html.escape(monitor.name)
    title = task_for(monitor).title
    drift_share = monitor.drift.drift_share
    window = summary.get("window", {})
    rows = summary.get("rows", {})
    drifted_features = summary.get("drifted_features", [])
    drifted = ", ".join(drifted_features) or "none"
    features = len(summary.get("feature_drift", []))
    share = (f" ({len(drifted_features)} of {features} features, share "
             f"{summary.get('drift_share', 0):.2f}, drift at {drift_share:g})"
             if features else "")
    facts = (f"window {html.escape(str(window.get('start')))} → {html.escape(str(window.get('end')))} · "
             f"rows {rows.get('current')} (evaluated {rows.get('evaluated')}, labelled {rows.get('labelled')}) · "
             f"dataset drift: <b>{'YES' if summary.get('dataset_drift') else 'no'}</b>{share} · drifted: {html.escape(drifted)}")
    estimated = summary.get("estimated_quality")
    if estimated:
        shown = " · ".join(f"{html.escape(m)} {e['value']:.3f} [{e['lower']:.3f}–{e['upper']:.3f}]"
                           for m, e in estimated.items())
        errors = summary.get("estimation_error") or {}
        check = (" · estimated − realized on the labelled rows: "
                 + ", ".join(f"{html.escape(m)} {v:+.3f}" for m, v in errors.items())) if errors else \
            " · too few labelled rows to check it against yet"
        facts += (f"<br>estimated quality (all {rows.get('evaluated')} rows, from the calibrated scores, "
                  f"before labels): {shown}{check}")
    sections = _task_sections(title, summary)
    if sections:
        facts += "<br>" + sections
    frames = f'<h2>Data and prediction drift</h2><iframe src="?monitor={n}&part=drift"></iframe>'
    frames += (f'<h2>{html.escape(title)} (labelled rows)</h2>'
               f'<iframe src="?monitor={n}&part=quality"></iframe>'
               if has_quality else "<p>Quality: too few labelled rows in this window.</p>")
    if has_target:
        frames += f'<h2>Target drift (labelled rows)</h2><iframe src="?monitor={n}&part=target"></iframe>'

    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{n} — Evidently report</title>"
            "<style>body{font-family:sans-serif;margin:1em}iframe{width:100%;height:80vh;border:1px solid #ccc}</style>"
            f"</head><body><h1>{n}</h1><p>{facts}</p>{frames}</body></html>")
