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
    frames = segment_sections(summary)
    frames += f'<h2>Data and prediction drift</h2><iframe src="?monitor={n}&part=drift"></iframe>'
    frames += (f'<h2>{html.escape(title)} (labelled rows)</h2>'
               f'<iframe src="?monitor={n}&part=quality"></iframe>'
               if has_quality else "<p>Quality: too few labelled rows in this window.</p>")
    if has_target:
        frames += f'<h2>Target drift (labelled rows)</h2><iframe src="?monitor={n}&part=target"></iframe>'

    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{n} — Evidently report</title>"
            "<style>body{font-family:sans-serif;margin:1em}iframe{width:100%;height:80vh;border:1px solid #ccc}</style>"
            f"</head><body><h1>{n}</h1><p>{facts}</p>{frames}</body></html>")


def segment_sections(summary: dict[str, Any]) -> str:
    """The root cause (drifted features ranked by drift x importance) and the segment table, worst
    first (every value escaped: segment values come from event data)."""
    e = lambda v: html.escape(str(v))   # noqa: E731
    out = ""
    cause = summary.get("root_cause") or {}
    if cause.get("features"):
        rows = "".join(f"<tr><td>{c['rank']}</td><td>{e(c['feature'])}</td><td>{c['weight']:.3f}</td>"
                       f"<td>{c['drift']:.2f}</td><td>{c['importance']:.2f}</td><td>{e(', '.join(c['where']))}</td></tr>"
                       for c in cause["features"])
        out += ("<h2>Root cause</h2><table border=1 cellpadding=3><tr><th>rank</th><th>feature</th>"
                "<th>drift × importance</th><th>score / threshold</th><th>importance</th><th>drifted in</th></tr>"
                f"{rows}</table>")
    segments = summary.get("segments")
    if segments:
        rows = "".join(
            f"<tr><td>{e(s['field'])}</td><td>{e(s['segment'])}</td><td>{s['rows']}</td><td>{s['share']:.1%}</td>"
            f"<td>{'YES' if s['drift_detected'] else ('no' if s['tested'] else '(too few rows)')}</td>"
            f"<td>{e(', '.join(s['drifted']))}</td><td>{'YES' if s['quality_degraded'] else 'no'}</td>"
            f"<td>{e(' · '.join(f'{k} {v:.3f}' for k, v in s['quality'].items()))}</td>"
            f"<td>{s['min_adjusted_p_value']:.3g}</td></tr>" for s in segments["items"])
        out += (f"<h2>Segments</h2><p>{segments['evaluated']} evaluated, {segments['flagged']} flagged, "
                f"{segments['skipped']} below min_rows, pooled into other: {e(segments['pooled'])}; "
                f"{e(segments['method'])} over {segments['tests']} tests at {segments['alpha']:g}</p>"
                "<table border=1 cellpadding=3><tr><th>field</th><th>segment</th><th>rows</th><th>share</th>"
                "<th>drift</th><th>drifted</th><th>quality degraded</th><th>quality</th><th>min adjusted p</th></tr>"
                f"{rows}</table>")
    return out
