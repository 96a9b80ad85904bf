"""Deterministic synthetic data: driver statistics, request traffic with ground truth, a training frame.

Everything here is a pure function of its seed, so the demo, the tests and the training script replay
exactly the same world.

The world
---------
Two separate driver populations live side by side in the same statistics table (and so in Feast):
the *normal* drivers (ids 1001..) and the *drift* drivers (ids 5001..). Each driver has a per-driver
base level per feature plus small hourly noise, over `HOURS` hourly rows. Serving sees what Feast's
online store holds: the driver's most recent hour (`latest_features`).

A request offers a few candidate drivers from one population; every candidate has a ground-truth
outcome `trip_completed` drawn from `true_completion_probability`. Serving picks the candidate with the
highest model score, so the events it logs describe the *chosen* driver. The reference the log
processor compares against is built the same way (train.py), which is what makes normal traffic
statistically indistinguishable from the reference: same generating process, different seed.

Drift (see DRIFT_SPEC)
----------------------
Drift driver 5001+i is the twin of normal driver 1001+i with conv_rate shifted by -0.20 and acc_rate
by -0.12; avg_daily_trips is identical. The model's score is monotone in a linear function of the
features, so a constant shift of every candidate leaves the ranking, and thus the distribution of the
chosen driver's avg_daily_trips, unchanged: only the two shifted features drift in the logs.
The label relation also changes in drift (concept drift, DRIFT_SPEC["label_relation"]), so the model
trained on normal data loses quality: measured on 300 chosen rows, accuracy ~0.80 -> ~0.28 and recall
~0.98 -> ~0.05; a KS test at 0.05 on 300 chosen rows vs 2000 reference rows flags both shifted
features every time and avg_daily_trips about as often as chance (5 %), like normal traffic.

One city (see CITY_DRIFT)
------------------------
A third population, the *city* drivers (ids 9001..), is again the normal population's twin, with
only conv_rate shifted (CITY_DRIFT["shift"]: +0.06, 0.6 of the drivers' sd, 0.75 of the sd of the
drivers serving chooses): the drivers of one city whose
conversion feed double-counts. `generate_city_traffic` sends that city CITY_DRIFT["share"] of the
requests and offers its requests city drivers only; every other request is normal, and every label
follows the normal world (the model stays right: a covariate shift, not a concept drift). The whole
window then moves by share x shift (its drift statistic by exactly that share: Wasserstein is
linear in a mixture), under its calibrated thresholds most of the time, while the city's own rows
move by the full shift: what per-segment drift finds (docs/demo.md#one-city).

Trip duration (the second model, trip_duration; see DURATION_SPEC)
-------------------------------------------------------------------
A duration request names ONE driver, drawn uniformly from the variant's population
(`generate_duration_traffic`), and carries the realized duration in minutes of that driver's trip:
a linear function of the driver's latest features plus Normal(0, 3) noise, clipped to
[DURATION_MIN, DURATION_MAX] (normal traffic: mean ~22 min, sd ~5, about 9-37 min). Busy drivers
(many daily trips) do short urban trips; a high conversion rate goes with longer accepted trips.
In the drift world the drift drivers' features move as above (DRIFT_SPEC) AND the relation itself
changes (concept drift, DURATION_SPEC["drift"]): every trip takes ~6 minutes longer (congestion),
conv_rate stops mattering and avg_daily_trips matters half as much. The model trained on normal
traffic then under-predicts by ~8 minutes: MAE and RMSE rise several-fold and the realized
durations' distribution moves (target drift) by about 1.5 of its normal sd (~22 -> ~29 min), while
the prediction moves only by ~1.8 minutes (the features' shift). Figures measured: docs/serving.md#trip-duration.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Literal

import numpy as np
import pandas as pd

Variant = Literal["normal", "drift"]
VARIANTS: tuple[str, ...] = ("normal", "drift")

FEATURE_COLUMNS = ("conv_rate", "acc_rate", "avg_daily_trips")

# Fixed clock so that the data is a pure function of the seed (and lies in the past for Feast).
END_TIME = datetime(2026, 1, 1, tzinfo=timezone.utc)
HOURS = 24
DRIVERS_PER_POPULATION = 500
FIRST_DRIVER_ID = {"normal": 1001, "drift": 5001, "city": 9001}
POPULATIONS: tuple[str, ...] = tuple(FIRST_DRIVER_ID)   # the drivers in Feast: both worlds' and one city's
CANDIDATES_PER_REQUEST = (3, 6)  # inclusive range of candidates offered per request

# The rider's city: a request-level context the client sends (/predict `city`, logged as the
# prediction's `context.city`, a segment field). Drawn with fixed shares, independently of the
# candidates, so in normal traffic every city's rows are exchangeable with the whole reference
# (docs/log-processor.md#segments): a per-city drift is then a real change, not the slice itself.
CITIES: dict[str, float] = {
    "Springfield": 0.10, "Shelbyville": 0.14, "Capital City": 0.16, "Ogdenville": 0.08,
    "North Haverbrook": 0.07, "Brockway": 0.09, "Cypress Creek": 0.11, "Waverly Hills": 0.09,
    "Ogdenburg": 0.06, "Dunkleburg": 0.10,
}

# Normal population: per-driver base ~ Normal(mean, sd), hourly noise ~ Normal(0, hourly_sd).
NORMAL_POPULATION = {
    "conv_rate": {"mean": 0.55, "sd": 0.10, "hourly_sd": 0.02, "low": 0.01, "high": 0.99},
    "acc_rate": {"mean": 0.75, "sd": 0.07, "hourly_sd": 0.015, "low": 0.01, "high": 0.99},
    "avg_daily_trips": {"mean": 350.0, "sd": 90.0, "hourly_sd": 12.0, "low": 0.0, "high": 2000.0},
}

DRIFT_SPEC: dict[str, dict[str, object]] = {
    "conv_rate": {
        "drifts": True, "shift": -0.20,
        "what": "mean 0.55 -> 0.35 (constant shift of every drift driver's base, = 2 sd)",
    },
    "acc_rate": {
        "drifts": True, "shift": -0.12,
        "what": "mean 0.75 -> 0.63 (constant shift, ~1.7 sd)",
    },
    "avg_daily_trips": {
        "drifts": False, "shift": 0.0,
        "what": "unchanged (same distribution in both populations)",
    },
    "label_relation": {
        "drifts": True,
        "what": "concept drift: completion no longer depends on conv_rate, the acc_rate weight "
                "halves and the intercept rises (0.3 -> 1.2); drift drivers complete far more trips "
                "than the normal model predicts from their lower rates, so accuracy and recall drop",
    },
}

# The demo's one-city story: in its phase this city sends `share` of the requests, all to the "city"
# drivers, whose `feature` reads `shift` higher than their normal twins'. Sized on the demo's 600-row
# window so that the city's segment is flagged and the whole window is not: figures measured in
# docs/benchmarks.md#the-demos-one-city-story.
CITY_DRIFT: dict[str, object] = {"city": "Springfield", "share": 0.12, "feature": "conv_rate", "shift": 0.06}

# Trip duration in minutes: intercept + sum(weight * (feature - normal mean)) + Normal(0, noise_sd).
DURATION_SPEC: dict[str, dict[str, float]] = {
    "normal": {"intercept": 22.0, "conv_rate": 12.0, "acc_rate": -10.0, "avg_daily_trips": -0.04,
               "noise_sd": 3.0},
    "drift": {"intercept": 28.0, "conv_rate": 0.0, "acc_rate": -10.0, "avg_daily_trips": -0.02,
              "noise_sd": 3.0},
}
DURATION_MIN, DURATION_MAX = 3.0, 90.0  # minutes; realized durations are clipped to this range

# True logit of trip completion. Features are centred on the normal population so the weights read
# as "per unit away from a typical driver".
_NORMAL_LOGIT = {"intercept": 0.3, "conv_rate": 9.0, "acc_rate": 8.0, "avg_daily_trips": 0.006}
_DRIFT_LOGIT = {"intercept": 1.2, "conv_rate": 0.0, "acc_rate": 4.0, "avg_daily_trips": 0.006}


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")


def driver_ids(population: str) -> np.ndarray:
    """The ids of one population of POPULATIONS (a variant's drivers, or the one city's)."""
    if population not in POPULATIONS:
        raise ValueError(f"population must be one of {POPULATIONS}, got {population!r}")
    first = FIRST_DRIVER_ID[population]
    return np.arange(first, first + DRIVERS_PER_POPULATION, dtype=np.int64)


def _normal_population(rng: np.random.Generator) -> pd.DataFrame:
    ids = driver_ids("normal")
    hours = pd.date_range(end=END_TIME, periods=HOURS, freq="h")
    frame = pd.DataFrame({"driver_id": np.repeat(ids, HOURS), "event_timestamp": np.tile(hours, len(ids))})
    for name in FEATURE_COLUMNS:
        spec = NORMAL_POPULATION[name]
        base = rng.normal(spec["mean"], spec["sd"], size=len(ids))
        frame[name] = np.repeat(base, HOURS) + rng.normal(0.0, spec["hourly_sd"], size=len(ids) * HOURS)
    return frame


def _finish(frame: pd.DataFrame) -> pd.DataFrame:
    """Clip to each feature's range; avg_daily_trips becomes an integer."""
    for name in FEATURE_COLUMNS:
        spec = NORMAL_POPULATION[name]
        frame[name] = frame[name].clip(spec["low"], spec["high"])
    frame["avg_daily_trips"] = np.rint(frame["avg_daily_trips"]).astype(np.int64)
    return frame


def _twin(normal: pd.DataFrame, population: str, shifts: dict[str, float]) -> pd.DataFrame:
    """Driver i of the normal population as driver i of `population`, its features shifted.

    Pairing the drivers (instead of drawing new ones) keeps the unshifted features' distribution
    exactly equal between the populations, even after serving's best-of-candidates selection.
    """
    twin = normal.copy()
    twin["driver_id"] = twin["driver_id"] - FIRST_DRIVER_ID["normal"] + FIRST_DRIVER_ID[population]
    for name, shift in shifts.items():
        twin[name] = twin[name] + shift
    return twin


def generate_driver_stats(seed: int = 7) -> pd.DataFrame:
    """Hourly statistics of every population (normal ids 1001.., drift ids 5001.., city ids 9001..),
    one row per driver and hour."""
    normal = _normal_population(np.random.default_rng(seed))
    drift = _twin(normal, "drift", {name: float(DRIFT_SPEC[name]["shift"]) for name in FEATURE_COLUMNS})
    city = _twin(normal, "city", {str(CITY_DRIFT["feature"]): float(CITY_DRIFT["shift"])})
    frame = pd.concat([_finish(normal.copy()), _finish(drift), _finish(city)], ignore_index=True)
    frame["created"] = frame["event_timestamp"]
    columns = ["driver_id", "event_timestamp", "created", *FEATURE_COLUMNS]
    return frame[columns].sort_values(["driver_id", "event_timestamp"], ignore_index=True)


def latest_features(stats: pd.DataFrame) -> pd.DataFrame:
    """The most recent row per driver, indexed by driver_id: what Feast's online store serves."""
    latest = stats.sort_values("event_timestamp").groupby("driver_id").tail(1)
    return latest.set_index("driver_id")[list(FEATURE_COLUMNS)].sort_index()


def true_completion_probability(features: pd.DataFrame | dict, variant: Variant) -> np.ndarray:
    """P(trip_completed | features) in the given world; the model tries to learn the normal one."""
    _check_variant(variant)
    weights = _NORMAL_LOGIT if variant == "normal" else _DRIFT_LOGIT
    logit = weights["intercept"] + sum(
        weights[name] * (np.asarray(features[name], dtype=float) - NORMAL_POPULATION[name]["mean"])
        for name in FEATURE_COLUMNS
    )
    return 1.0 / (1.0 + np.exp(-logit))


def generate_traffic(variant: Variant, n_requests: int, seed: int, *,
                     driver_stats: pd.DataFrame | None = None) -> pd.DataFrame:
    """`n_requests` requests: `driver_ids` (candidates from the variant's population) and aligned `outcomes`.

    Outcomes are drawn from the candidates' latest statistics (what serving will see), using
    `driver_stats` (default: `generate_driver_stats()`).
    """
    _check_variant(variant)
    if n_requests < 0:
        raise ValueError("n_requests must be >= 0")
    stats = generate_driver_stats() if driver_stats is None else driver_stats
    return _offers(latest_features(stats), variant, variant, n_requests, np.random.default_rng([seed, VARIANTS.index(variant)]))


def _offers(latest: pd.DataFrame, population: str, world: Variant, n_requests: int,
            rng: np.random.Generator) -> pd.DataFrame:
    """Requests offering candidates of `population`, their outcomes drawn in `world`."""
    ids_all = driver_ids(population)
    low, high = CANDIDATES_PER_REQUEST
    candidates_list, outcomes_list = [], []
    for _ in range(n_requests):
        k = int(rng.integers(low, high + 1))
        ids = rng.choice(ids_all, size=k, replace=False)
        probability = true_completion_probability(latest.loc[ids], world)
        outcomes = (rng.random(k) < probability).astype(int)
        candidates_list.append([int(i) for i in ids])
        outcomes_list.append([int(o) for o in outcomes])
    return pd.DataFrame({"driver_ids": candidates_list, "outcomes": outcomes_list})


def draw_cities(n_requests: int, seed: int, shares: dict[str, float] | None = None) -> list[str]:
    """The city of each of `n_requests` requests, drawn with `shares` (default CITIES') from its own
    stream of `seed` (so the candidates and outcomes of generate_traffic stay what they were)."""
    if n_requests < 0:
        raise ValueError("n_requests must be >= 0")
    shares = CITIES if shares is None else shares
    names = list(shares)
    shares = np.array([shares[name] for name in names])
    rng = np.random.default_rng([seed, 7919])
    return [names[i] for i in rng.choice(len(names), size=n_requests, p=shares / shares.sum())]


def city_phase_cities(n_requests: int, seed: int) -> list[str]:
    """CITY_DRIFT's city for exactly round(share x n) requests at random places, the other cities drawn
    with their CITIES shares for the rest: the phase's share is the story's, not a draw's."""
    city = str(CITY_DRIFT["city"])
    others = {name: share for name, share in CITIES.items() if name != city}
    cities = draw_cities(n_requests, seed, others)
    rng = np.random.default_rng([seed, 7919, 1])
    for i in rng.choice(n_requests, size=round(float(CITY_DRIFT["share"]) * n_requests), replace=False):
        cities[int(i)] = city
    return cities


def generate_city_traffic(n_requests: int, seed: int, *, driver_stats: pd.DataFrame | None = None) -> pd.DataFrame:
    """The one-city story's requests: `driver_ids`, `outcomes` and `city`. CITY_DRIFT's city sends its
    share of them exactly, each offering "city" drivers (its feature shifted); every other request is
    generate_traffic("normal")'s of the same seed. Every outcome follows the normal world."""
    if n_requests < 0:
        raise ValueError("n_requests must be >= 0")
    stats = generate_driver_stats() if driver_stats is None else driver_stats
    cities = city_phase_cities(n_requests, seed)
    normal = generate_traffic("normal", n_requests, seed, driver_stats=stats)
    local = _offers(latest_features(stats), "city", "normal", n_requests,
                    np.random.default_rng([seed, len(VARIANTS)]))
    in_city = [city == CITY_DRIFT["city"] for city in cities]
    return pd.DataFrame({column: [b if here else a for a, b, here in zip(normal[column], local[column], in_city)]
                         for column in ("driver_ids", "outcomes")}).assign(city=cities)


def explode_traffic(traffic: pd.DataFrame, driver_stats: pd.DataFrame) -> pd.DataFrame:
    """One row per (request, candidate): request_index, driver_id, the three features, trip_completed."""
    latest = latest_features(driver_stats)
    rows = traffic.reset_index(drop=True).rename_axis("request_index").reset_index()
    rows = rows.explode(["driver_ids", "outcomes"], ignore_index=True)
    rows = rows.rename(columns={"driver_ids": "driver_id", "outcomes": "trip_completed"})
    rows["driver_id"] = rows["driver_id"].astype(np.int64)
    rows["trip_completed"] = rows["trip_completed"].astype(np.int64)
    features = latest.loc[rows["driver_id"]].reset_index(drop=True)
    return pd.concat([rows[["request_index", "driver_id"]], features, rows[["trip_completed"]]], axis=1)


def generate_training_frame(n_requests: int = 4000, seed: int = 11, *,
                            driver_stats: pd.DataFrame | None = None) -> pd.DataFrame:
    """Labelled candidate rows of normal traffic (see `explode_traffic`), for training and the holdout."""
    stats = generate_driver_stats() if driver_stats is None else driver_stats
    traffic = generate_traffic("normal", n_requests, seed, driver_stats=stats)
    return explode_traffic(traffic, stats)


def expected_duration(features: pd.DataFrame | dict, variant: Variant) -> np.ndarray:
    """E[trip duration in minutes | features] in the given world (before noise and clipping)."""
    _check_variant(variant)
    weights = DURATION_SPEC[variant]
    return weights["intercept"] + sum(
        weights[name] * (np.asarray(features[name], dtype=float) - NORMAL_POPULATION[name]["mean"])
        for name in FEATURE_COLUMNS
    )


def generate_duration_traffic(variant: Variant, n_requests: int, seed: int, *,
                              driver_stats: pd.DataFrame | None = None) -> pd.DataFrame:
    """`n_requests` duration requests: `driver_id` (uniform over the variant's population) and the
    realized `duration_minutes`, from the driver's latest statistics (what serving sees).

    Its own random stream ([seed, variant, 1]), so the ranker's traffic of the same seed is unchanged.
    """
    _check_variant(variant)
    if n_requests < 0:
        raise ValueError("n_requests must be >= 0")
    stats = generate_driver_stats() if driver_stats is None else driver_stats
    latest = latest_features(stats)
    rng = np.random.default_rng([seed, VARIANTS.index(variant), 1])
    ids = rng.choice(driver_ids(variant), size=n_requests, replace=True)
    mean = expected_duration(latest.loc[ids], variant)
    noise = rng.normal(0.0, DURATION_SPEC[variant]["noise_sd"], size=n_requests)
    minutes = np.clip(mean + noise, DURATION_MIN, DURATION_MAX)
    return pd.DataFrame({"driver_id": ids.astype(np.int64), "duration_minutes": minutes.astype(float)})


def generate_duration_frame(n_requests: int, seed: int, variant: Variant = "normal", *,
                            driver_stats: pd.DataFrame | None = None) -> pd.DataFrame:
    """Duration requests with the features serving looks up: driver_id, the three features, duration_minutes."""
    stats = generate_driver_stats() if driver_stats is None else driver_stats
    traffic = generate_duration_traffic(variant, n_requests, seed, driver_stats=stats)
    features = latest_features(stats).loc[traffic["driver_id"]].reset_index(drop=True)
    return pd.concat([traffic[["driver_id"]], features, traffic[["duration_minutes"]]], axis=1)
