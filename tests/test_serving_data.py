"""serving/data.py: determinism, the two populations, traffic layout, and the drift being real."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ks_2samp

from serving import data


@pytest.fixture(scope="module")
def stats() -> pd.DataFrame:
    return data.generate_driver_stats()


def test_driver_stats_are_deterministic_per_seed(stats):
    pd.testing.assert_frame_equal(stats, data.generate_driver_stats(7))
    assert not stats["conv_rate"].equals(data.generate_driver_stats(8)["conv_rate"])


def test_driver_stats_layout(stats):
    assert list(stats.columns) == ["driver_id", "event_timestamp", "created", "conv_rate", "acc_rate",
                                   "avg_daily_trips"]
    assert str(stats["event_timestamp"].dt.tz) == "UTC"
    assert stats["avg_daily_trips"].dtype == np.int64
    assert stats["conv_rate"].between(0, 1).all() and stats["acc_rate"].between(0, 1).all()
    per_driver = stats.groupby("driver_id").size()
    assert (per_driver == data.HOURS).all()
    assert set(per_driver.index) == {i for population in data.POPULATIONS for i in data.driver_ids(population)}
    assert stats["event_timestamp"].max() == pd.Timestamp(data.END_TIME)


def test_drift_spec_shifts_two_features_and_keeps_one():
    drifting = [name for name in data.FEATURE_COLUMNS if data.DRIFT_SPEC[name]["drifts"]]
    assert drifting == ["conv_rate", "acc_rate"]
    assert data.DRIFT_SPEC["avg_daily_trips"]["shift"] == 0.0
    assert data.DRIFT_SPEC["label_relation"]["drifts"] is True


def test_drift_population_is_shifted_as_documented(stats):
    latest = data.latest_features(stats)
    normal = latest.loc[data.driver_ids("normal")]
    drift = latest.loc[data.driver_ids("drift")]
    for name in ("conv_rate", "acc_rate"):
        shift = drift[name].mean() - normal[name].mean()
        assert shift == pytest.approx(data.DRIFT_SPEC[name]["shift"], abs=0.01)
        assert ks_2samp(normal[name], drift[name]).pvalue < 1e-6
    assert (drift["avg_daily_trips"].to_numpy() == normal["avg_daily_trips"].to_numpy()).all()


def test_traffic_layout_and_populations(stats):
    for variant in data.VARIANTS:
        traffic = data.generate_traffic(variant, 50, seed=3, driver_stats=stats)
        assert list(traffic.columns) == ["driver_ids", "outcomes"] and len(traffic) == 50
        population = set(data.driver_ids(variant))
        for ids, outcomes in zip(traffic["driver_ids"], traffic["outcomes"]):
            low, high = data.CANDIDATES_PER_REQUEST
            assert low <= len(ids) <= high and len(ids) == len(outcomes) == len(set(ids))
            assert set(ids) <= population and set(outcomes) <= {0, 1}


def test_traffic_is_deterministic_per_seed(stats):
    first = data.generate_traffic("normal", 30, seed=5, driver_stats=stats)
    pd.testing.assert_frame_equal(first, data.generate_traffic("normal", 30, seed=5, driver_stats=stats))
    assert not first.equals(data.generate_traffic("normal", 30, seed=6, driver_stats=stats))


def test_traffic_rejects_bad_arguments():
    with pytest.raises(ValueError, match="variant"):
        data.generate_traffic("sideways", 1, seed=1)
    with pytest.raises(ValueError, match="n_requests"):
        data.generate_traffic("normal", -1, seed=1)


def test_outcomes_follow_the_true_probability(stats):
    rows = data.explode_traffic(data.generate_traffic("normal", 3000, seed=9, driver_stats=stats), stats)
    expected = data.true_completion_probability(rows, "normal")
    # Calibration within deciles of the true probability: the outcome rate tracks it.
    deciles = pd.qcut(expected, 5, labels=False)
    for bucket in range(5):
        mask = deciles == bucket
        assert rows["trip_completed"][mask].mean() == pytest.approx(expected[mask].mean(), abs=0.04)


def test_label_relation_changes_in_drift(stats):
    latest = data.latest_features(stats).loc[data.driver_ids("drift")]
    p_drift = data.true_completion_probability(latest, "drift")
    p_normal_rule = data.true_completion_probability(latest, "normal")
    # Drift drivers complete far more trips than the normal relation says for their features.
    assert p_drift.mean() - p_normal_rule.mean() > 0.2


def test_training_frame_holds_labelled_candidate_rows(stats):
    frame = data.generate_training_frame(200, seed=4, driver_stats=stats)
    assert list(frame.columns) == ["request_index", "driver_id", "conv_rate", "acc_rate", "avg_daily_trips",
                                   "trip_completed"]
    assert frame["driver_id"].isin(data.driver_ids("normal")).all()
    latest = data.latest_features(stats)
    np.testing.assert_allclose(frame["conv_rate"], latest.loc[frame["driver_id"], "conv_rate"])


# ---------------------------------------------------------------- trip duration (the second model)

def test_duration_traffic_layout_and_determinism(stats):
    first = data.generate_duration_traffic("normal", 300, seed=5, driver_stats=stats)
    assert list(first.columns) == ["driver_id", "duration_minutes"] and len(first) == 300
    assert first["driver_id"].dtype == np.int64 and first["duration_minutes"].dtype == np.float64
    pd.testing.assert_frame_equal(first, data.generate_duration_traffic("normal", 300, seed=5, driver_stats=stats))
    assert not first.equals(data.generate_duration_traffic("normal", 300, seed=6, driver_stats=stats))
    for variant in data.VARIANTS:
        traffic = data.generate_duration_traffic(variant, 300, seed=5, driver_stats=stats)
        assert traffic["driver_id"].isin(data.driver_ids(variant)).all()
        assert traffic["duration_minutes"].between(data.DURATION_MIN, data.DURATION_MAX).all()
    with pytest.raises(ValueError, match="variant"):
        data.generate_duration_traffic("sideways", 1, seed=1)


def test_the_rankers_traffic_does_not_move_with_the_duration_stream(stats):
    """Durations draw from a stream of their own: the ranker's replay of a seed stays what it was."""
    before = data.generate_traffic("drift", 20, seed=8, driver_stats=stats)
    data.generate_duration_traffic("drift", 20, seed=8, driver_stats=stats)
    pd.testing.assert_frame_equal(before, data.generate_traffic("drift", 20, seed=8, driver_stats=stats))


def test_durations_follow_the_documented_relation(stats):
    frame = data.generate_duration_frame(4000, seed=9, driver_stats=stats)
    assert list(frame.columns) == ["driver_id", "conv_rate", "acc_rate", "avg_daily_trips", "duration_minutes"]
    residual = frame["duration_minutes"] - data.expected_duration(frame, "normal")
    assert residual.mean() == pytest.approx(0.0, abs=0.2)
    assert residual.std() == pytest.approx(data.DURATION_SPEC["normal"]["noise_sd"], rel=0.05)
    assert 20 < frame["duration_minutes"].mean() < 24
    # busy drivers do shorter trips: the documented negative avg_daily_trips weight is visible
    assert np.corrcoef(frame["avg_daily_trips"], frame["duration_minutes"])[0, 1] < -0.4


def test_duration_relation_changes_in_drift_and_the_target_moves(stats):
    latest = data.latest_features(stats).loc[data.driver_ids("drift")]
    # concept drift: drift drivers' trips take far longer than the normal relation says for their features
    gap = data.expected_duration(latest, "drift") - data.expected_duration(latest, "normal")
    assert 6 < gap.mean() < 11
    normal = data.generate_duration_traffic("normal", 1000, seed=2, driver_stats=stats)["duration_minutes"]
    drift = data.generate_duration_traffic("drift", 1000, seed=2, driver_stats=stats)["duration_minutes"]
    assert (drift.mean() - normal.mean()) / normal.std() > 1.0      # target drift: > 1 normal sd
    assert ks_2samp(normal, drift).pvalue < 1e-12


def test_cities_are_drawn_with_their_shares_independently_of_the_traffic(stats):
    assert sum(data.CITIES.values()) == pytest.approx(1.0) and len(data.CITIES) == 10
    cities = data.draw_cities(20000, seed=4)
    assert cities == data.draw_cities(20000, seed=4) and cities != data.draw_cities(20000, seed=5)
    counts = pd.Series(cities).value_counts(normalize=True)
    for city, share in data.CITIES.items():
        assert counts[city] == pytest.approx(share, abs=0.01), city
    # drawn from their own stream: the traffic of the same seed is what it was without cities
    assert list(data.generate_traffic("normal", 5, seed=4, driver_stats=stats).columns) == ["driver_ids", "outcomes"]
    with pytest.raises(ValueError, match="n_requests"):
        data.draw_cities(-1, seed=1)
