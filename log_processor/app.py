"""The processor's web face (Flask factory): /metrics, /healthz, /report, /report.json.

Requests only read the state the monitor threads left behind; no request triggers an evaluation.
"""
from __future__ import annotations

import html
import time
from typing import Any

from flask import Flask, Response, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from log_processor.reports import PARTS
from log_processor.scheduler import MonitorRunner, Processor
from log_processor.settings import ProcessorSettings


def create_app(settings: ProcessorSettings | None = None, *, processor: Processor | None = None,
               start: bool = True) -> Flask:
    """The app around a Processor (built from settings unless given); `start` launches the monitors."""
    processor = processor or Processor(settings or ProcessorSettings.from_env())
    app = Flask("log_processor")
    app.extensions["log_processor"] = processor
    if start:
        processor.start()

    def runner_or_error(name: str | None) -> tuple[MonitorRunner | None, Any]:
        if name is None and len(processor.runners) == 1:
            return next(iter(processor.runners.values())), None
        if name is None:
            return None, None
        if name not in processor.runners:
            return None, (jsonify(error=f"monitor: unknown monitor {name!r}", field="monitor",
                                  monitors=sorted(processor.runners)), 404)
        return processor.runners[name], None

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(processor.exporter.registry), mimetype=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    def healthz():
        now = time.time()
        monitors = {}
        for name, runner in processor.runners.items():
            state = runner.snapshot()
            limit = processor.stale_after(runner.monitor)
            since = state.last_success if state.last_success is not None else processor.started_at
            age = now - since
            monitors[name] = {
                "status": state.status,
                "last_success_age_seconds": round(now - state.last_success, 3) if state.last_success else None,
                "stale": age > limit,
                "stale_after_seconds": limit,
                "consecutive_errors": state.consecutive_errors,
                "last_error": state.last_error,
            }
        all_stale = all(m["stale"] for m in monitors.values())
        return jsonify(status="stale" if all_stale else "ok", monitors=monitors), 503 if all_stale else 200

    @app.get("/report.json")
    def report_json():
        name = request.args.get("monitor")
        if name is not None:
            runner, error = runner_or_error(name)
            if error:
                return error
            return jsonify(_state_json(runner))
        return jsonify({n: _state_json(r) for n, r in processor.runners.items()})

    @app.get("/report")
    def report():
        runner, error = runner_or_error(request.args.get("monitor"))
        if error:
            return error
        if runner is None:
            items = "".join(f'<li><a href="?monitor={html.escape(n)}">{html.escape(n)}</a> — '
                            f'{html.escape(r.snapshot().status)}</li>' for n, r in processor.runners.items())
            return f"<!doctype html><title>Monitors</title><h1>Monitors</h1><ul>{items}</ul>"
        state = runner.snapshot()
        part = request.args.get("part")
        if part is not None:
            if part not in PARTS:
                return jsonify(error=f"part: must be one of {', '.join(PARTS)}, got {part!r}", field="part"), 400
            body = state.reports.html(part) if state.reports else None
            if body is None:
                return _no_report(runner.monitor.name, state.status, part)
            return Response(body, mimetype="text/html")
        if state.reports is None or not state.reports.has("drift"):
            return _no_report(runner.monitor.name, state.status, "drift")
        return Response(_wrapper_page(runner.monitor.name, state.summary, state.reports.has("quality"),
                                      state.reports.has("target"), runner.monitor.drift.drift_share),
                        mimetype="text/html")

    return app


def _state_json(runner: MonitorRunner) -> dict[str, Any]:
    state = runner.snapshot()
    return {"monitor": state.name, "status": state.status, "last_success": state.last_success,
            "last_evaluation": state.last_evaluation, "last_error": state.last_error,
            "latest": state.summary or None}


def _no_report(name: str, status: str, part: str) -> tuple[str, int]:
    reason = {"insufficient_data": "the window has too few rows for a verdict",
              "starting": "the first evaluation has not finished yet",
              "error": "the last evaluations failed (see /healthz)"}.get(status, "no report yet")
    if part == "quality":
        reason = "too few labelled rows in the window for quality metrics"
    if part == "target":
        reason = "too few labelled rows in the window for a target-drift verdict"
    return (f"<!doctype html><title>{html.escape(name)}</title><h1>{html.escape(name)}</h1>"
            f"<p>No {part} report: {html.escape(reason)}.</p>", 503)


TASK_TITLES = {"binary_classification": "Classification quality", "multiclass_classification":
               "Multi-class classification quality", "regression": "Regression quality"}


def _task_sections(summary: dict[str, Any]) -> str:
    """The task's quality against the reference's, and the probabilistic family, as one line each."""
    def line(title: str, values: dict[str, float], reference: dict[str, float]) -> str:
        shown = " · ".join(f"{html.escape(m)} {v:.3f}" + (f" (reference {reference[m]:.3f})" if m in reference else "")
                           for m, v in values.items())
        return f"<b>{html.escape(title)}</b>: {shown}" if values else ""
    task = summary.get("task", "binary_classification")
    parts = [line(TASK_TITLES.get(task, "Quality"), summary.get("quality") or {}, summary.get("reference_quality") or {}),
             line("Probabilistic quality", summary.get("probabilistic_quality") or {},
                  summary.get("reference_probabilistic_quality") or {})]
    return "<br>".join(p for p in parts if p)


def _wrapper_page(name: str, summary: dict[str, Any], has_quality: bool, has_target: bool, drift_share: float) -> str:
    """Window facts on top, then Evidently's drift report and (with enough labels) its quality and
    target-drift reports."""
    n = html.escape(name)
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
    task = summary.get("task", "binary_classification")
    sections = _task_sections(summary)
    if sections:
        facts += "<br>" + sections
    frames = f'<h2>Data and prediction drift</h2><iframe src="?monitor={n}&part=drift"></iframe>'
    frames += (f'<h2>{TASK_TITLES.get(task, "Quality")} (labelled rows)</h2>'
               f'<iframe src="?monitor={n}&part=quality"></iframe>'
               if has_quality else "<p>Quality: too few labelled rows in this window.</p>")
    if has_target:
        frames += f'<h2>Target drift (labelled rows)</h2><iframe src="?monitor={n}&part=target"></iframe>'

    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{n} — Evidently report</title>"
            "<style>body{font-family:sans-serif;margin:1em}iframe{width:100%;height:80vh;border:1px solid #ccc}</style>"
            f"</head><body><h1>{n}</h1><p>{facts}</p>{frames}</body></html>")
