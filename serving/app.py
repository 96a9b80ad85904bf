"""The serving API (Flask application factory): /predict, /feedback, /healthz, /metrics, and the
second model's /predict/duration and /feedback/duration (trip_duration, a regressor on the same features).

Every request is counted and timed; every rejected one gets a 4xx JSON body naming the field and
emits an ml.request_error event. Event sinks never block or fail a request (event_sinks.py).
"""
from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any, Sequence

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from common import schema
from serving.event_sinks import EventLog, Sink, build_sinks
from serving.features import OnlineFeatures
from serving.metrics import ServingMetrics, endpoint_label
from serving.model import Model, RegressionModel, load_model, load_regression_model
from serving.settings import ServingSettings
from serving.validation import (RequestError, parse_feedback, parse_feedback_duration, parse_json_object,
                                parse_predict, parse_predict_duration)

log = logging.getLogger("serving")
access_log = logging.getLogger("serving.access")

# Werkzeug/Flask HTTP errors -> (error type, field) for the JSON body.
_HTTP_ERRORS = {
    404: ("not_found", "path"),
    405: ("method_not_allowed", "method"),
    413: ("body_too_large", "body"),
}


@dataclass(frozen=True)
class Services:
    settings: ServingSettings
    model: Model
    features: OnlineFeatures
    metrics: ServingMetrics
    events: EventLog
    duration_model: RegressionModel


def services() -> Services:
    from flask import current_app

    return current_app.extensions["serving"]


def create_app(settings: ServingSettings | None = None, *, model: Model | None = None,
               features: OnlineFeatures | None = None, sinks: Sequence[Sink] | None = None,
               duration_model: RegressionModel | None = None, process_tree: bool = False) -> Flask:
    """Build the app; models, features and sinks default to what `settings` names (var/ by default).

    `process_tree`: built in a gunicorn worker (serving/__main__.py), so /metrics reports the process
    series of the master and every worker; otherwise of this process alone."""
    settings = settings or ServingSettings.from_env()
    model = model or load_model(settings.path("model"), settings.decision_threshold)
    duration_model = duration_model or load_regression_model(settings.path("duration_model"))
    features = features or OnlineFeatures.open(settings.path("feast"))
    metrics = ServingMetrics(multiprocess_dir=settings.metrics_dir, process_tree=process_tree)
    metrics.model_info.labels(model.name, model.version).set(1)
    metrics.model_info.labels(duration_model.name, duration_model.version).set(1)
    model.score([{name: 1.0 for name in model.features}])  # warm-up, off the request path
    duration_model.predict([{name: 1.0 for name in duration_model.features}])
    events = EventLog(build_sinks(settings) if sinks is None else sinks, metrics)

    app = Flask("serving")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.extensions["serving"] = Services(settings, model, features, metrics, events, duration_model)

    app.before_request(_start_timer)
    app.after_request(_observe)
    app.register_error_handler(RequestError, _rejected)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _internal_error)

    app.add_url_rule("/predict", "predict", predict, methods=["POST"])
    app.add_url_rule("/feedback", "feedback", feedback, methods=["POST"])
    app.add_url_rule("/predict/duration", "predict_duration", predict_duration, methods=["POST"])
    app.add_url_rule("/feedback/duration", "feedback_duration", feedback_duration, methods=["POST"])
    app.add_url_rule("/healthz", "healthz", healthz, methods=["GET"])
    app.add_url_rule("/metrics", "metrics", metrics_view, methods=["GET"])
    log.info("serving ready", extra={"fields": {
        "model": {"name": model.name, "version": model.version},
        "models": [{"name": m.name, "version": m.version} for m in (model, duration_model)],
        "event_sinks": [sink.name for sink in events.sinks]}})
    return app


def _start_timer() -> None:
    g.started = time.perf_counter()


def _observe(response: Response) -> Response:
    svc = services()
    seconds = time.perf_counter() - g.get("started", time.perf_counter())
    endpoint = endpoint_label(request.endpoint)
    svc.metrics.observe_request(endpoint, response.status_code, seconds)
    if svc.settings.access_log:
        access_log.info("%s %s %s", request.method, request.path, response.status_code, extra={"fields": {
            "http": {"request": {"method": request.method}, "response": {"status_code": response.status_code}},
            "url": {"path": request.path},
            "event": {"dataset": "serving.access", "duration": int(seconds * 1e9)},
            "request_id": g.get("request_id"),
        }})
    return response


def _emit_error(svc: Services, error_type: str, message: str, request_id: str | None) -> None:
    """An ml.request_error event, attributed to the model of the endpoint (the ranker for any other path)."""
    model = svc.duration_model if request.endpoint in ("predict_duration", "feedback_duration") else svc.model
    svc.events.emit(schema.request_error_event(
        model_name=model.name, model_version=model.version, request_id=request_id,
        error_type=error_type, message=message))


def _rejected(error: RequestError):
    svc = services()
    request_id = error.request_id or g.get("request_id")
    error.request_id = request_id
    _emit_error(svc, error.error_type, f"{error.field}: {error.message}", request_id)
    return jsonify(error.body()), error.status


def _http_error(error: HTTPException):
    error_type, field = _HTTP_ERRORS.get(error.code or 400, ("bad_request", "request"))
    message = error.description or error.name
    if error.code == 413:
        message = f"body exceeds {services().settings.max_body_bytes} bytes"
    elif error.code == 405:
        message = f"{request.method} is not allowed on {request.path}"
    elif error.code == 404:
        message = f"no such endpoint: {request.path}"
    return _rejected(RequestError(error.code or 400, error_type, field, message))


def _internal_error(error: Exception):
    svc = services()
    log.exception("unhandled error on %s", request.path)
    _emit_error(svc, "internal_error", f"{type(error).__name__}: {error}", g.get("request_id"))
    return jsonify({"error": {"type": "internal_error", "field": None,
                              "message": "internal error; see the service log"}}), 500


def _json_body(constants: bool = False) -> dict[str, Any]:
    return parse_json_object(request.content_type, request.get_data(cache=False), constants=constants)


def _online_features(svc: Services, driver_ids: list[int], field: str, request_id: str):
    """Feast rows for the ids; 503 when the store fails, 422 naming the ids it does not know."""
    try:
        found = svc.features.get(driver_ids)
    except Exception as exc:
        log.exception("online feature store failed")
        raise RequestError(503, "feature_store_unavailable", field,
                           f"online feature store failed: {type(exc).__name__}", request_id) from exc
    if found.missing:
        raise RequestError(422, "unknown_driver", field,
                           f"no online features for driver id(s) {found.missing}", request_id,
                           unknown_driver_ids=found.missing)
    return found


def predict():
    svc = services()
    started = g.started
    body = _json_body()
    parsed = parse_predict(body, svc.settings.max_candidates)
    request_id = parsed.request_id or uuid.uuid4().hex
    g.request_id = request_id
    found = _online_features(svc, parsed.driver_ids, "driver_ids", request_id)
    scores = svc.model.score(found.rows)
    best = int(scores.argmax())
    score = float(scores[best])
    label = int(svc.model.label([score])[0])
    latency_ms = (time.perf_counter() - started) * 1000.0
    svc.events.emit(schema.prediction_event(
        model_name=svc.model.name, model_version=svc.model.version, request_id=request_id,
        features=found.rows[best], driver_id=found.driver_ids[best], score=score, label=label,
        latency_ms=latency_ms, city=parsed.city))
    svc.metrics.predictions.labels(svc.model.version, str(label)).inc()
    svc.metrics.prediction_served(svc.model.name, svc.model.version)
    return jsonify({"request_id": request_id, "best_driver_id": found.driver_ids[best],
                    "score": round(score, 6), "model_version": svc.model.version})


def feedback():
    svc = services()
    parsed = parse_feedback(_json_body())
    g.request_id = parsed.request_id
    svc.events.emit(schema.feedback_event(
        model_name=svc.model.name, model_version=svc.model.version, request_id=parsed.request_id,
        trip_completed=parsed.trip_completed))
    return jsonify({"request_id": parsed.request_id, "status": "accepted"}), 202


def predict_duration():
    """trip_duration: the predicted duration in minutes of a trip by one driver, from its Feast features."""
    svc = services()
    started = g.started
    parsed = parse_predict_duration(_json_body())
    request_id = parsed.request_id or uuid.uuid4().hex
    g.request_id = request_id
    found = _online_features(svc, [parsed.driver_id], "driver_id", request_id)
    model = svc.duration_model
    minutes = float(model.predict(found.rows)[0])
    latency_ms = (time.perf_counter() - started) * 1000.0
    svc.events.emit(schema.regression_prediction_event(
        model_name=model.name, model_version=model.version, request_id=request_id,
        features=found.rows[0], driver_id=parsed.driver_id, value=minutes, latency_ms=latency_ms))
    svc.metrics.prediction_served(model.name, model.version)
    svc.metrics.predicted_minutes.labels(model.version).observe(minutes)
    return jsonify({"request_id": request_id, "driver_id": parsed.driver_id,
                    "duration_minutes": round(minutes, 4), "model_version": model.version})


def feedback_duration():
    """The realized duration of a predicted trip, late; NaN/Infinity reach the field check (named 400)."""
    svc = services()
    parsed = parse_feedback_duration(_json_body(constants=True))
    g.request_id = parsed.request_id
    model = svc.duration_model
    svc.events.emit(schema.regression_feedback_event(
        model_name=model.name, model_version=model.version, request_id=parsed.request_id,
        duration_minutes=parsed.duration_minutes))
    return jsonify({"request_id": parsed.request_id, "status": "accepted"}), 202


def healthz():
    svc = services()
    return jsonify({"status": "ok", "model": {"name": svc.model.name, "version": svc.model.version},
                    "models": [{"name": m.name, "version": m.version} for m in (svc.model, svc.duration_model)],
                    "event_sinks": [sink.name for sink in svc.events.sinks]})


def metrics_view():
    from prometheus_client import CONTENT_TYPE_LATEST

    return Response(services().metrics.render(), content_type=CONTENT_TYPE_LATEST)
