"""Data stability: values outside the reference's range, unseen categories, constant columns, duplicated ids.

Real data from serving's generator through the whole `evaluate` (Evidently's OutRangeValueCount and
OutListValueCount in the drift report), and the gauges as Prometheus reads them.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from benchmarks import synthetic
from log_processor.evaluate.drift_thresholds import fit_thresholds
from log_processor.evaluate.evaluation import evaluate
from log_processor.evaluate.reference import prepare_reference
from log_processor.export.metrics import Exporter
from log_processor.monitors import DriftRule, Feature
from log_processor.evaluate.stability import ALMOST_CONSTANT_SHARE
from log_processor.columns import SCORE
from tests.test_log_processor_window import MONITOR as WINDOW_MONITOR, current, pred, window_of

TIERS = ("low", "mid", "high")
MONITOR = dataclasses.replace(WINDOW_MONITOR, estimation=None)     # stability only: no score calibration


@pytest.fixture(scope="module")
def reference_frame():
    return synthetic.reference_frame(2000, seed=101)


@pytest.fixture(scope="module")
def reference(reference_frame):
    return calibrated(reference_frame, MONITOR)


def calibrated(frame, monitor):
    """As the loader prepares a monitor with drift.alpha."""
    prepared = prepare_reference(frame, monitor, model_name="m", model_version="1", version="1", sha256="x")
    kinds = {f.name: f.type for f in monitor.features}
    return dataclasses.replace(prepared, drift_thresholds=fit_thresholds(frame, kinds, SCORE, monitor.drift.alpha))


def test_unshifted_traffic_stays_inside_the_reference_and_drift_leaves_it(reference, reference_frame):
    normal = evaluate(reference, current("normal"), MONITOR).stability
    drifted = evaluate(reference, current("drift"), MONITOR).stability
    assert set(normal.out_of_range_share) == set(MONITOR.feature_names) and normal.unseen_category_share == {}
    assert max(normal.out_of_range_share.values()) < 0.01
    # conv_rate moves 2 sd down (serving/data.py DRIFT_SPEC): a clear share of it falls below the reference's min
    assert drifted.out_of_range_share["conv_rate"] > 0.05 > normal.out_of_range_share["conv_rate"]
    assert drifted.out_of_range_share["avg_daily_trips"] < 0.01        # the unshifted feature stays in
    assert normal.constant_columns == drifted.constant_columns == ()


def test_the_share_is_exactly_the_rows_beyond_the_reference_min_and_max(reference, reference_frame):
    cur = current("normal", n=1000)
    high = reference_frame["acc_rate"].max()
    cur.loc[:149, "acc_rate"] = high + 0.01            # 15 % above the max
    cur.loc[150:199, "acc_rate"] = high                # on the edge: inside
    cur.loc[200:249, "acc_rate"] = reference_frame["acc_rate"].min() - 1   # 5 % below the min
    st = evaluate(reference, cur, MONITOR).stability
    assert st.out_of_range_share["acc_rate"] == pytest.approx(0.20)


def test_constant_and_almost_constant_columns_are_named(reference):
    cur = current("normal", n=1000)
    cur["avg_daily_trips"] = 42.0
    cur.loc[:959, "conv_rate"] = 0.5                   # 96 % one value
    cur.loc[:939, SCORE] = 0.9                          # 94 %: under the 95 % rule
    st = evaluate(reference, cur, MONITOR).stability
    assert st.constant_columns == ("avg_daily_trips",)
    assert set(st.almost_constant_columns) == {"avg_daily_trips", "conv_rate"}
    assert ALMOST_CONSTANT_SHARE == 0.95


def test_a_category_the_reference_never_had_is_counted(reference_frame):
    def tier(frame):
        return pd.Series(np.array(TIERS)[np.arange(len(frame)) % 3], index=frame.index)

    monitor = dataclasses.replace(
        MONITOR, features=(*MONITOR.features, Feature("tier", "features.tier", "categorical")),
        drift=dataclasses.replace(MONITOR.drift, per_column={**MONITOR.drift.per_column,
                                                             "tier": DriftRule("jensenshannon", float("nan"))}))
    ref = calibrated(reference_frame.assign(tier=tier(reference_frame)), monitor)
    assert ref.bounds.categories["tier"] == ("high", "low", "mid")
    cur = current("normal", n=500)
    cur["tier"] = tier(cur)
    cur.loc[:99, "tier"] = "platinum"                  # 20 % new
    st = evaluate(ref, cur, monitor).stability
    assert st.unseen_category_share == {"tier": pytest.approx(0.2)}
    assert "tier" not in st.out_of_range_share


def test_duplicated_request_ids_are_counted_per_window():
    docs = [pred(f"r{i}", at=i) for i in range(30)] + [pred("r3", at=40), pred("r3", at=41), pred("r7", at=42)]
    w = window_of(docs)
    assert w.duplicated_ids == 3 and w.rows == 30


def _samples(exporter: Exporter) -> dict[tuple[str, tuple], float]:
    text = generate_latest(exporter.registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_the_gauges_show_the_window_and_go_when_the_verdict_goes(reference):
    cur = current("drift", n=1000)
    ev = evaluate(reference, cur, MONITOR)
    docs = [pred(f"r{i}", at=i) for i in range(120)] + [pred("r1", at=130)]
    window = window_of(docs)
    exporter = Exporter(["m"])
    monitor = dataclasses.replace(MONITOR, name="m")
    exporter.window(monitor, window, reference.rows, ev)
    got = _samples(exporter)
    share = got[("mlmon_feature_out_of_range_share", (("feature", "conv_rate"), ("monitor", "m")))]
    assert share == pytest.approx(ev.stability.out_of_range_share["conv_rate"]) and share > 0.05
    assert got[("mlmon_constant_columns", (("kind", "constant"), ("monitor", "m")))] == 0
    assert got[("mlmon_window_duplicated_ids", (("monitor", "m"),))] == 1
    exporter.window(monitor, window, reference.rows, None)          # too few rows now: no stability verdict
    assert not any(name == "mlmon_feature_out_of_range_share" for name, _ in _samples(exporter))
