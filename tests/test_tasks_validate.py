"""Reading each task's event fields: typed columns, and every wrong document counted by its reason
(parse.py), one page at a time; what a wrong document does to the rest of the page: nothing."""
from __future__ import annotations

import numpy as np

from log_processor.monitors import load_monitors
from log_processor.columns import PREDICTION, TARGET, score_column
from log_processor.read.parse import parse_page, source_fields
from tests import task_data as data


def monitor(tmp_path, text):
    (m,) = load_monitors(data.write_monitor(tmp_path, text, data.regression_rows(10, seed=0)))
    return m


def prediction(i, prediction, model):
    return {"@timestamp": "2026-12-01T10:00:00.000Z", "event": {"id": f"p{i}", "dataset": "ml.prediction"},
            "model": {"name": model}, "request_id": f"r{i}",
            "features": {"conv_rate": 0.5, "acc_rate": 0.9, "avg_daily_trips": 10}, "prediction": prediction}


def feedback(i, target, model):
    return {"@timestamp": "2026-12-01T10:00:01.000Z", "event": {"id": f"f{i}", "dataset": "ml.feedback"},
            "model": {"name": model}, "request_id": f"r{i}", "target": target}


def test_regression_fields_and_the_target_not_finite_reason(tmp_path):
    m = monitor(tmp_path, data.REGRESSION_YAML)
    assert {"prediction.value", "target.duration_minutes"} <= set(source_fields(m))
    assert "prediction.score" not in source_fields(m) and None not in source_fields(m)
    docs = [prediction(0, {"value": 12.5}, "trip_duration"), prediction(1, {"value": "x"}, "trip_duration"),
            prediction(2, {}, "trip_duration"),
            feedback(0, {"duration_minutes": 14.0}, "trip_duration"),
            feedback(1, {"duration_minutes": "12.5"}, "trip_duration"),
            feedback(2, {"duration_minutes": float("nan")}, "trip_duration"),
            feedback(3, {"duration_minutes": float("inf")}, "trip_duration"),
            feedback(4, {}, "trip_duration"), feedback(5, {"duration_minutes": 0}, "trip_duration")]
    chunk = parse_page(docs, m)
    assert chunk.predictions[PREDICTION].tolist() == [12.5]
    assert chunk.feedback[TARGET].tolist() == [14.0, 0.0] and chunk.feedback[TARGET].dtype == float
    assert chunk.rejected == {"not_a_number": 1, "missing_field": 2, "target_not_finite": 3}


def test_multiclass_fields_and_the_class_unknown_and_scores_length_reasons(tmp_path):
    m = monitor(tmp_path, data.MULTICLASS_YAML)
    assert {"prediction.class", "prediction.class_scores", "target.class"} <= set(source_fields(m))
    ok = [0.2, 0.5, 0.3]
    docs = [prediction(0, {"class": "medium", "class_scores": ok}, "trip_type"),
            prediction(1, {"class": "huge", "class_scores": ok}, "trip_type"),
            prediction(2, {"class": "short", "class_scores": [0.5, 0.5]}, "trip_type"),
            prediction(3, {"class": "short", "class_scores": "0.5,0.5,0"}, "trip_type"),
            prediction(4, {"class": "short", "class_scores": [0.5, "a", 0.5]}, "trip_type"),
            prediction(5, {"class": "long", "class_scores": [0.5, float("nan"), 0.5]}, "trip_type"),
            prediction(6, {"class_scores": ok}, "trip_type"),
            prediction(7, {"class": "long", "class_scores": [0.1, 0.1, 0.8]}, "trip_type"),
            feedback(0, {"class": "long"}, "trip_type"), feedback(1, {"class": 3}, "trip_type"),
            feedback(2, {"class": ["long"]}, "trip_type"), feedback(3, {}, "trip_type")]
    chunk = parse_page(docs, m)
    assert chunk.predictions[PREDICTION].tolist() == ["medium", "long"]
    assert np.allclose(chunk.predictions[[score_column(c) for c in data.CLASSES]].to_numpy(), [ok, [0.1, 0.1, 0.8]])
    assert chunk.feedback[TARGET].tolist() == ["long"]
    assert chunk.rejected == {"class_unknown": 1 + 2, "scores_length": 2, "not_a_number": 1, "non_finite": 1,
                              "missing_field": 1 + 1}
    own(chunk, m)


def own(chunk, m):
    """Every row holds one of the monitor's own class strings, not a copy decoded per event."""
    for column in (chunk.predictions[PREDICTION], chunk.feedback[TARGET]):
        assert len(column) and all(any(v is c for c in m.classes) for v in column)


def test_a_page_of_known_classes_holds_the_monitors_own_strings(tmp_path):
    m = monitor(tmp_path, data.MULTICLASS_YAML)
    decoded = [c.encode().decode() for c in ("long", "short", "long")]      # equal to the classes, other objects
    assert not any(d is c for d in decoded for c in m.classes)
    docs = [prediction(i, {"class": c, "class_scores": (0.1, 0.1, 0.8)}, "trip_type") for i, c in enumerate(decoded)]
    chunk = parse_page(docs + [feedback(i, {"class": c}, "trip_type") for i, c in enumerate(decoded)], m)
    assert chunk.predictions[PREDICTION].tolist() == chunk.feedback[TARGET].tolist() == ["long", "short", "long"]
    assert not chunk.rejected
    own(chunk, m)
