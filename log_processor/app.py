"""The processor's web face (Flask factory): /metrics, /healthz, /report, /report.json.

Requests only read the state the monitor threads left behind; no request triggers an evaluation.
The pages themselves are export/pages.py's; this module only wires them to the routes.
"""
from __future__ import annotations

import html
import time
from typing import Any

from flask import Flask, Response, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from log_processor.export.pages import monitor_page, no_report_page
from log_processor.export.reports import PARTS
from log_processor.processor import Processor
from log_processor.runner import MonitorRunner
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
            if state.status == "no_data":   # blind, not stuck: EventsNotArriving says so (docs/alerts.md)
                since = state.last_evaluation or since
            age = now - since
            monitors[name] = {
                "status": state.status,
                "last_success_age_seconds": round(now - state.last_success, 3) if state.last_success else None,
                "stale": age > limit,
                "stale_after_seconds": limit,
                "consecutive_errors": state.consecutive_errors,
                "last_error": state.last_error,
            }
        all_stale = bool(monitors) and all(m["stale"] for m in monitors.values())   # a replica may own none
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
                return no_report_page(runner.monitor.name, state.status, part)
            return Response(body, mimetype="text/html")
        if state.reports is None or not state.reports.has("drift"):
            return no_report_page(runner.monitor.name, state.status, "drift")
        return Response(monitor_page(runner.monitor, state.summary, state.reports.has("quality"),
                                     state.reports.has("target")), mimetype="text/html")

    return app


def _state_json(runner: MonitorRunner) -> dict[str, Any]:
    state = runner.snapshot()
    return {"monitor": state.name, "status": state.status, "last_success": state.last_success,
            "last_evaluation": state.last_evaluation, "last_error": state.last_error,
            "latest": state.summary or None}
