"""The demo's one-city phase (demo/city.py): its traffic, its reading of /metrics and its checks (pure).

The phase itself runs in tests/test_demo_e2e.py (`python -m demo --once`, both stores)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from demo.city import FIELD, CityStory, first_cause
from demo.report import CHANNELS, PhaseResult, incident_rule_failures, monitor_table, story_failures
from demo.verdicts import Verdict, parse_verdict
from log_processor.monitors import load_monitors
from serving import data
from tests.conftest import REPO_ROOT

RANKER, DURATION = load_monitors(REPO_ROOT / "log_processor/monitors.yaml")
MONITORS = (RANKER, DURATION)
STORY = CityStory.shipped(seed=45)
SEGMENT = f"{FIELD}={STORY.city}"


@pytest.fixture(scope="module")
def stats():
    return data.generate_driver_stats()


def test_the_city_drivers_are_the_normal_twins_with_one_feature_shifted(stats):
    latest = data.latest_features(stats)
    normal, city = latest.loc[data.driver_ids("normal")], latest.loc[data.driver_ids("city")]
    shifted = str(data.CITY_DRIFT["feature"])
    for name in data.FEATURE_COLUMNS:
        moved = city[name].to_numpy() - normal[name].to_numpy()
        if name == shifted:      # clipped at the feature's range only: every driver moves by the shift
            assert np.mean(np.isclose(moved, data.CITY_DRIFT["shift"])) > 0.99
        else:
            assert (moved == 0).all(), name
    # the normal and drift populations are what they were before the city drivers joined
    assert set(stats["driver_id"]) == {*data.driver_ids("normal"), *data.driver_ids("drift"), *data.driver_ids("city")}
    with pytest.raises(ValueError, match="population"):
        data.driver_ids("suburb")


def test_city_traffic_sends_the_city_its_share_to_city_drivers_and_leaves_the_rest_normal(stats):
    traffic = data.generate_city_traffic(4000, seed=9, driver_stats=stats)
    assert list(traffic.columns) == ["driver_ids", "outcomes", "city"] and len(traffic) == 4000
    in_city = (traffic["city"] == STORY.city).to_numpy()
    assert in_city.sum() == round(STORY.share * 4000)           # the story's share, exactly
    assert set(traffic["city"]) == set(data.CITIES)
    city_ids, normal_ids = set(data.driver_ids("city")), set(data.driver_ids("normal"))
    assert all(set(ids) <= city_ids for ids in traffic["driver_ids"][in_city])
    assert all(set(ids) <= normal_ids for ids in traffic["driver_ids"][~in_city])
    # every other city's requests are generate_traffic("normal")'s of the same seed, unchanged
    normal = data.generate_traffic("normal", 4000, seed=9, driver_stats=stats)
    assert list(traffic["driver_ids"][~in_city]) == list(normal["driver_ids"][~in_city])
    pd.testing.assert_frame_equal(traffic, data.generate_city_traffic(4000, seed=9, driver_stats=stats))
    assert data.generate_city_traffic(0, seed=9, driver_stats=stats).empty
    with pytest.raises(ValueError, match="n_requests"):
        data.generate_city_traffic(-1, seed=9)


def test_the_other_cities_keep_their_shares_among_themselves():
    cities = pd.Series(data.city_phase_cities(20_000, seed=3))
    others = cities[cities != STORY.city].value_counts(normalize=True)
    total = sum(v for name, v in data.CITIES.items() if name != STORY.city)
    for name, share in data.CITIES.items():
        if name != STORY.city:
            assert others[name] == pytest.approx(share / total, abs=0.01), name


SEGMENT_METRICS = """\
# TYPE mlmon_verdict_available gauge
mlmon_verdict_available{monitor="driver_ranker"} 1.0
# TYPE mlmon_dataset_drift gauge
mlmon_dataset_drift{monitor="driver_ranker"} 0.0
# TYPE mlmon_segment_drift_detected gauge
mlmon_segment_drift_detected{field="context.city",monitor="driver_ranker",segment="Springfield"} 1.0
mlmon_segment_drift_detected{field="context.city",monitor="driver_ranker",segment="Ogdenville"} 0.0
# TYPE mlmon_segment_quality_degraded gauge
mlmon_segment_quality_degraded{field="context.city",monitor="driver_ranker",segment="Brockway"} 1.0
# TYPE mlmon_segment_drifted_column gauge
mlmon_segment_drifted_column{column="prediction_score",field="context.city",monitor="driver_ranker",segment="Springfield"} 1.4
mlmon_segment_drifted_column{column="conv_rate",field="context.city",monitor="driver_ranker",segment="Springfield"} 2.1
# TYPE mlmon_root_cause gauge
mlmon_root_cause{feature="acc_rate",monitor="driver_ranker",rank="2"} 0.3
mlmon_root_cause{feature="conv_rate",monitor="driver_ranker",rank="1"} 0.9
"""


def test_parse_verdict_reads_flagged_segments_and_the_ranked_root_cause():
    v = parse_verdict(SEGMENT_METRICS, "driver_ranker")
    assert v.flagged_segments == {"context.city=Brockway": (), "context.city=Springfield": ("conv_rate", "prediction_score")}
    assert v.root_cause == ("conv_rate", "acc_rate")
    assert parse_verdict(SEGMENT_METRICS, "trip_duration").flagged_segments == {}


HELD = Verdict("driver_ranker", available=True, dataset_drift=False,
               flagged_segments={SEGMENT: ("conv_rate", "prediction_score")}, root_cause=("conv_rate",))
ROOT = "Root cause: 1. conv_rate (drift x importance 0.962, score 2.35x its threshold, importance 41%)"


def city_result(verdict: Verdict = HELD, *, alerts=(("SegmentDrift", "driver_ranker"),), text: str | None = None,
                emails=("[FIRING:1] SegmentDrift monitor=driver_ranker",)) -> PhaseResult:
    said = text if text is not None else f"SegmentDrift {FIELD}={STORY.city} of monitor driver_ranker\n{ROOT}"
    texts = [(c, "driver_ranker", "firing", said) for c in CHANNELS]
    return PhaseResult("city", {}, {"driver_ranker": verdict}, alerts=list(alerts), emails=list(emails),
                       messages=[t[:3] for t in texts], texts=texts)


def test_the_city_phase_holds_when_segment_root_cause_and_every_message_agree():
    assert STORY.failures(city_result(), MONITORS, CHANNELS) == []
    assert STORY.failures(city_result(alerts=()), MONITORS, ()) == []          # without alerting: verdicts only


@pytest.mark.parametrize("change, expected", [
    ({"verdict": Verdict("driver_ranker")}, "driver_ranker: city phase: the log processor gave no verdict"),
    ({"verdict": dataclasses.replace(HELD, dataset_drift=True, drifted_features=("conv_rate", "acc_rate"))},
     "the whole window reported dataset drift (conv_rate, acc_rate); only Springfield was shifted"),
    ({"verdict": dataclasses.replace(HELD, flagged_segments={"context.city=Ogdenville": ("acc_rate",)})},
     "segment context.city=Springfield not flagged (flagged: context.city=Ogdenville)"),
    ({"verdict": dataclasses.replace(HELD, flagged_segments={SEGMENT: ("prediction_score",)})},
     "context.city=Springfield flagged without conv_rate (prediction_score)"),
    ({"verdict": dataclasses.replace(HELD, root_cause=("acc_rate", "conv_rate"))},
     "root cause ranks acc_rate, conv_rate, not conv_rate first"),
    ({"alerts": ()}, "driver_ranker: city phase: SegmentDrift did not fire"),
    ({"text": f"SegmentDrift {FIELD}=Ogdenville\n{ROOT}"}, "no slack message names SegmentDrift in Springfield"),
    ({"text": f"SegmentDrift {FIELD}=Springfield\nRoot cause: 1. acc_rate (drift x importance 0.5)"},
     "the telegram message does not rank conv_rate first in its root cause"),
    ({"alerts": (("SegmentDrift", "driver_ranker"), ("DataDriftDetected", "driver_ranker"))},
     "driver_ranker: city phase: DataDriftDetected fired"),
])
def test_each_broken_part_of_the_city_phase_is_named(change, expected):
    failures = STORY.failures(city_result(**change), MONITORS, CHANNELS)
    assert any(expected in f for f in failures), failures


def test_the_incident_rule_wants_firing_messages_for_the_city_monitors_only():
    r = city_result()
    assert incident_rule_failures([r], CHANNELS, ("driver_ranker", "trip_duration"), city_monitors=("driver_ranker",)) == []
    assert "email (driver_ranker): city phase got 1 firing message(s), the one-message-per-incident rule allows 0" in \
        incident_rule_failures([r], CHANNELS, ("driver_ranker",))
    # an update (an alert that started after the group's flush) is allowed; a resolved message or none is not
    r.messages.append(("slack", "driver_ranker", "firing"))
    assert incident_rule_failures([r], CHANNELS, ("driver_ranker",), city_monitors=("driver_ranker",)) == []
    r.messages.append(("slack", "driver_ranker", "resolved"))
    r.messages = [m for m in r.messages if m[0] != "webhook"]
    failures = incident_rule_failures([r], CHANNELS, ("driver_ranker",), city_monitors=("driver_ranker",))
    assert failures == ["slack (driver_ranker): city phase got 3 (2 firing, 1 resolved): only firing messages belong to it",
                        "webhook (driver_ranker): city phase got no firing message"]
    r.messages.append(("email", "trip_duration", "firing"))
    assert "email (trip_duration): city phase got 1 firing message(s), the one-message-per-incident rule allows 0" in \
        story_failures([r], MONITORS, set(), False, CHANNELS, city_monitors=("driver_ranker",))


def test_the_phase_is_skipped_with_its_reason_when_it_cannot_tell_its_story():
    assert STORY.monitors(MONITORS) == (RANKER,)
    assert STORY.skip_reason(MONITORS, STORY.traffic(600)) is None
    short = STORY.skip_reason(MONITORS, STORY.traffic(100))
    assert "fewer than segments.min_rows (50): use phases of at least 417 requests" in short
    unsliced = (dataclasses.replace(RANKER, segments=None), DURATION)
    assert STORY.skip_reason(unsliced, STORY.traffic(600)) == \
        "no monitor of driver_ranker slices by context.city (monitors.yaml `segments:`)"


def test_the_table_shows_the_flagged_segments_for_a_sliced_monitor_only():
    table = monitor_table([city_result()], RANKER)
    assert "segments flagged" in table and "context.city=Springfield (conv_rate, prediction_score)" in table
    assert "segments flagged" not in monitor_table([city_result()], DURATION)


def test_first_cause_reads_the_root_cause_annotation_of_every_channel():
    assert first_cause(ROOT) == "conv_rate"
    assert first_cause("<b>Root cause:</b> 1. acc_rate (drift x importance 0.2); 2. conv_rate (drift x") == "acc_rate"
    assert first_cause('"root_cause": "1. conv_rate (drift x importance 0.9)"') == "conv_rate"
    assert first_cause("no root cause here") is None
