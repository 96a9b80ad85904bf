"""Drift and quality per segment (evaluate/segments.py), the ranked root cause (root_cause.py,
importance.py), their config, parsing, gauges, summary and /report table (issue 34).

Fresh windows come from serving's generator with seeds other than the reference's; the false-alarm
and power figures over many windows are the benchmark's (`make bench ARGS=segments`), a few windows
here check the direction of each.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
from prometheus_client import generate_latest

from benchmarks import synthetic
from log_processor.columns import SCORE, UNKNOWN_SEGMENT, segment_column
from log_processor.evaluate import importance as imp
from log_processor.evaluate.drift_thresholds import fit_thresholds
from log_processor.evaluate.evaluation import evaluate
from log_processor.evaluate.reference import prepare_reference
from log_processor.evaluate.root_cause import rank_causes, worst_segments
from log_processor.evaluate.segments import (OTHER, benjamini_hochberg, evaluate_segments, split, tail_p_value)
from log_processor.export.metrics import Exporter
from log_processor.export.pages import segment_sections
from log_processor.export.summary import segment_fields
from log_processor.monitors import ConfigError, SegmentsConfig, load_monitors
from log_processor.read.parse import parse_page, source_fields
from tests.conftest import REPO_ROOT
from tests.test_log_processor_config import GOOD, write

CITY = "context.city"
MONITOR = dataclasses.replace(load_monitors(REPO_ROOT / "log_processor/monitors.yaml")[0], window_last=None,
                              estimation=None, segments=SegmentsConfig((CITY,), max_segments=20, min_rows=100))


@pytest.fixture(scope="module")
def reference():
    frame = synthetic.reference_frame(20000, seed=101)
    fitted = fit_thresholds(frame, {f.name: f.type for f in MONITOR.features}, SCORE, MONITOR.drift.alpha,
                            target=("target", "categorical"))
    ref = prepare_reference(frame, MONITOR, model_name="m", model_version="1", version="1", sha256="x")
    return dataclasses.replace(ref, drift_thresholds=fitted)


@pytest.fixture(scope="module")
def pool():
    """Unshifted requests the reference never saw (other seeds), drawn from by each window."""
    return synthetic.fresh_rows(24_000, 9).assign(target=lambda f: f["target"].astype(float))


def window(pool: pd.DataFrame, n: int, seed: int, cities: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = pool.iloc[np.sort(rng.choice(len(pool), n, replace=False))].reset_index(drop=True)
    rows[segment_column(CITY)] = np.array([f"city{i}" for i in rng.integers(0, cities, n)], dtype=object)
    return rows


def shifted(frame: pd.DataFrame, reference, city: str, feature: str = "conv_rate", sigmas: float = 0.5) -> pd.DataFrame:
    out = frame.copy()
    mask = out[segment_column(CITY)] == city
    out.loc[mask, feature] += sigmas * float(reference.frame[feature].std())
    return out


# --- the statistics are the whole-window path's ------------------------------------------------------------

def test_one_segment_holding_the_whole_window_gets_the_whole_windows_statistics_and_p_values(reference, pool):
    current = window(pool, 3000, 7, 1)
    ev = evaluate(reference, current, MONITOR)
    (segment,) = evaluate_segments(reference, current, MONITOR).segments
    tests = {t.column: t for t in segment.tests}
    for f in ev.feature_drift:
        assert tests[f.column].score == pytest.approx(f.score, rel=1e-9)
        assert tests[f.column].threshold == pytest.approx(f.threshold, rel=1e-9)
        assert tests[f.column].p_value == pytest.approx(f.p_value, rel=1e-9)
    assert tests[ev.prediction_drift.column].score == pytest.approx(ev.prediction_drift.score, rel=1e-9)
    assert tests[ev.target_drift.column].score == pytest.approx(ev.target_drift.score, rel=1e-9)
    assert tests["accuracy"].score == pytest.approx(ev.quality["accuracy"], rel=1e-9)


def test_the_tail_p_value_is_the_null_share_inside_the_draws_and_keeps_falling_beyond(reference):
    null = reference.drift_thresholds.features["conv_rate"]
    for n in (50, 300, 1000, 20_000):
        mid = null.threshold(n, 0.2)
        assert tail_p_value(null, n, mid) == pytest.approx(null.p_value(n, mid), rel=0.05)
    top = float(null.draws[-1][-1])
    far = [tail_p_value(null, 100_000, top * k) for k in (1.0001, 1.5, 2.0, 4.0)]
    assert far[0] <= 1 / 2001 + 1e-12 and all(a > b for a, b in zip(far, far[1:]))
    assert tail_p_value(null, 500, math.nan) == 1.0


def test_benjamini_hochberg_matches_the_step_up_rule():
    p = np.array([0.01, 0.04, 0.03, 0.005, 0.5])
    adjusted = benjamini_hochberg(p)
    # sorted 0.005, 0.01, 0.03, 0.04, 0.5 -> x m / rank = 0.025, 0.025, 0.05, 0.05, 0.5
    assert adjusted.tolist() == pytest.approx([0.025, 0.05, 0.05, 0.025, 0.5])
    assert (adjusted <= 0.04).tolist() == [True, False, False, True, False]


# --- false alarms and power, a few windows (the benchmark measures the rates) --------------------------------

def test_unshifted_windows_raise_no_segment_alert(reference, pool):
    for seed in range(30, 36):
        result = evaluate_segments(reference, window(pool, 10_000, seed, 20), MONITOR)
        assert result.evaluated == 20 and result.flagged == 0, [s.label for s in result.segments if s.flagged]


def test_a_half_sigma_shift_in_one_city_of_ten_percent_is_found_where_the_whole_window_sees_nothing(reference, pool):
    base = window(pool, 10_000, 41, 10)
    current = shifted(base, reference, "city3")
    ev = evaluate(reference, current, MONITOR)
    assert not ev.dataset_drift
    result = evaluate_segments(reference, current, MONITOR)
    assert [s.label for s in result.segments if s.flagged] == ["context.city=city3"]
    assert result.segments[0].drifted[0] == "conv_rate"
    causes = rank_causes(ev, result, {"conv_rate": 0.4, "acc_rate": 0.3, "avg_daily_trips": 0.3})
    assert causes[0].feature == "conv_rate" and "context.city=city3" in causes[0].where
    (worst,) = worst_segments(result, 5)
    assert worst.value == "city3" and 0.08 < worst.share < 0.12


def test_drift_times_importance_ranks_an_important_feature_above_a_further_drifted_one(reference, pool):
    current = shifted(shifted(window(pool, 10_000, 43, 10), reference, "city1", "acc_rate", 1.0), reference, "city1",
                      "conv_rate", 0.6)
    result = evaluate_segments(reference, current, MONITOR)
    by_drift = rank_causes(None, result, None)
    assert by_drift[0].feature == "acc_rate"          # moved further
    by_weight = rank_causes(None, result, {"conv_rate": 0.9, "acc_rate": 0.05, "avg_daily_trips": 0.05})
    assert [c.feature for c in by_weight][:2] == ["conv_rate", "acc_rate"]


def test_a_segment_whose_model_fails_is_flagged_for_quality(reference, pool):
    current = window(pool, 10_000, 44, 10)
    bad = current[segment_column(CITY)] == "city2"
    current.loc[bad, "target"] = 1.0 - current.loc[bad, "prediction"]          # every prediction wrong
    result = evaluate_segments(reference, current, MONITOR)
    worst = result.segments[0]
    assert worst.value == "city2" and worst.quality_degraded and worst.quality["accuracy"] == 0.0
    assert not any(s.quality_degraded for s in result.segments[1:])


# --- bad input -------------------------------------------------------------------------------------------------

def test_thousands_of_values_are_capped_and_pooled_and_the_gauges_stay_bounded(reference, pool):
    current = window(pool, 10_000, 45, 1)
    current[segment_column(CITY)] = np.array([f"v{i % 3000}" if i % 2 else "big" for i in range(len(current))],
                                             dtype=object)
    monitor = dataclasses.replace(MONITOR, segments=SegmentsConfig((CITY,), max_segments=5, min_rows=100))
    result = evaluate_segments(reference, current, monitor)
    distinct = current[segment_column(CITY)].nunique()
    assert distinct == 1501 and result.pooled == {CITY: distinct - 5}
    assert len(result.segments) == 6 and OTHER in {s.value for s in result.segments} and "big" in {s.value for s in result.segments}
    exporter = Exporter(["m"], segment_gauges=3)
    exporter.segments(monitor, result, ())
    text = generate_latest(exporter.registry).decode()
    assert text.count("mlmon_segment_rows{") == 3
    assert 'mlmon_segments{monitor="driver_ranker",state="pooled"} 1496.0' in text


def test_split_keeps_the_largest_values_ties_by_name():
    values = np.array(["b", "a", "a", "c", "b", "d"], dtype=object)
    kept, pooled = split(values, 2)
    assert kept.tolist() == ["b", "a", "a", OTHER, "b", OTHER] and pooled == 2


def test_a_missing_or_non_string_segment_value_is_unknown_and_never_rejects_the_row():
    monitor = dataclasses.replace(MONITOR, segments=SegmentsConfig((CITY, "model.version"), 20, 100))
    assert {CITY, "model.version"} <= set(source_fields(monitor))
    docs = []
    for i, city in enumerate(["Lyon", None, 7, "", ["x"], {"a": 1}, "Paris"]):
        doc = {"@timestamp": "2026-12-07T10:00:00.000Z", "event": {"id": f"e{i}", "dataset": "ml.prediction"},
               "model": {"name": "driver_ranker", "version": "v1"}, "request_id": f"r{i}",
               "features": {"conv_rate": 0.5, "acc_rate": 0.9, "avg_daily_trips": 100},
               "prediction": {"label": 1, "score": 0.7}, "context": {}}
        if city is not None:
            doc["context"]["city"] = city
        docs.append(doc)
    docs[3].pop("context")
    chunk = parse_page(docs, monitor)
    assert len(chunk.predictions) == 7 and len(chunk.rejects) == 0
    assert chunk.predictions[segment_column(CITY)].tolist() == ["Lyon", UNKNOWN_SEGMENT, UNKNOWN_SEGMENT,
                                                                UNKNOWN_SEGMENT, UNKNOWN_SEGMENT, UNKNOWN_SEGMENT, "Paris"]
    assert set(chunk.predictions[segment_column("model.version")]) == {"v1"}


def test_label_values_that_need_escaping_are_escaped_in_prometheus_and_html(reference, pool):
    nasty = 'Saint-"Étienne"\\\n<script>alert(1)</script>'
    current = window(pool, 3000, 46, 2)
    current.loc[current[segment_column(CITY)] == "city0", segment_column(CITY)] = nasty
    current = shifted(current, reference, nasty, "conv_rate", 2.0)
    result = evaluate_segments(reference, current, MONITOR)
    assert result.segments[0].value == nasty and result.segments[0].drift_detected
    exporter = Exporter(["m"])
    exporter.segments(MONITOR, result, rank_causes(None, result, None))
    text = generate_latest(exporter.registry).decode()
    assert 'segment="Saint-\\"Étienne\\"\\\\\\n<script>alert(1)</script>"' in text
    from prometheus_client.parser import text_string_to_metric_families
    values = {s.labels.get("segment") for f in text_string_to_metric_families(text) for s in f.samples}
    assert nasty in values
    page = segment_sections(segment_fields(result, rank_causes(None, result, None), None))
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


# --- the summary, the root cause without a model, the importance ----------------------------------------------

def test_the_summary_holds_every_segment_and_the_root_cause(reference, pool):
    current = shifted(window(pool, 10_000, 47, 10), reference, "city5")
    result = evaluate_segments(reference, current, MONITOR)
    doc = segment_fields(result, rank_causes(None, result, {"conv_rate": 0.5, "acc_rate": 0.3, "avg_daily_trips": 0.2}),
                         {"conv_rate": 0.5, "acc_rate": 0.3, "avg_daily_trips": 0.2})
    assert len(doc["segments"]["items"]) == 10 and doc["segments"]["method"] == "benjamini-hochberg"
    assert doc["root_cause"]["features"][0]["feature"] == "conv_rate"
    assert doc["root_cause"]["worst_segments"][0]["value"] == "city5"
    import json
    json.dumps(doc)      # the document store takes it


def test_no_segments_config_means_no_segment_evaluation(reference, pool):
    assert evaluate_segments(reference, window(pool, 500, 48, 2), dataclasses.replace(MONITOR, segments=None)) is None


def test_permutation_importance_finds_the_feature_the_model_uses():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=2000), "b": rng.normal(size=2000), "c": rng.normal(size=2000)})
    predict = lambda x: (3 * x[:, 0] + 0.3 * x[:, 1]).reshape(-1, 1)   # noqa: E731
    importance = imp.permutation_importance(predict, frame, ("a", "b", "c"), ("a", "b", "c", "d"))
    assert importance["a"] > 0.8 and importance["c"] == 0.0 and importance["d"] == 0.0
    assert sum(importance.values()) == pytest.approx(1.0)


def test_the_shipped_models_importance_is_computed_from_their_manifest():
    for monitor in load_monitors(REPO_ROOT / "log_processor/monitors.yaml"):
        predict, features, _sha = imp.model_of(monitor.reference.manifest)
        frame = pd.read_parquet(monitor.reference.parquet)
        importance = imp.permutation_importance(predict, frame, features, monitor.feature_names, max_rows=1000)
        assert set(importance) == set(monitor.feature_names) and min(importance.values()) > 0


def test_a_broken_manifest_is_a_clear_error(tmp_path):
    (tmp_path / "manifest.json").write_text('{"artifact": {"path": "nope.pkl", "sha256": "0"}, "features": []}')
    with pytest.raises(imp.ModelUnavailable, match="no model artifact"):
        imp.model_of(tmp_path / "manifest.json")


# --- config --------------------------------------------------------------------------------------------------

ALPHA = "    drift: {alpha: 0.01}\n"


def test_segments_config_loads_with_defaults(tmp_path):
    (m,) = load_monitors(write(tmp_path, GOOD + ALPHA + "    segments: {fields: [context.city, model.version]}\n"),
                         base_dir=tmp_path)
    assert m.segments == SegmentsConfig(("context.city", "model.version"), 20, 100, 0.05)


@pytest.mark.parametrize("text, expected", [
    ("    segments: {fields: [context.city]}\n", r"monitors.yaml:10: monitors\[0\]\.segments: needs drift.alpha"),
    (ALPHA + "    segments: {fields: []}\n", r"monitors.yaml:11: monitors\[0\]\.segments\.fields: must be a non-empty list"),
    (ALPHA + "    segments: {fields: [context.city], max_segments: 0}\n",
     r"monitors.yaml:11: monitors\[0\]\.segments\.max_segments: must be an integer in \[1, 200\], got 0"),
    (ALPHA + "    segments: {fields: [context.city], min_rows: 10}\n",
     r"monitors.yaml:11: monitors\[0\]\.segments\.min_rows: must be an integer >= 50"),
    (ALPHA + "    segments:\n      fields: [context.city, 'a b']\n",
     r"monitors.yaml:12: monitors\[0\]\.segments\.fields\[1\]: must be a dotted event field"),
    (ALPHA + "    segments:\n      fields: [context.city, context.city]\n",
     r"monitors.yaml:12: monitors\[0\]\.segments\.fields\[1\]: duplicate segment field"),
    (ALPHA + "    segments: {fields: [features.conv_rate]}\n",
     r"monitors.yaml:11: monitors\[0\]\.segments\.fields\[0\]: 'features.conv_rate' is a feature"),
    (ALPHA + "    segments: {fields: [context.city], top: 5}\n",
     r"monitors.yaml:11: monitors\[0\]\.segments\.top: unknown key \(allowed: fields, max_segments, min_rows"),
])
def test_each_segments_mistake_names_file_line_and_key(tmp_path, text, expected):
    with pytest.raises(ConfigError, match=expected):
        load_monitors(write(tmp_path, GOOD + text), base_dir=tmp_path)


# --- the messages: the root cause once per incident message, on every channel ------------------------------

def test_every_channel_s_message_carries_the_incident_s_root_cause(tmp_path):
    from tests.test_alerting_config import LINK_LABELS, pinned_tool, render_template
    amtool = pinned_tool("amtool")
    cause = "1. conv_rate (drift x importance 1.4, score 3.50x its threshold, importance 40%) · worst segments: context.city=Lyon (10% of the traffic)"
    alerts = [{"labels": {"alertname": "SegmentDrift", "monitor": "m1", "field": CITY, "segment": "Lyon",
                          "severity": "warning", **LINK_LABELS},
               "annotations": {"summary": "Segment context.city=Lyon of monitor m1 drifted", "root_cause": cause,
                               "features": "conv_rate", "drifted": "context.city=Lyon: conv_rate (3.50x its threshold)",
                               "dashboard": "ml-drift", "description": "d"}},
              {"labels": {"alertname": "PredictionDrift", "monitor": "m1", "severity": "warning", **LINK_LABELS},
               "annotations": {"summary": "Prediction drift", "root_cause": "", "dashboard": "ml-drift", "description": "d"}}]
    email = render_template(amtool, tmp_path, "mlmon.email.text", alerts)
    assert email.count("Root cause: 1. conv_rate") == 1
    slack = render_template(amtool, tmp_path, "mlmon.slack.text", alerts)
    assert slack.count("*Root cause:* 1. conv_rate") == 1 and "context.city=Lyon (10% of the traffic)" in slack
    telegram = render_template(amtool, tmp_path, "mlmon.telegram.message", alerts)
    assert telegram.count("<b>Root cause:</b> 1. conv_rate") == 1
    quiet = [dict(a, annotations={**a["annotations"], "root_cause": ""}) for a in alerts]
    assert "Root cause" not in render_template(amtool, tmp_path, "mlmon.email.text", quiet)


def test_a_monitor_with_estimation_gets_each_segment_s_estimated_accuracy_beside_the_realized(reference, pool):
    from log_processor.columns import PREDICTION, TARGET
    from log_processor.evaluate import estimation as est
    shipped = load_monitors(REPO_ROOT / "log_processor/monitors.yaml")[0]
    monitor = dataclasses.replace(MONITOR, estimation=shipped.estimation)
    labelled = reference.frame[reference.frame[TARGET].notna()]
    calibration = est.fit_calibration(labelled[SCORE].to_numpy(dtype=float), labelled[TARGET].to_numpy(dtype=int),
                                      labelled[PREDICTION].to_numpy(dtype=int), monitor.estimation.calibration)
    result = evaluate_segments(dataclasses.replace(reference, score_calibration=calibration),
                               window(pool, 6000, 49, 3), monitor)
    for segment in result.segments:
        assert abs(segment.estimated["accuracy"] - segment.quality["accuracy"]) < 0.05
    assert evaluate_segments(reference, window(pool, 600, 49, 3), MONITOR).segments[0].estimated == {}


def test_the_number_of_labelled_segments_is_a_setting_with_bounds():
    from log_processor.settings import ProcessorSettings
    assert ProcessorSettings.from_env({}).segment_gauges == 10
    assert ProcessorSettings.from_env({"LOGPROC_SEGMENT_GAUGES": "3"}).segment_gauges == 3
    for bad in ("many", "-1", "201"):
        with pytest.raises(ValueError, match=f"^LOGPROC_SEGMENT_GAUGES='{bad}'"):
            ProcessorSettings.from_env({"LOGPROC_SEGMENT_GAUGES": bad})
