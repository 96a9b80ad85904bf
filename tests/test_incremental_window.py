"""Incremental windows equal full re-reads: random arrival orders against a real store, both backends.

Each scenario (a fixed seed) delivers events cycle by cycle in a random order: predictions shipped
late (their @timestamp long past), feedback before or after its prediction and some past the label
horizon, the same event delivered twice (the store keeps one: event.id is the _id), a request
re-sent under a new event id (a duplicate by join key), malformed documents, events stamped ahead
of the clock, windows evicting by span and by count, and a cycle with the store unreachable. After
every cycle the window of a runner that reads incrementally must equal the window of a runner that
reads everything afresh: the same rows in the same order, labels, rejections, and the same sample
for Evidently.
"""
from __future__ import annotations

import dataclasses
import random
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from elasticsearch import helpers

from common.net import free_port
from common.schema import EVENTS_INDEX_PREFIX, daily_index, feedback_event, prediction_event, stamp_ingested
from common.store import StoreSettings
from log_processor.export.metrics import Exporter
from log_processor.monitors import load_monitors
from log_processor.read.window_reader import WindowReads
from log_processor.runner import MonitorRunner
from log_processor.read.store import EventStore
from log_processor.columns import TIMESTAMP
from log_processor.read.window import sample
from log_processor.read.window_reader import WindowReader
from tests.conftest import REPO_ROOT, record_reads

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
STEP = 5.0              # simulated seconds between cycles
CYCLES = 24
SHIPPED = load_monitors(REPO_ROOT / "log_processor/monitors.yaml")[0]
BY_SPAN = dataclasses.replace(SHIPPED, window_seconds=40.0, window_last=None, label_horizon_seconds=12.0,
                              max_rows=25, sample_seed=7)
BY_COUNT = dataclasses.replace(BY_SPAN, window_seconds=60.0, window_last=30)
# monitors over the same index that differ in span, count, model and features (window_reader.py)
SHORT = dataclasses.replace(BY_SPAN, name="short", window_seconds=20.0, features=BY_SPAN.features[:2])
ANY_MODEL = dataclasses.replace(BY_COUNT, name="any_model", model_name=None, label_horizon_seconds=20.0)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def story(seed: int) -> list[tuple[float, dict]]:
    """(simulated time the event reaches the shipper, event) for every delivery of the scenario."""
    rng = random.Random(seed)
    deliveries = []
    for i in range(int(CYCLES * STEP * 4)):                 # ~4 requests a simulated second
        t = rng.uniform(0, CYCLES * STEP)
        rid = f"req-{seed}-{i}"
        features = {"conv_rate": rng.random(), "acc_rate": rng.random(), "avg_daily_trips": rng.randrange(500)}
        model = "driver_ranker" if rng.random() < 0.9 else "eta_model"             # another model in the index
        pred = prediction_event(model_name=model, model_version="1", request_id=rid, features=features,
                                driver_id=1, score=rng.random(), label=rng.randrange(2), latency_ms=1.0,
                                timestamp=at(t + (30 if rng.random() < 0.03 else 0)))   # 3 %: ahead of the clock
        if rng.random() < 0.04:
            del pred["prediction"]["score"]                                         # malformed: missing_field
        lag = rng.expovariate(1 / 2) if rng.random() < 0.85 else rng.uniform(10, 50)   # some shipped late
        deliveries.append((t + lag, pred))
        if rng.random() < 0.05:                                                     # the same event again
            deliveries.append((t + lag + rng.uniform(0, 20), pred))
        if rng.random() < 0.04:                                                     # re-sent: new event id
            again = dict(pred, event={**pred["event"], "id": f"resent-{rid}"})
            deliveries.append((t + lag + rng.uniform(0, 30), again))
        if rng.random() < 0.7:
            delay = rng.choice([rng.uniform(-2, 0), rng.uniform(0, 10), rng.uniform(12, 25)])   # before / in / past horizon
            fb = feedback_event(model_name=model, model_version="1", request_id=rid,
                                trip_completed=rng.randrange(2), timestamp=at(t + delay))
            deliveries.append((t + max(delay, 0) + rng.expovariate(1 / 3), fb))
    rng.shuffle(deliveries)                                   # same-time deliveries in no particular order
    return sorted(deliveries, key=lambda d: d[0])


def deliver(es, events: list[dict]) -> None:
    actions = [{"_op_type": "create", "_index": daily_index(EVENTS_INDEX_PREFIX, e["@timestamp"]),
                "_id": e["event"]["id"], "_source": stamp_ingested(dict(e))} for e in events]
    _, errors = helpers.bulk(es, actions, refresh=True, raise_on_error=False)
    assert all(next(iter(err.values()))["status"] == 409 for err in errors)    # only re-deliveries refused


def runner(monitor, url: str, now: list[float], reads: WindowReads) -> MonitorRunner:
    return MonitorRunner(monitor, EventStore(StoreSettings(url=url), page_size=50), Exporter([monitor.name]),
                         write_summaries=False, clock=lambda: now[0], reads=reads)


def assert_same_window(got, want) -> None:
    assert (got.start, got.end) == (want.start, want.end)
    pd.testing.assert_frame_equal(got.frame, want.frame)
    assert got.rejected == want.rejected and got.missing_share == want.missing_share
    pd.testing.assert_frame_equal(sample(got.frame, BY_SPAN.max_rows), sample(want.frame, BY_SPAN.max_rows))


@pytest.mark.parametrize("sampled", [False, True], ids=["whole", "sampled"])
@pytest.mark.parametrize("monitor", [BY_SPAN, BY_COUNT], ids=["span", "last"])
@pytest.mark.parametrize("seed", [1, 2])
def test_incremental_window_equals_a_full_read_after_every_cycle(es, store_url, monitor, seed, sampled):
    """Sampled: the windows exceed max_rows (25), so the engine picks a rate and the read asks for the
    keys under it (the story's documents carry no sampling.key on osmem: the processor samples them
    with the key it computes); incremental reads of the sample equal a full read of it."""
    deliveries = story(seed)
    now = [T0.timestamp()]
    incremental = runner(monitor, store_url, now, WindowReads(overlap=0.0, full_read_every=8 * STEP, sampled=sampled))
    reads = record_reads(incremental.store)
    down_at = CYCLES // 2
    for cycle in range(1, CYCLES + 1):
        now[0] = T0.timestamp() + cycle * STEP
        due = [e for t, e in deliveries if cycle - 1 < t / STEP <= cycle]
        deliver(es, due[: len(due) // 2])
        deliver(es, due[len(due) // 2:])
        if cycle == down_at:                                 # the store unreachable for one cycle
            live = incremental.reader.store
            incremental.reader.store = EventStore(StoreSettings(url=f"http://127.0.0.1:{free_port()}", request_timeout=2))
            assert incremental.run_once() == "error" and incremental.held is None
            incremental.reader.store = live
            continue
        got = incremental.fetch_window(now[0])
        want = runner(monitor, store_url, now, WindowReads(incremental=False, sampled=sampled)).fetch_window(now[0])
        assert_same_window(got, want)
        assert got.sampling_rate == want.sampling_rate
    # the scenario exercised what it claims: incremental reads, full ones, counts, duplicates, late labels
    assert reads.count(True) >= CYCLES // 3 and reads.count(False) >= 3
    if sampled:      # a rate below 1, and the engine's count: every prediction document of the window
        assert want.sampling_rate < 1 and want.sampled and want.sample_rows < want.rows
        assert want.rows >= (monitor.window_last or 0)
    else:
        assert want.rows >= (monitor.window_last or 0) and want.rejected["duplicate"] and want.rejected["missing_field"]
    assert 0 < want.labelled < want.rows


@pytest.mark.parametrize("sampled", [False, True], ids=["whole", "sampled"])
@pytest.mark.parametrize("seed", [3])
def test_monitors_over_one_index_share_one_read_and_each_window_equals_its_own_full_read(es, store_url, seed, sampled):
    """Three monitors, one index: one read a cycle for those due (all of them, or the short one alone
    on odd cycles), and after every cycle each monitor's window equals a full read for it alone.
    Sampled: each at its own rate, from one read under the largest of their thresholds."""
    deliveries = story(seed)
    now = [T0.timestamp()]
    group = (BY_SPAN, SHORT, ANY_MODEL)
    reader = WindowReader(EventStore(StoreSettings(url=store_url), page_size=50), BY_SPAN.index,
                          WindowReads(overlap=0.0, full_read_every=8 * STEP, sampled=sampled))
    reads = record_reads(reader.store)
    for cycle in range(1, CYCLES + 1):
        now[0] = T0.timestamp() + cycle * STEP
        deliver(es, [e for t, e in deliveries if cycle - 1 < t / STEP <= cycle])
        due = group if cycle % 2 == 0 else (SHORT,)
        windows = reader.windows(due, now[0])
        assert set(windows) == {m.name for m in due} and len(reads) == cycle
        for m in due:
            alone = runner(m, store_url, now, WindowReads(incremental=False, sampled=sampled)).fetch_window(now[0])
            assert_same_window(windows[m.name], alone)
            assert windows[m.name].sampling_rate == alone.sampling_rate
            held = reader.held[m.name].events          # and holds nothing from before its own span
            assert (held.predictions[TIMESTAMP] >= now[0] - m.window_seconds).all()
    assert reads.count(True) >= CYCLES // 2 and reads.count(False) >= 3
    if sampled:      # different rates in one read
        assert len({windows[m.name].sampling_rate for m in group}) > 1
        return
    # the monitors saw different windows of the same documents
    rows = {m.name: windows[m.name].rows for m in group}
    assert rows["short"] < rows[BY_SPAN.name] and rows["any_model"] == ANY_MODEL.window_last
    assert windows["any_model"].frame[BY_SPAN.features[2].name].notna().all()
    assert BY_SPAN.features[2].name not in windows["short"].frame


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_new_rows_merge_into_the_held_order_as_a_full_sort_would(seed):
    """held_window._merged re-sorts only the held tail the new rows reach into; with new rows that
    interleave that tail, tie with it on the millisecond and come in no order, the result must be the
    full (timestamp, event id) sort of everything."""
    from log_processor.read.held_window import _merged
    from log_processor.columns import EID
    from log_processor.read.window import in_order
    rng = random.Random(seed)
    def rows(n: int, lo: float, hi: float) -> pd.DataFrame:
        return pd.DataFrame({TIMESTAMP: np.array([round(rng.uniform(lo, hi), 3) for _ in range(n)], dtype=float),
                             EID: np.array([rng.randrange(2**63) for _ in range(n)], dtype=np.uint64),
                             "x": np.arange(n)})
    held = in_order(rows(2000, 0.0, 10.0))
    for new in (rows(300, 9.0, 12.0), rows(50, 0.0, 12.0), rows(40, 11.0, 12.0), rows(0, 0.0, 1.0)):
        new = pd.concat([new, held.sample(min(5, len(new)), random_state=seed).assign(x=-1)]) if len(new) else new
        want = in_order(pd.concat([held, new], ignore_index=True))
        pd.testing.assert_frame_equal(_merged(held, new.reset_index(drop=True)), want)
