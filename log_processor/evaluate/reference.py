"""A monitor's reference, loaded and prepared once per process: the Parquet written by training
(checked against its manifest) or a time range of events in the store (parsed and joined exactly like
a current window); its Evidently datasets and its own quality; and, for monitors with `drift.alpha`,
its drift thresholds by window size, and for monitors with `estimation`, its score calibration, both
cached beside a Parquet reference."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from evidently import Dataset

from log_processor.columns import PREDICTION, SCORE, TARGET
from log_processor.evaluate import drift_thresholds as thresholds
from log_processor.evaluate import estimation as est
from log_processor.evaluate import importance as imp
from log_processor.evaluate.datasets import drift_dataset, target_dataset
from log_processor.evaluate.drift_thresholds import DriftThresholds
from log_processor.evaluate.estimation import ScoreCalibration
from log_processor.evaluate.quality import task_quality
from log_processor.evaluate.stability import Bounds, reference_bounds
from log_processor.monitors import THRESHOLD_METHODS, THRESHOLD_SIZES, Monitor
from log_processor.read.parse import combine, parse_page, source_fields
from log_processor.read.store import EventStore
from log_processor.read.window import assemble
from log_processor.tasks import task_for
from log_processor.tasks.base import TaskQuality

log = logging.getLogger("log_processor")


DRIFT_THRESHOLDS_VERSION = "v3"      # v3: the prediction column and the target by the task's kinds (regression, multi-class)


class ReferenceUnusable(RuntimeError):
    """The reference cannot be used (missing file, hash mismatch, no rows): the monitor waits, the
    others go on."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Reference:
    """The reference, prepared once: Evidently datasets for the drift and target reports plus what describes it."""
    frame: pd.DataFrame
    drift: Dataset
    target: Dataset | None                     # the labelled reference rows' target (None: no labels)
    model_name: str
    model_version: str
    version: str
    sha256: str
    bounds: Bounds                             # the values the reference had (data stability)
    drift_thresholds: DriftThresholds | None = None   # by window size (monitors with drift.alpha)
    score_calibration: ScoreCalibration | None = None   # scores -> probabilities (monitors with estimation)
    quality_values: TaskQuality | None = None  # the task's quality on the reference's labelled rows
    importance: dict[str, float] | None = None  # feature -> permutation importance for the model (importance.py)

    @property
    def rows(self) -> int:
        return len(self.frame)


def prepare_reference(frame: pd.DataFrame, monitor: Monitor, *, model_name: str, model_version: str,
                      version: str, sha256: str) -> Reference:
    """Check the reference's columns, build its Evidently datasets and compute its own quality (done
    once per process)."""
    task = task_for(monitor)
    needed = [*monitor.feature_names, *task.reference_columns(monitor)]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(f"reference lacks columns {missing} for task {task.name} (has {list(frame.columns)})")
    if TARGET not in frame.columns:
        frame = frame.assign(**{TARGET: float("nan")})
    frame = task.normalise(frame, monitor)
    labelled = task.quality_frame(frame, monitor)
    values = task_quality(task, labelled, monitor)[0] if len(labelled) else None
    return Reference(
        frame=frame,
        drift=drift_dataset(frame, monitor),
        target=target_dataset(labelled, task) if len(labelled) else None, quality_values=values,
        bounds=reference_bounds(frame, monitor),
        model_name=model_name, model_version=model_version, version=version, sha256=sha256,
    )


def load_reference(monitor: Monitor, store: EventStore | None) -> Reference:
    config = monitor.reference
    if config.parquet is not None:
        reference = _from_parquet(monitor, config.parquet, config.manifest)
    elif store is None:
        raise ReferenceUnusable(f"monitor {monitor.name}: its reference is a range of the store, and no store was given")
    else:
        reference = _from_store(monitor, store)
    if config.manifest is not None:
        cache = config.parquet.with_name(config.parquet.name + ".importance.npz")
        reference = dataclasses.replace(reference, importance=load_importance(monitor, reference, config.manifest, cache))
    if monitor.estimation is not None:
        cache = config.parquet.with_name(config.parquet.name + ".score_calibration.npz") if config.parquet else None
        reference = dataclasses.replace(reference, score_calibration=load_score_calibration(monitor, reference, cache))
    if monitor.drift.alpha is None:
        return reference
    cache = config.parquet.with_name(config.parquet.name + ".drift_thresholds.npz") if config.parquet else None
    return dataclasses.replace(reference, drift_thresholds=load_drift_thresholds(monitor, reference, cache))


def load_importance(monitor: Monitor, reference: Reference, manifest: Path, cache: Path | None) -> dict[str, float] | None:
    """The model's permutation importance per feature (importance.py), from `cache` when its key
    matches, else computed (a second) and cached; None when the manifest names no usable model
    (the root causes then rank by drift alone)."""
    try:
        predict, model_features, model_sha = imp.model_of(manifest)
    except imp.ModelUnavailable as exc:
        log.warning("monitor %s: %s; root causes rank by drift alone", monitor.name, exc)
        return None
    key = imp.importance_key(reference.sha256, model_sha, monitor.feature_names)
    data = _read_cache(cache, key, monitor, "feature importance")
    if data is not None and "names" in data:
        return imp.from_arrays(data)
    missing = [f for f in model_features if f not in reference.frame.columns]
    if missing:
        log.warning("monitor %s: the reference lacks the model's features %s; no feature importance", monitor.name, missing)
        return None
    importance = imp.permutation_importance(predict, reference.frame, model_features, monitor.feature_names)
    _write_cache(cache, key, monitor, "feature importance", **imp.as_arrays(importance))
    return importance


def load_score_calibration(monitor: Monitor, reference: Reference, cache: Path | None) -> est.ScoreCalibration:
    """The score calibration (estimation.py) from `cache` when its key matches, else fitted on the
    reference's labelled rows and cached, like the drift calibration."""
    method = monitor.estimation.calibration
    key = (f"v2|{reference.sha256}|{method}|bins:{est.CALIBRATION_BINS}|folds:{est.CALIBRATION_FOLDS}"
           f"|replicates:{est.CALIBRATION_REPLICATES}|seed:0")
    data = _read_cache(cache, key, monitor, "score calibration")
    if data is not None:
        try:
            return est.ScoreCalibration(method, data["x"], data["y"], float(data["calibration_error"]),
                                        float(data["raw_calibration_error"]),
                                        json.loads(str(data["reference_quality"])), data["replicates"])
        except (ValueError, KeyError) as exc:
            log.warning("monitor %s: score calibration cache %s unreadable (%s); recomputing", monitor.name, cache, exc)
    labelled = reference.frame[reference.frame[TARGET].notna()]
    try:
        result = est.fit_calibration(labelled[SCORE].to_numpy(dtype=float), labelled[TARGET].to_numpy(dtype=int),
                                     labelled[PREDICTION].to_numpy(dtype=int), method)
    except ValueError as exc:
        raise ReferenceUnusable(f"monitor {monitor.name}: reference cannot calibrate the scores: {exc}") from None
    _write_cache(cache, key, monitor, "score calibration",
                 x=result.x, y=result.y, calibration_error=np.array(result.calibration_error),
                 raw_calibration_error=np.array(result.raw_calibration_error),
                 reference_quality=np.array(json.dumps(result.reference_quality)), replicates=result.replicates)
    return result


def _read_cache(cache: Path | None, key: str, monitor: Monitor, what: str) -> dict[str, np.ndarray] | None:
    """The arrays of a cache file whose key matches `key`; None when there is none, it is stale or unreadable."""
    if cache is None or not cache.exists():
        return None
    try:
        with np.load(cache, allow_pickle=False) as data:
            return {name: data[name] for name in data.files} if str(data["key"]) == key else None
    except (OSError, ValueError, KeyError) as exc:
        log.warning("monitor %s: %s cache %s unreadable (%s); recomputing", monitor.name, what, cache, exc)
        return None


def _write_cache(cache: Path | None, key: str, monitor: Monitor, what: str, **arrays: np.ndarray) -> None:
    """Written to a temporary file, then renamed: a crash never leaves half a cache."""
    if cache is None:
        return
    try:
        tmp = cache.with_name(cache.name + ".tmp.npz")
        np.savez(tmp, key=np.array(key), **arrays)
        tmp.replace(cache)
    except OSError as exc:
        log.warning("monitor %s: %s not cached at %s: %s", monitor.name, what, cache, exc)


def drift_thresholds_key(monitor: Monitor, reference: Reference) -> str:
    """What the cached draws depend on: the reference's bytes, each column's statistic, the sizes,
    the number of draws and the seed (alpha is not in it: thresholds are quantiles of the draws)."""
    task = task_for(monitor)
    kinds = ",".join(f"{f.name}:{THRESHOLD_METHODS[f.type]}" for f in monitor.features)
    return (f"{DRIFT_THRESHOLDS_VERSION}|{reference.sha256}|{kinds}|task:{task.name}"
            f"|score:{THRESHOLD_METHODS[task.prediction_kind]}|target:{THRESHOLD_METHODS[task.target_kind]}"
            f"|sizes:{','.join(map(str, THRESHOLD_SIZES))}|replicates:{thresholds.REPLICATES}|seed:0")


def load_drift_thresholds(monitor: Monitor, reference: Reference, cache: Path | None) -> thresholds.DriftThresholds:
    """The calibration from `cache` when its key matches, else computed (seconds) and cached."""
    key = drift_thresholds_key(monitor, reference)
    names = [*monitor.feature_names, "__score__"]
    data = _read_cache(cache, key, monitor, "calibration")
    if data is not None:
        try:
            nulls = {n: thresholds.NullDistribution(THRESHOLD_SIZES, data[n]) for n in names}
            target = thresholds.NullDistribution(THRESHOLD_SIZES, data["__target__"]) if "__target__" in data else None
            return thresholds.DriftThresholds(monitor.drift.alpha, {n: nulls[n] for n in monitor.feature_names},
                                   nulls["__score__"], target)
        except KeyError as exc:
            log.warning("monitor %s: calibration cache %s unreadable (%s); recomputing", monitor.name, cache, exc)
    started = time.perf_counter()
    task = task_for(monitor)
    result = thresholds.fit_thresholds(reference.frame, {f.name: f.type for f in monitor.features}, task.drift_column,
                           monitor.drift.alpha, target=(TARGET, task.target_kind), prediction_kind=task.prediction_kind)
    log.info("monitor %s: drift calibration computed in %.1f s", monitor.name, time.perf_counter() - started)
    arrays = {**{n: result.features[n].draws for n in monitor.feature_names}, "__score__": result.prediction.draws,
              **({"__target__": result.target.draws} if result.target is not None else {})}
    _write_cache(cache, key, monitor, "calibration", **arrays)
    return result


def _from_parquet(monitor: Monitor, path: Path, manifest_path: Path | None) -> Reference:
    if not path.exists():
        raise ReferenceUnusable(f"reference file {path} does not exist (run `python -m serving.bootstrap`)")
    digest = sha256_of(path)
    model_name, model_version, version = monitor.model_name or monitor.name, "unknown", digest[:12]
    if manifest_path is not None:
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, ValueError) as exc:
            raise ReferenceUnusable(f"cannot read manifest {manifest_path}: {exc}") from exc
        expected = (manifest.get("reference") or {}).get("sha256")
        if expected and expected != digest:
            raise ReferenceUnusable(f"{path} has sha256 {digest[:12]}…, but {manifest_path} expects "
                                 f"{expected[:12]}… (the model and its reference are out of step)")
        model_name = manifest.get("model_name", model_name)
        model_version = str(manifest.get("model_version", model_version))
        version = model_version
    frame = pd.read_parquet(path)
    if frame.empty:
        raise ReferenceUnusable(f"reference file {path} has no rows")
    return prepare_reference(frame, monitor, model_name=model_name, model_version=model_version,
                             version=version, sha256=digest)


def _from_store(monitor: Monitor, store: EventStore) -> Reference:
    start = monitor.reference.store_start.timestamp()
    end = monitor.reference.store_end.timestamp()
    chunks = store.scan(monitor.index, start, end + monitor.label_horizon_seconds, source_fields(monitor),
                        lambda docs: parse_page(docs, monitor))
    window = assemble(combine(chunks, monitor), dataclasses.replace(monitor, window_last=None), start, end,
                      labels_until=end + monitor.label_horizon_seconds)
    if window.rows == 0:
        raise ReferenceUnusable(f"no {monitor.prediction_dataset} events in the reference range "
                             f"{monitor.reference.store_start.isoformat()} .. {monitor.reference.store_end.isoformat()}")
    span = f"{monitor.reference.store_start.isoformat()}/{monitor.reference.store_end.isoformat()}"
    digest = hashlib.sha256(f"{monitor.index}|{span}|{window.rows}".encode()).hexdigest()
    return prepare_reference(window.frame, monitor, model_name=monitor.model_name or monitor.name,
                             model_version="unknown", version=f"store:{span}", sha256=digest)
