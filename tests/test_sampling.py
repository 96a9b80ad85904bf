"""The sampling key (common/sampling.py) and the sampled read (log_processor/read/sampled.py).

- the key: Java's String.hashCode mirrored, vectorised = scalar, uniform; the ingest pipeline's
  script is the module's, and a real OpenSearch node computes the same keys as Python on the same ids;
- the read: on both stores, a sampled window is exactly the whole window's requests under the rate's
  threshold (labels joined exactly), its whole-window figures are the engine's, `last: N` keeps its
  meaning, documents without a key are sampled by the processor and counted, bad keys are counted
  rejects, a store that cannot count falls back to the whole read, a count that changes during the
  read is harmless;
- statistics: drift and quality on the key's sample agree with the whole window's, over 20 seeds.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import uuid

import numpy as np
import pandas as pd
import pytest
from elasticsearch import helpers
from scipy import stats
from sklearn.metrics import accuracy_score, roc_auc_score

from common import sampling
from common.schema import (EVENTS_INDEX_PREFIX, daily_index, feedback_event, format_timestamp, prediction_event,
                           stamp_ingested, stamp_sampling_key)
from common.store import StoreSettings, TEMPLATES_DIR, connect
from log_processor.columns import SAMPLING_KEY
from log_processor.export.metrics import CLASS_SHARE, Exporter
from log_processor.monitors import load_monitors
from log_processor.read import sampled
from log_processor.read.parse import parse_page
from log_processor.read.store import EventStore
from log_processor.read.window_reader import WindowReader, WindowReads
from log_processor.runner import MonitorRunner
from tests.conftest import REPO_ROOT, empty_opensearch

SHIPPED = load_monitors(REPO_ROOT / "log_processor/monitors.yaml")[0]
MONITOR = dataclasses.replace(SHIPPED, window_seconds=600.0, window_last=None, max_rows=300, min_rows=10,
                              min_labelled_rows=10, sample_seed=3)
NOW = 1_795_000_000.0


# --- the key -------------------------------------------------------------------------------------------

def test_java_hash_is_java_string_hashcode():
    # values of String.hashCode() in Java, as unsigned 32-bit integers
    assert sampling.java_hash("") == 0
    assert sampling.java_hash("hello") == 99162322
    assert sampling.java_hash("polygenelubricants") == 2**31          # Integer.MIN_VALUE
    assert sampling.java_hash("Aa") == sampling.java_hash("BB")        # the classic collision
    assert sampling.java_hash("😀") == ((0xD83D * 31 + 0xDE00) & 0xFFFFFFFF)   # UTF-16 code units


def test_vectorised_keys_equal_the_scalar_definition():
    rng = np.random.default_rng(5)
    ids = [uuid.UUID(int=int(rng.integers(0, 2**63)) << 64 | i).hex for i in range(2000)]
    ids += ["", None, 17, "a", "é", "日本語", "😀-astral", "a\x00", "x" * 300, str(uuid.uuid4())]
    got = sampling.sample_keys(ids)
    want = [sampling.sample_key(v) for v in ids]
    assert got.tolist() == [-1 if w is None else w for w in want]
    assert all(0 <= k < sampling.SPACE for k in got[got >= 0])


def test_keys_are_uniform():
    rng = np.random.default_rng(11)
    n = 200_000
    ids = [f"{a:016x}{b:016x}" for a, b in zip(rng.integers(0, 2**63, n), rng.integers(0, 2**63, n))]
    keys = sampling.sample_keys(ids)
    for rate in (0.5, 0.2, 0.05, 0.01):
        share = float((keys < sampling.threshold(rate)).mean())
        assert abs(share - rate) < 5 * np.sqrt(rate * (1 - rate) / n), (rate, share)
    # and as a whole: Kolmogorov-Smirnov against U[0, 1)
    assert stats.kstest(keys / sampling.SPACE, "uniform").pvalue > 1e-4
    # sequential ids (a counter as request id) too, where a bare String.hashCode would not be
    seq = sampling.sample_keys([f"req-{i}" for i in range(n)])
    assert abs(float((seq < sampling.threshold(0.1)).mean()) - 0.1) < 5 * np.sqrt(0.09 / n)


@pytest.mark.parametrize("count, max_rows, rate", [(0, 200_000, 1.0), (200_000, 200_000, 1.0), (200_001, 200_000, 0.5),
                                                   (1_000_000, 200_000, 0.2), (3_000_000, 200_000, 0.05),
                                                   (10_000_000, 200_000, 0.02), (10**12, 10, 0.0001)])
def test_the_rate_is_the_largest_ladder_step_that_fits(count, max_rows, rate):
    assert sampling.rate_for(count, max_rows) == rate


def test_the_pipeline_and_the_template_carry_the_definition():
    pipeline = json.loads((TEMPLATES_DIR / "ml-events-ingested.ingest-pipeline.json").read_text())
    scripts = [p["script"] for p in pipeline["processors"] if "script" in p]
    assert [s["source"] for s in scripts] == [sampling.PAINLESS] and scripts[0]["lang"] == "painless"
    template = json.loads((TEMPLATES_DIR / "ml-events.index-template.json").read_text())
    assert template["template"]["mappings"]["properties"]["sampling"]["properties"]["key"]["type"] == "long"


def test_the_shipper_stamps_the_key_where_the_pipeline_would():
    event = prediction_event(model_name="m", model_version="1", request_id="abc", features=_features(0.5),
                             driver_id=1, score=0.5, label=1, latency_ms=1.0)
    assert stamp_sampling_key(event)["sampling"] == {"key": sampling.sample_key("abc")}
    assert "sampling" not in stamp_sampling_key({"request_id": ""})


def test_bad_stored_keys_are_counted_rejects_and_absent_ones_computed():
    docs = []
    for i, key in enumerate([None, "nope", -1, sampling.SPACE, 1.5, float("nan"), True, 12345, "absent"]):
        doc = stamp_ingested(prediction_event(model_name="driver_ranker", model_version="1", request_id=f"r{i}",
                                              features=_features(0.5), driver_id=1, score=0.5, label=1, latency_ms=1.0))
        if key != "absent":
            doc["sampling"] = {"key": key}
        docs.append(doc)
    chunk = parse_page(docs, MONITOR)
    assert chunk.rejected == {"sampling_key": 6}          # "nope", -1, 2^31, 1.5, NaN, true
    got = dict(zip(chunk.predictions["timestamp"].index, chunk.predictions[SAMPLING_KEY]))
    assert sorted(got.values()) == sorted([sampling.sample_key("r0"), 12345, sampling.sample_key("r8")])
    assert chunk.unkeyed == 2                              # null and absent: computed here


# --- statistics: the key's sample against the whole window -----------------------------------------

def test_drift_and_quality_on_the_keyed_sample_agree_with_the_whole_window():
    """20 fresh seeds: a window of 50 000 predictions, its key sample at rate 0.1. Per seed, the
    difference sample - whole of a drift statistic (Wasserstein distance of each feature to a fixed
    reference, in reference standard deviations; K-S statistic of the score) and of the quality
    (accuracy, ROC AUC) is compared with what simple random samples of that size give (100 of them
    from another window: their mean, the small-sample bias of a distance, and their standard
    deviation): each seed's difference within 4.5 standard deviations of that mean, and the mean of
    the 20 within 4.5 standard errors of it. The key sample behaves as a simple random sample, so the
    drift thresholds calibrated for the sample's size apply to it as they do to today's sample."""
    n, rate = 50_000, 0.1
    reference = _window(n, seed=1000)
    def figures(frame: pd.DataFrame) -> np.ndarray:
        drift = [stats.wasserstein_distance(frame[c], reference[c]) / reference[c].std() for c in ("x1", "x2")]
        ks = stats.ks_2samp(frame["score"], reference["score"]).statistic
        return np.array([*drift, ks, accuracy_score(frame["target"], frame["score"] >= 0.5),
                         roc_auc_score(frame["target"], frame["score"])])
    first = _window(n, seed=0)
    rng = np.random.default_rng(0)
    whole0 = figures(first)
    simple = np.array([figures(first.iloc[rng.choice(n, int(n * rate), replace=False)]) - whole0 for _ in range(100)])
    bias, sd = simple.mean(axis=0), simple.std(axis=0)
    diffs = []
    for seed in range(1, 21):
        window = _window(n, seed=seed)
        keyed = window[window["key"] < sampling.threshold(rate)]
        assert abs(len(keyed) - n * rate) < 5 * np.sqrt(n * rate)
        diffs.append(figures(keyed) - figures(window))
    diffs = np.array(diffs)
    assert (np.abs(diffs - bias) <= 4.5 * sd).all(), ((diffs - bias) / sd).round(2)
    tolerance = 4.5 * sd * np.sqrt(1 / len(diffs) + 1 / len(simple))
    assert (np.abs(diffs.mean(axis=0) - bias) <= tolerance).all(), ((diffs.mean(axis=0) - bias) / sd).round(2)


def _window(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ids = [f"{a:016x}{b:016x}" for a, b in zip(rng.integers(0, 2**63, n), rng.integers(0, 2**63, n))]
    x1, x2 = rng.normal(0, 1, n), rng.gamma(2.0, 1.0, n)
    p = 1 / (1 + np.exp(-(0.8 * x1 - 0.5 * (x2 - 2))))
    score = np.clip(p + rng.normal(0, 0.1, n), 0, 1)
    return pd.DataFrame({"key": sampling.sample_keys(ids), "x1": x1, "x2": x2, "score": score,
                         "target": (rng.random(n) < p).astype(int)})


# --- the read, on both stores ------------------------------------------------------------------------

def _features(v: float) -> dict:
    return {"conv_rate": v, "acc_rate": v, "avg_daily_trips": 100}


def _events(n: int, seed: int, *, keyed: bool = True, start: float = NOW - 500) -> list[dict]:
    """n predictions over [start, NOW - 20), 70 % labelled 5 s later; `keyed`: as the shipper stamps them."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        rid = f"{seed}-{i}-{int(rng.integers(0, 2**40)):x}"
        at = start + (NOW - 20 - start) * i / n
        ts = pd.Timestamp(at, unit="s", tz="UTC").to_pydatetime()
        v = float(rng.random())
        out.append(prediction_event(model_name="driver_ranker", model_version="1", request_id=rid, features=_features(v),
                                    driver_id=1, score=v, label=int(v >= 0.5), latency_ms=1.0, timestamp=ts))
        if rng.random() < 0.7:
            out.append(feedback_event(model_name="driver_ranker", model_version="1", request_id=rid,
                                      trip_completed=int(rng.random() < v),
                                      timestamp=pd.Timestamp(at + 5, unit="s", tz="UTC").to_pydatetime()))
    for doc in out:
        stamp_ingested(doc)
        if keyed:
            stamp_sampling_key(doc)
    return out


def _put(es, docs: list[dict], pipeline: bool = True) -> None:
    actions = [{"_op_type": "create", "_index": daily_index(EVENTS_INDEX_PREFIX, d["@timestamp"]),
                "_id": d["event"]["id"], "_source": d, **({} if pipeline else {"pipeline": "_none"})} for d in docs]
    helpers.bulk(es, actions, refresh=True)


def _window_of(url: str, monitor, sampled: bool, store: EventStore | None = None):
    store = store or EventStore(StoreSettings(url=url), page_size=200)
    return WindowReader(store, monitor.index, WindowReads(incremental=False, sampled=sampled)).windows([monitor], NOW)[monitor.name]


def test_a_sampled_window_is_the_whole_windows_requests_under_the_threshold(es, store_url):
    docs = _events(1500, seed=1)
    # some documents without a key (an older index), and some with a bad one
    for doc in docs[:200]:
        doc.pop("sampling", None)
    for doc in docs[200:210]:
        doc["sampling"] = {"key": sampling.SPACE + 5}
    _put(es, docs, pipeline=False)
    whole = _window_of(store_url, MONITOR, sampled=False)
    part = _window_of(store_url, MONITOR, sampled=True)
    rate = sampling.rate_for(1500, MONITOR.max_rows)
    assert rate == 0.2 and part.sampling_rate == rate and whole.sampling_rate == 1.0 and not whole.sampled
    # the engine's figures: every prediction document of the window
    unkeyed = sum(d["event"]["dataset"] == "ml.prediction" for d in docs[:200])
    assert part.rows == 1500 and part.figures.unkeyed == unkeyed
    assert part.missing_share == {"conv_rate": 0.0, "acc_rate": 0.0, "avg_daily_trips": 0.0}
    # the sample: exactly the whole window's requests under the threshold, labels and all
    under = whole.frame[whole.frame[SAMPLING_KEY] < sampling.threshold(rate)].reset_index(drop=True)
    cols = [c for c in under.columns if c != "_rank"]
    pd.testing.assert_frame_equal(part.frame[cols], under[cols])
    assert 0.1 * 1500 < part.sample_rows < 0.3 * 1500
    assert part.label_coverage == pytest.approx(under["target"].notna().mean())
    assert part.labelled == round(part.label_coverage * 1500)
    # bad keys are counted where they were read (all of them: out of range is read on purpose)
    assert part.rejected["sampling_key"] == whole.rejected["sampling_key"] == 10


def test_class_shares_of_a_sampled_window_are_the_engines_over_every_prediction(es, store_url):
    docs = _events(1500, seed=7)
    _put(es, docs, pipeline=False)
    labels = [d["prediction"]["label"] for d in docs if d["event"]["dataset"] == "ml.prediction"]
    exact = labels.count(1) / len(labels)
    part = _window_of(store_url, MONITOR, sampled=True)
    assert part.sampled and part.figures.predicted == {"0": labels.count(0), "1": labels.count(1)}
    assert part.predicted_shares(MONITOR.classes) == pytest.approx({"0": 1 - exact, "1": exact})
    sample_share = float((part.frame["prediction"] == 1).mean())
    assert abs(sample_share - exact) > 1e-6         # the sample's share is another figure
    exporter = Exporter([MONITOR.name])
    runner = MonitorRunner(MONITOR, EventStore(StoreSettings(url=store_url), page_size=200), exporter,
                           write_summaries=False, clock=lambda: NOW, reads=WindowReads(incremental=False))
    runner.reference()
    assert runner.run_once() == "ok"
    assert runner.state.summary["predicted_positive_share"] == pytest.approx(exact)
    shares = dict(exporter.latest(MONITOR.name)[CLASS_SHARE])
    assert shares[("prediction", "1")] == pytest.approx(exact) and shares[("prediction", "0")] == pytest.approx(1 - exact)
    # the labels' shares are the sample's (the engine cannot join a label to its prediction)
    labelled = part.frame["target"].dropna()
    assert shares[("target", "1")] == pytest.approx(float((labelled == 1).mean()))


@pytest.mark.parametrize("answer, error", [
    ({"predicted": {"buckets": "x"}}, "aggregation 'predicted' answered"),
    ({"predicted": {"buckets": [{"doc_count": 3}]}}, "a bucket without a key"),
    ({"predicted": {"buckets": [{"key": 1, "doc_count": 8}, {"key": 0, "doc_count": 5}]}},
     "counted more predictions than the window's 10"),
    ({"predicted": {"buckets": [{"key": 1, "doc_count": -1}]}}, "aggregation 'predicted' answered"),
    ({"predicted": {"buckets": [], "sum_other_doc_count": "many"}}, "aggregation 'predicted' answered"),
])
def test_an_engine_class_count_that_cannot_be_is_an_error_never_a_share(answer, error):
    counts = {"unkeyed": {"doc_count": 0}, **{f"missing_{i}": {"doc_count": 0} for i in range(3)}}
    with pytest.raises(ValueError, match=error):
        sampled.read_figures(MONITOR, 10, {**counts, **answer})
    # a numeric label read back as 1.0 is the class "1"; a value beyond the classes is counted, not named
    ok = sampled.read_figures(MONITOR, 10, {**counts, "predicted": {"buckets": [
        {"key": 1.0, "doc_count": 6}, {"key": 0, "doc_count": 2}, {"key": 7, "doc_count": 1}], "sum_other_doc_count": 1}})
    assert ok.predicted == {"1": 6, "0": 2, "7": 1} and ok.predicted_shares(("0", "1")) == {"0": 0.2, "1": 0.6}


def test_last_n_keeps_its_meaning_in_a_sampled_read(es, store_url):
    _put(es, _events(1200, seed=2), pipeline=False)
    monitor = dataclasses.replace(MONITOR, window_last=800)
    whole = _window_of(store_url, monitor, sampled=False)
    part = _window_of(store_url, monitor, sampled=True)
    assert part.sampling_rate == 0.2 and part.rows == 800
    assert part.start == whole.start          # the 800th latest prediction, found by the engine
    under = whole.frame[whole.frame[SAMPLING_KEY] < sampling.threshold(0.2)].reset_index(drop=True)
    assert part.frame["_eid"].tolist() == under["_eid"].tolist()


def test_a_small_window_is_read_whole_as_before(es, store_url):
    _put(es, _events(200, seed=3), pipeline=False)
    whole = _window_of(store_url, MONITOR, sampled=False)
    part = _window_of(store_url, MONITOR, sampled=True)
    assert part.sampling_rate == 1.0 and not part.sampled
    pd.testing.assert_frame_equal(part.frame, whole.frame)


class _WrongCounts(EventStore):
    def aggregate(self, index, filters, aggs, operation="count"):
        total, answer = super().aggregate(index, filters, aggs, operation)
        return total, {name: {"doc_count": total + 1} for name in answer}     # more missing than predictions


def test_a_store_that_cannot_count_falls_back_to_the_whole_read_with_one_log_line(es, store_url, caplog):
    _put(es, _events(600, seed=4), pipeline=False)
    store = _WrongCounts(StoreSettings(url=store_url), page_size=200)
    reader = WindowReader(store, MONITOR.index, WindowReads(incremental=False))
    with caplog.at_level(logging.WARNING, logger="log_processor"):
        first = reader.windows([MONITOR], NOW)[MONITOR.name]
        second = reader.windows([MONITOR], NOW)[MONITOR.name]
    assert first.sampling_rate == second.sampling_rate == 1.0 and first.rows == 600
    lines = [r.getMessage() for r in caplog.records if "cannot count" in r.getMessage()]
    assert len(lines) == 1 and MONITOR.name in lines[0]


class _Busy(EventStore):
    """Events keep arriving between the engine's count and the read."""
    late: list[dict] = []
    es = None

    def aggregate(self, index, filters, aggs, operation="count"):
        answer = super().aggregate(index, filters, aggs, operation)
        if self.late:
            _put(self.es, self.late, pipeline=False)
            self.late = []
        return answer


def test_a_count_that_changes_during_the_read_is_harmless(es, store_url):
    _put(es, _events(700, seed=5), pipeline=False)
    store = _Busy(StoreSettings(url=store_url), page_size=200)
    store.es, store.late = es, _events(700, seed=6, start=NOW - 400)
    runner = MonitorRunner(MONITOR, store, Exporter([MONITOR.name]), write_summaries=False, clock=lambda: NOW,
                           reads=WindowReads(incremental=False))
    runner.reference()
    assert runner.run_once() == "ok"
    summary = runner.state.summary
    # the rate and the figures are the count's (700 → 0.2); the sample holds what arrived since too,
    # and Evidently sees at most max_rows of it
    assert summary["sampling_rate"] == 0.2 and summary["rows"]["current"] == 700
    assert 0 < summary["rows"]["evaluated"] <= MONITOR.max_rows
    after = _window_of(store_url, MONITOR, sampled=True)
    assert after.rows == 1400 and after.sampling_rate == 0.2


# --- the pipeline on a real engine -------------------------------------------------------------------

@pytest.mark.opensearch
def test_the_ingest_pipeline_computes_the_keys_python_computes(opensearch_node):
    empty_opensearch(opensearch_node.url)
    es = connect(StoreSettings(url=opensearch_node.url))
    rng = np.random.default_rng(9)
    ids = [uuid.uuid4().hex for _ in range(300)] + [str(uuid.uuid4()) for _ in range(100)]
    ids += [f"req-{i}" for i in range(100)] + ["a", "é", "日本語", "😀-astral", "polygenelubricants", "x" * 500]
    docs = []
    for i, rid in enumerate(ids):
        doc = prediction_event(model_name="m", model_version="1", request_id=rid, features=_features(0.5),
                               driver_id=1, score=0.5, label=1, latency_ms=1.0)
        if i % 3 == 0:
            doc["sampling"] = {"key": int(rng.integers(0, 2**40))}      # a producer's wrong key: replaced
        docs.append(doc)
    nokey = prediction_event(model_name="m", model_version="1", request_id="", features=_features(0.5),
                             driver_id=1, score=0.5, label=1, latency_ms=1.0)
    nokey["sampling"] = {"key": 7}                                        # no request id: no key
    _put(es, [*docs, nokey])
    hits = {h["_id"]: h["_source"] for h in helpers.scan(es, index="ml-events-*", query={"query": {"match_all": {}}})}
    assert len(hits) == len(ids) + 1
    for doc, rid in zip(docs, ids):
        assert hits[doc["event"]["id"]]["sampling"]["key"] == sampling.sample_key(rid), rid
    assert "key" not in hits[nokey["event"]["id"]].get("sampling", {})
    es.close()
