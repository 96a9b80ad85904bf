"""Request bodies -> typed requests, or a RequestError naming the field. Pure functions, no Flask."""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
# Driver ids are the Feast entity key, a signed 64-bit integer: a larger one would fail inside the
# store and look like an outage (5xx) instead of the client's mistake it is.
DRIVER_ID_MIN, DRIVER_ID_MAX = -(2**63), 2**63 - 1
# The rider's city, a request-level context logged as the prediction's `context.city` (a segment
# field: docs/log-processor.md#segments). Bounded so that a client cannot bloat every event.
CITY_MAX_CHARS = 64


class RequestError(Exception):
    """A rejected request: HTTP status, a stable `type`, the offending `field` and a message."""

    def __init__(self, status: int, error_type: str, field: str, message: str,
                 request_id: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.status, self.error_type, self.field, self.message = status, error_type, field, message
        self.request_id = request_id
        self.details = details

    def body(self) -> dict[str, Any]:
        error = {"type": self.error_type, "field": self.field, "message": self.message, **self.details}
        body: dict[str, Any] = {"error": error}
        if self.request_id:
            body["request_id"] = self.request_id
        return body


@dataclass(frozen=True)
class PredictRequest:
    request_id: str | None
    driver_ids: list[int]
    city: str | None = None


@dataclass(frozen=True)
class FeedbackRequest:
    request_id: str
    trip_completed: int


@dataclass(frozen=True)
class DurationRequest:
    request_id: str | None
    driver_id: int


@dataclass(frozen=True)
class DurationFeedback:
    request_id: str
    duration_minutes: float


def parse_json_object(content_type: str | None, raw: bytes, *, constants: bool = False) -> dict[str, Any]:
    """The body as a JSON object; 415 for another media type, 400 for bad JSON or a non-object.

    NaN/Infinity are not JSON and are refused as malformed, unless `constants`: then they parse as
    floats so that the field check can refuse them by name (a measured value's endpoint does this)."""
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise RequestError(415, "unsupported_media_type", "Content-Type",
                           f"Content-Type must be application/json, got {content_type or 'nothing'!r}")
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=float if constants else _reject_constant)
    except UnicodeDecodeError as exc:
        raise RequestError(400, "malformed_json", "body", f"body is not UTF-8: {exc.reason}") from None
    except ValueError as exc:
        raise RequestError(400, "malformed_json", "body", f"body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise RequestError(400, "invalid_body", "body", f"body must be a JSON object, got {_kind(body)}")
    return body


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
            dict: "object"}.get(type(value), type(value).__name__)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_fields(body: dict[str, Any], allowed: tuple[str, ...], request_id: str | None) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise RequestError(400, "unknown_field", unknown[0],
                           f"unknown field(s) {unknown}; allowed: {list(allowed)}", request_id)


def _request_id(body: dict[str, Any], required: bool) -> str | None:
    value = body.get("request_id")
    if value is None:
        if required:
            raise RequestError(400, "missing_field", "request_id", "request_id is required")
        return None
    if not isinstance(value, str):
        raise RequestError(400, "invalid_type", "request_id", f"request_id must be a string, got {_kind(value)}")
    if not REQUEST_ID.match(value):
        raise RequestError(400, "invalid_value", "request_id",
                           "request_id must be 1-128 characters of A-Z a-z 0-9 . _ : -")
    return value


def _driver_id(value: Any, field: str, request_id: str | None) -> int:
    """A Feast entity key: an integer (not a bool, not 1.0) in the signed 64-bit range."""
    if not _is_int(value):
        raise RequestError(400, "invalid_type", field, f"{field} must be an integer, got {_kind(value)}", request_id)
    if not DRIVER_ID_MIN <= value <= DRIVER_ID_MAX:
        raise RequestError(400, "out_of_range", field,
                           f"{field} is out of range: driver ids are 64-bit integers "
                           f"({DRIVER_ID_MIN}..{DRIVER_ID_MAX})", request_id)
    return value


def parse_predict(body: dict[str, Any], max_candidates: int) -> PredictRequest:
    request_id = _request_id(body, required=False)
    _check_fields(body, ("request_id", "driver_ids", "city"), request_id)
    if "driver_ids" not in body:
        raise RequestError(400, "missing_field", "driver_ids", "driver_ids is required", request_id)
    ids = body["driver_ids"]
    if not isinstance(ids, list):
        raise RequestError(400, "invalid_type", "driver_ids",
                           f"driver_ids must be an array of integers, got {_kind(ids)}", request_id)
    if not ids:
        raise RequestError(400, "empty_list", "driver_ids", "driver_ids must not be empty", request_id)
    if len(ids) > max_candidates:
        raise RequestError(400, "too_many_items", "driver_ids",
                           f"driver_ids has {len(ids)} items; at most {max_candidates} allowed", request_id)
    for index, value in enumerate(ids):
        _driver_id(value, f"driver_ids[{index}]", request_id)
    if len(set(ids)) != len(ids):
        raise RequestError(400, "duplicate_items", "driver_ids", "driver_ids contains duplicates", request_id)
    return PredictRequest(request_id, list(ids), _city(body.get("city"), request_id))


def _city(value: Any, request_id: str | None) -> str | None:
    """Optional `city`: a non-empty string of at most CITY_MAX_CHARS characters; absent or null -> None."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise RequestError(400, "invalid_type", "city", f"city must be a string, got {_kind(value)}", request_id)
    if not value.strip():
        raise RequestError(400, "invalid_value", "city", "city must not be empty", request_id)
    if len(value) > CITY_MAX_CHARS:
        raise RequestError(400, "invalid_value", "city",
                           f"city has {len(value)} characters; at most {CITY_MAX_CHARS} allowed", request_id)
    return value


def parse_feedback(body: dict[str, Any]) -> FeedbackRequest:
    request_id = _request_id(body, required=True)
    _check_fields(body, ("request_id", "trip_completed"), request_id)
    if "trip_completed" not in body:
        raise RequestError(400, "missing_field", "trip_completed", "trip_completed is required", request_id)
    value = body["trip_completed"]
    if not _is_int(value):
        raise RequestError(400, "invalid_type", "trip_completed",
                           f"trip_completed must be the integer 0 or 1, got {_kind(value)}", request_id)
    if value not in (0, 1):
        raise RequestError(400, "invalid_value", "trip_completed",
                           f"trip_completed must be 0 or 1, got {value}", request_id)
    return FeedbackRequest(request_id, value)


def parse_predict_duration(body: dict[str, Any]) -> DurationRequest:
    """POST /predict/duration: `driver_id` (required integer), `request_id` (optional)."""
    request_id = _request_id(body, required=False)
    _check_fields(body, ("request_id", "driver_id"), request_id)
    if "driver_id" not in body:
        raise RequestError(400, "missing_field", "driver_id", "driver_id is required", request_id)
    return DurationRequest(request_id, _driver_id(body["driver_id"], "driver_id", request_id))


def parse_feedback_duration(body: dict[str, Any]) -> DurationFeedback:
    """POST /feedback/duration: `request_id` and the realized `duration_minutes`, a finite number >= 0.

    The body is parsed with NaN/Infinity allowed (parse_json_object(constants=True)) so that they,
    and 1e400 (which Python reads as inf), are refused here by the field's name."""
    request_id = _request_id(body, required=True)
    _check_fields(body, ("request_id", "duration_minutes"), request_id)
    if "duration_minutes" not in body:
        raise RequestError(400, "missing_field", "duration_minutes", "duration_minutes is required", request_id)
    value = body["duration_minutes"]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestError(400, "invalid_type", "duration_minutes",
                           f"duration_minutes must be a number of minutes, got {_kind(value)}", request_id)
    try:
        minutes = float(value)
    except OverflowError:  # an integer literal beyond any float
        minutes = math.inf
    if not math.isfinite(minutes):
        raise RequestError(400, "invalid_value", "duration_minutes",
                           f"duration_minutes must be a finite number, got {value!r:.40}", request_id)
    if minutes < 0:
        raise RequestError(400, "invalid_value", "duration_minutes",
                           f"duration_minutes must be >= 0, got {minutes:g}", request_id)
    return DurationFeedback(request_id, minutes)
