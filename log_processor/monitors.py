"""Monitor configuration: the YAML file parsed into frozen dataclasses, validated before anything runs.

Every error names the file, the line and the dotted key (`monitors.yaml:14: monitors[0].window.span:
...`), and unknown keys are errors too, so a typo never silently falls back to a default.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent

# Drift methods this processor accepts, and whether their score is a p-value (drift when the score is
# BELOW the threshold) or a distance (drift when it is AT OR ABOVE). A fixed set keeps the `method`
# label bounded and its meaning documented (docs/metrics.md).
P_VALUE_METHODS = ("ks", "chisquare", "z")
DISTANCE_METHODS = ("wasserstein", "psi", "jensenshannon", "kl_div", "hellinger")
DRIFT_METHODS = P_VALUE_METHODS + DISTANCE_METHODS
# Evidently's own defaults, used when a rule names a method but no threshold.
# drift.alpha: thresholds by window size come from the reference (evaluate/drift_thresholds.py), for
# these window sizes, with the statistic of each column type.
THRESHOLD_SIZES = (50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000)
THRESHOLD_METHODS = {"numerical": "wasserstein", "categorical": "jensenshannon"}
# estimation.calibration: how scores map to probabilities on the reference (evaluate/estimation.py).
SCORE_CALIBRATION_METHODS = ("isotonic", "platt")
DEFAULT_THRESHOLDS = {"ks": 0.05, "chisquare": 0.05, "z": 0.05, "wasserstein": 0.1, "psi": 0.1,
                      "jensenshannon": 0.1, "kl_div": 0.1, "hellinger": 0.1}
COLUMN_TYPES = ("numerical", "categorical")
# What a monitor's model does (`task:`); each has its module in log_processor/tasks/.
BINARY, MULTICLASS, REGRESSION = "binary_classification", "multiclass_classification", "regression"
TASKS = (BINARY, MULTICLASS, REGRESSION)
# The `prediction:` keys each task needs / allows (the field names of the event document).
PREDICTION_KEYS = {BINARY: (("label", "score"), ()), MULTICLASS: (("label",), ("scores",)),
                   REGRESSION: (("value",), ())}

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class ConfigError(ValueError):
    """A monitor file that cannot be used; the message names file, line and key."""


@dataclass(frozen=True)
class Feature:
    name: str     # column name in the reference and in Evidently
    field: str    # dotted path in the event document
    type: str     # numerical | categorical


@dataclass(frozen=True)
class DriftRule:
    method: str
    threshold: float


@dataclass(frozen=True)
class DriftConfig:
    default: DriftRule
    drift_share: float
    per_column: dict[str, DriftRule]   # feature name -> rule
    prediction: DriftRule
    alpha: float | None = None         # set: thresholds by window size, from the reference (evaluate/drift_thresholds.py)

    def rule(self, column: str) -> DriftRule:
        return self.per_column.get(column, self.default)


@dataclass(frozen=True)
class EstimationConfig:
    """Quality estimated from calibrated scores before labels land (evaluate/estimation.py)."""
    calibration: str = "isotonic"      # isotonic | platt: how scores map to probabilities on the reference
    confidence: float = 0.95           # coverage of the band around each estimate
    alert_margin: float = 0.05         # EstimatedQualityDrop: band's upper edge this far below the reference


@dataclass(frozen=True)
class SegmentsConfig:
    """`segments:`: the event fields to slice each window by (each field on its own), the largest
    `max_segments` values of each kept (the rest pooled as `other`), and the fewest rows a segment needs
    to be tested (the drift thresholds start at THRESHOLD_SIZES[0] rows). `quality_margin`: a segment's
    quality is degraded when it is worse than the reference's by more than this (classifiers: accuracy
    points; regression: the MAE ratio above quality.alert_ratio, else above 1 + margin)."""
    fields: tuple[str, ...]
    max_segments: int = 20
    min_rows: int = 100
    quality_margin: float = 0.05


@dataclass(frozen=True)
class ReferenceConfig:
    """Either a Parquet file written by training (+ its manifest) or a time range in the store."""
    parquet: Path | None = None
    manifest: Path | None = None
    store_start: datetime | None = None
    store_end: datetime | None = None


@dataclass(frozen=True)
class Monitor:
    name: str
    index: str
    model_name: str | None
    prediction_dataset: str
    feedback_dataset: str
    features: tuple[Feature, ...]
    prediction_label: str | None      # binary, multi-class: the logged predicted label / class
    prediction_score: str | None      # binary: the positive class's score
    target: str
    join_key: str
    window_seconds: float
    window_last: int | None
    min_rows: int
    min_labelled_rows: int
    interval_seconds: float
    label_horizon_seconds: float
    max_rows: int
    reference: ReferenceConfig
    drift: DriftConfig
    sample_seed: int | None = None
    estimation: EstimationConfig | None = None   # None: no estimated quality
    task: str = BINARY
    classes: tuple[str, ...] = ("0", "1")        # multi-class: the configured classes, in score order
    prediction_value: str | None = None          # regression: the predicted number
    prediction_scores: str | None = None         # multi-class: one score per class, in `classes` order
    quality_alert_ratio: float | None = None     # quality.alert_ratio: alert above this x the reference's error
    blind_after_seconds: float | None = None     # blind_after: no_data when the newest stored prediction is older
                                                 # (None: LOGPROC_BLIND_AFTER, else blind_after_default)
    segments: SegmentsConfig | None = None       # per-segment drift and quality (evaluate/segments.py)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)


def blind_after_default(monitor: Monitor) -> float:
    """How old the newest stored prediction may get before a cycle is `no_data` (docs/alerts.md#eventsnotarriving),
    when neither the monitor (`blind_after`) nor LOGPROC_BLIND_AFTER says: five intervals, at least five
    minutes (a shipper's retries and a store's refresh stay well under that; a model served a few times an
    hour should set its own)."""
    return max(5 * monitor.interval_seconds, 300.0)


# ---------------------------------------------------------------------------------------------------
# YAML nodes -> plain values, remembering each key's line so that errors can point at it.

class _Doc:
    """A parsed YAML value plus the line of every dotted path in it."""

    def __init__(self, path: Path, text: str):
        self.path = path
        self.lines: dict[str, int] = {}
        try:
            node = yaml.compose(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f":{mark.line + 1}" if mark else ""
            raise ConfigError(f"{path}{line}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
        self.value = self._convert(node, "") if node is not None else None

    def _convert(self, node: yaml.Node, where: str) -> Any:
        self.lines[where] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = str(key_node.value)
                child = f"{where}.{key}" if where else key
                if key in out:
                    raise ConfigError(f"{self.path}:{key_node.start_mark.line + 1}: {child}: duplicate key")
                self.lines[child] = key_node.start_mark.line + 1
                out[key] = self._convert(value_node, child)
                self.lines[child] = key_node.start_mark.line + 1
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self._convert(item, f"{where}[{i}]") for i, item in enumerate(node.value)]
        return yaml.constructor.SafeConstructor().construct_object(node)

    def error(self, where: str, message: str) -> ConfigError:
        probe = where
        while probe and probe not in self.lines:
            probe = probe.rsplit(".", 1)[0] if "." in probe else ""
        line = self.lines.get(probe)
        return ConfigError(f"{self.path}{f':{line}' if line else ''}: {where or '(top level)'}: {message}")


class _Section:
    """One mapping of the file: typed getters that raise ConfigError naming the key."""

    def __init__(self, doc: _Doc, where: str, value: Any, allowed: tuple[str, ...]):
        if not isinstance(value, dict):
            raise doc.error(where, f"must be a mapping, got {type(value).__name__}")
        unknown = [k for k in value if k not in allowed]
        if unknown:
            key = f"{where}.{unknown[0]}" if where else unknown[0]
            raise doc.error(key, f"unknown key (allowed: {', '.join(allowed)})")
        self.doc, self.where, self.value = doc, where, value

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def has(self, name: str) -> bool:
        return self.value.get(name) is not None

    def raw(self, name: str, default: Any = ..., required: bool = False) -> Any:
        if name not in self.value or self.value[name] is None:
            if required or default is ...:
                raise self.doc.error(self.where, f"missing required key '{name}'")
            return default
        return self.value[name]

    def section(self, name: str, allowed: tuple[str, ...], default: Any = ...) -> "_Section":
        return _Section(self.doc, self.key(name), self.raw(name, default), allowed)

    def text(self, name: str, default: Any = ...) -> Any:
        value = self.raw(name, default)
        if value is default and default is not ...:
            return value
        if not isinstance(value, str) or not value.strip():
            raise self.doc.error(self.key(name), f"must be a non-empty string, got {value!r}")
        return value

    def number(self, name: str, default: Any = ..., *, integer: bool = False,
               check: Callable[[float], bool] = lambda v: True, expect: str = "") -> Any:
        value = self.raw(name, default)
        if value is default and default is not ...:
            return value
        ok = isinstance(value, int) if integer else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok or not check(value):
            kind = "an integer" if integer else "a number"
            raise self.doc.error(self.key(name), f"must be {kind}{expect}, got {value!r}")
        return int(value) if integer else float(value)

    def duration(self, name: str, default: Any = ...) -> Any:
        value = self.raw(name, default)
        if value is default and default is not ...:
            return value
        seconds = parse_duration(value)
        if seconds is None or seconds <= 0:
            raise self.doc.error(self.key(name), f"must be a positive duration like 90s, 15m, 2h, got {value!r}")
        return seconds

    def choice(self, name: str, options: tuple[str, ...], default: Any = ...) -> Any:
        value = self.raw(name, default)
        if value not in options:
            raise self.doc.error(self.key(name), f"must be one of {', '.join(options)}, got {value!r}")
        return value


def parse_duration(value: Any) -> float | None:
    """`90` / `"90s"` / `"15m"` / `"2h"` / `"1d"` / `"500ms"` → seconds; None when not a duration."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        return None
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _resolve(path_value: str, base: Path) -> Path:
    path = Path(path_value)
    return path if path.is_absolute() else (base / path)


# ---------------------------------------------------------------------------------------------------

_TOP = ("monitors",)
_MONITOR = ("name", "index", "model_name", "datasets", "features", "prediction", "target", "join_key",
            "window", "min_rows", "min_labelled_rows", "interval", "label_horizon", "max_rows",
            "reference", "drift", "sample_seed", "estimation", "task", "classes", "quality", "segments",
            "blind_after")
_SEGMENTS = ("fields", "max_segments", "min_rows", "quality_margin")
_FIELD = re.compile(r"^[A-Za-z0-9_@-]+(\.[A-Za-z0-9_@-]+)*$")
MAX_SEGMENTS = 200      # the summary holds every segment; more than this per field is a label cardinality bug


def load_monitors(path: Path | str, *, base_dir: Path = REPO_ROOT,
                  interval_override: float | None = None) -> tuple[Monitor, ...]:
    """Read and validate a monitors file; relative paths inside it are relative to `base_dir`."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read monitors file: {exc.strerror or exc}") from None
    doc = _Doc(path, text)
    top = _Section(doc, "", doc.value if doc.value is not None else {}, _TOP)
    items = top.raw("monitors", required=True)
    if not isinstance(items, list) or not items:
        raise doc.error("monitors", "must be a non-empty list of monitors")
    monitors = tuple(_monitor(doc, f"monitors[{i}]", item, base_dir, interval_override)
                     for i, item in enumerate(items))
    seen: set[str] = set()
    for i, monitor in enumerate(monitors):
        if monitor.name in seen:
            raise doc.error(f"monitors[{i}].name", f"duplicate monitor name {monitor.name!r}")
        seen.add(monitor.name)
    return monitors


def _monitor(doc: _Doc, where: str, value: Any, base_dir: Path, interval_override: float | None) -> Monitor:
    s = _Section(doc, where, value, _MONITOR)
    name = s.text("name")
    if not _NAME.match(name):
        raise doc.error(s.key("name"), f"must match {_NAME.pattern} (it becomes a metric label), got {name!r}")

    datasets = s.section("datasets", ("prediction", "feedback"), {})
    features = _features(s, doc)
    task = s.choice("task", TASKS, BINARY)
    required, optional = PREDICTION_KEYS[task]
    prediction = s.section("prediction", required + optional)
    for key in required:
        if not prediction.has(key):
            raise doc.error(prediction.key(key), f"required for task {task} (prediction needs: {', '.join(required)})")
    classes = _classes(s, task)
    if task != BINARY and s.has("estimation"):
        raise doc.error(s.key("estimation"), f"only for task {BINARY} (it calibrates the positive class's score)")
    window = s.section("window", ("span", "last"))
    if not window.has("span") and not window.has("last"):
        raise doc.error(window.where, "needs 'span' (a duration) and/or 'last' (a count of predictions)")
    last = window.number("last", None, integer=True, check=lambda v: v > 0, expect=" > 0")
    # Only `last` given: look back at most a day for the latest N predictions.
    span = window.duration("span", 86400.0 if last else ...)

    min_rows = s.number("min_rows", 100, integer=True, check=lambda v: v > 0, expect=" > 0")
    max_rows = s.number("max_rows", 200_000, integer=True, check=lambda v: v > 0, expect=" > 0")
    if max_rows < min_rows:
        raise doc.error(s.key("max_rows"), f"must be >= min_rows ({min_rows}), got {max_rows}")
    interval = s.duration("interval", 60.0)
    return Monitor(
        name=name,
        index=s.text("index", "ml-events-*"),
        model_name=s.text("model_name", None),
        prediction_dataset=datasets.text("prediction", "ml.prediction"),
        feedback_dataset=datasets.text("feedback", "ml.feedback"),
        features=features,
        prediction_label=prediction.text("label", None),
        prediction_score=prediction.text("score", None),
        target=s.text("target"),
        join_key=s.text("join_key", "request_id"),
        window_seconds=span,
        window_last=last,
        min_rows=min_rows,
        min_labelled_rows=s.number("min_labelled_rows", 50, integer=True, check=lambda v: v > 0, expect=" > 0"),
        interval_seconds=interval_override if interval_override is not None else interval,
        label_horizon_seconds=s.duration("label_horizon", 3600.0),
        max_rows=max_rows,
        reference=_reference(s.section("reference", ("parquet", "manifest", "store")), base_dir),
        drift=_drift(s, features, min_rows, task),
        sample_seed=s.number("sample_seed", None, integer=True),
        estimation=_estimation(s),
        task=task,
        classes=classes,
        prediction_value=prediction.text("value", None),
        prediction_scores=prediction.text("scores", None),
        quality_alert_ratio=_quality(s, task),
        blind_after_seconds=s.duration("blind_after", None),
        segments=_segments(s, features),
    )


def _segments(monitor: _Section, features: tuple[Feature, ...]) -> SegmentsConfig | None:
    """`segments:` checked like every other key; it needs `drift.alpha` (per-segment tests take their
    p-values from the reference's null distributions, sized to each segment's rows)."""
    if not monitor.has("segments"):
        return None
    s = monitor.section("segments", _SEGMENTS)
    raw = s.raw("fields", required=True)
    if not isinstance(raw, list) or not raw:
        raise s.doc.error(s.key("fields"), f"must be a non-empty list of event fields (e.g. [context.city]), got {raw!r}")
    fields = []
    for i, value in enumerate(raw):
        where = f"{s.key('fields')}[{i}]"
        if not isinstance(value, str) or not _FIELD.match(value):
            raise s.doc.error(where, f"must be a dotted event field like context.city, got {value!r}")
        if value in fields:
            raise s.doc.error(where, f"duplicate segment field {value!r}")
        if value in {f.field for f in features}:
            raise s.doc.error(where, f"{value!r} is a feature of this monitor; segment by a field that is not tested for drift")
        fields.append(value)
    drift = monitor.value.get("drift")
    if not isinstance(drift, dict) or drift.get("alpha") is None:
        raise s.doc.error(s.where, "needs drift.alpha (each segment's p-values come from the reference's null "
                                   "distributions, sized to the segment's rows)")
    default = SegmentsConfig(fields=())
    return SegmentsConfig(
        fields=tuple(fields),
        max_segments=s.number("max_segments", default.max_segments, integer=True,
                              check=lambda v: 1 <= v <= MAX_SEGMENTS, expect=f" in [1, {MAX_SEGMENTS}]"),
        min_rows=s.number("min_rows", default.min_rows, integer=True, check=lambda v: v >= THRESHOLD_SIZES[0],
                          expect=f" >= {THRESHOLD_SIZES[0]} (the smallest window the drift thresholds cover)"),
        quality_margin=s.number("quality_margin", default.quality_margin, check=lambda v: 0 <= v < 1,
                                expect=" in [0, 1)"),
    )


def _classes(s: _Section, task: str) -> tuple[str, ...]:
    """Multi-class: at least three distinct class names (two are a binary monitor), kept as strings in
    the order the score vectors follow."""
    if task != MULTICLASS:
        if s.has("classes"):
            raise s.doc.error(s.key("classes"), f"only for task {MULTICLASS}")
        return ("0", "1")
    raw = s.raw("classes", required=True)
    if not isinstance(raw, list) or any(isinstance(c, (bool, list, dict)) or c is None or str(c) == "" for c in raw):
        raise s.doc.error(s.key("classes"), f"must be a list of class names, got {raw!r}")
    classes = tuple(str(c) for c in raw)
    if len(set(classes)) != len(classes) or len(classes) < 3:
        raise s.doc.error(s.key("classes"), f"needs at least 3 distinct classes, got {list(classes)}")
    reserved = {"target", "prediction"} & set(classes)
    if reserved:
        raise s.doc.error(s.key("classes"), f"{sorted(reserved)[0]!r} is a column name of the evaluation, not a class")
    return classes


def _quality(s: _Section, task: str) -> float | None:
    if not s.has("quality"):
        return None
    q = s.section("quality", ("alert_ratio",))
    if task != REGRESSION:
        raise s.doc.error(q.key("alert_ratio"), f"only for task {REGRESSION} (window error / reference error)")
    return q.number("alert_ratio", check=lambda v: v >= 1, expect=" >= 1")


def _estimation(monitor: _Section) -> EstimationConfig | None:
    if not monitor.has("estimation"):
        return None
    s = monitor.section("estimation", ("calibration", "confidence", "alert_margin"))
    default = EstimationConfig()
    return EstimationConfig(
        calibration=s.choice("calibration", SCORE_CALIBRATION_METHODS, default.calibration),
        confidence=s.number("confidence", default.confidence, check=lambda v: 0.5 <= v < 1, expect=" in [0.5, 1)"),
        alert_margin=s.number("alert_margin", default.alert_margin, check=lambda v: 0 <= v < 1, expect=" in [0, 1)"),
    )


def _features(s: _Section, doc: _Doc) -> tuple[Feature, ...]:
    raw = s.raw("features")
    if not isinstance(raw, dict) or not raw:
        raise doc.error(s.key("features"), "must be a non-empty mapping of column name -> {field, type}")
    features = []
    for name in raw:
        f = _Section(doc, f"{s.key('features')}.{name}", raw[name], ("field", "type"))
        features.append(Feature(name=str(name), field=f.text("field", f"features.{name}"),
                                type=f.choice("type", COLUMN_TYPES, "numerical")))
    return tuple(features)


def _reference(s: _Section, base_dir: Path) -> ReferenceConfig:
    if s.has("store") == s.has("parquet"):
        raise s.doc.error(s.where, "needs exactly one of 'parquet' (a file written by training) "
                                   "or 'store' (a time range of events)")
    if s.has("parquet"):
        manifest = s.text("manifest", None)
        return ReferenceConfig(parquet=_resolve(s.text("parquet"), base_dir),
                               manifest=_resolve(manifest, base_dir) if manifest else None)
    store = s.section("store", ("start", "end"))
    bounds = []
    for key in ("start", "end"):
        value = store.raw(key)
        try:
            parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            raise s.doc.error(store.key(key), f"must be an ISO-8601 timestamp, got {value!r}") from None
        if parsed.tzinfo is None:
            raise s.doc.error(store.key(key), f"needs a time zone (e.g. a trailing Z), got {value!r}")
        bounds.append(parsed)
    if bounds[0] >= bounds[1]:
        raise s.doc.error(store.key("end"), "must be after start")
    return ReferenceConfig(store_start=bounds[0], store_end=bounds[1])


def _rule(s: _Section, default: DriftRule | None) -> DriftRule:
    method = s.choice("method", DRIFT_METHODS, default.method if default else ...)
    inherited = default.threshold if default and method == default.method else DEFAULT_THRESHOLDS[method]
    threshold = s.number("threshold", inherited, check=lambda v: v > 0, expect=" > 0")
    return DriftRule(method=method, threshold=threshold)


def _drift(monitor: _Section, features: tuple[Feature, ...], min_rows: int, task: str = BINARY) -> DriftConfig:
    s = monitor.section("drift", ("method", "threshold", "drift_share", "columns", "prediction", "alpha"), {})
    feature_names = [f.name for f in features]
    share = s.number("drift_share", 0.5, check=lambda v: 0 < v <= 1, expect=" in (0, 1]")
    if s.has("alpha"):
        return _alpha_drift(s, features, share, min_rows, task)
    default = _rule(s, DriftRule("wasserstein", 0.1))
    per_column: dict[str, DriftRule] = {}
    columns = s.raw("columns", {})
    if not isinstance(columns, dict):
        raise s.doc.error(s.key("columns"), "must be a mapping of feature name -> {method, threshold}")
    for name in columns:
        if name not in feature_names:
            raise s.doc.error(f"{s.key('columns')}.{name}",
                              f"not a feature of this monitor (features: {', '.join(feature_names)})")
        per_column[name] = _rule(_Section(s.doc, f"{s.key('columns')}.{name}", columns[name],
                                          ("method", "threshold")), default)
    # A multi-class prediction is a class: a categorical method unless one is set.
    prediction_default = DriftRule("jensenshannon", DEFAULT_THRESHOLDS["jensenshannon"]) if task == MULTICLASS else default
    prediction = _rule(s.section("prediction", ("method", "threshold"), {}), prediction_default)
    return DriftConfig(default=default, drift_share=share, per_column=per_column, prediction=prediction)


def _alpha_drift(s: _Section, features: tuple[Feature, ...], share: float, min_rows: int,
                      task: str = BINARY) -> DriftConfig:
    """`alpha`: each column's method follows its type (THRESHOLD_METHODS) and its threshold
    comes from the reference, so neither may be set by hand; windows below the sizes the thresholds cover are
    refused here, with the smallest usable size."""
    alpha = s.number("alpha", check=lambda v: 0 < v < 0.5, expect=" in (0, 0.5)")
    for key in ("method", "threshold", "columns", "prediction"):
        if s.has(key):
            raise s.doc.error(s.key(key), "not with `alpha`: drift.alpha sets each column's method "
                                          "(wasserstein for numerical, jensenshannon for categorical) and threshold")
    if min_rows < THRESHOLD_SIZES[0]:
        raise s.doc.error(s.key("alpha").rsplit(".", 2)[0] + ".min_rows",
                          f"{min_rows} is below the smallest window the drift thresholds cover: "
                          f"min_rows must be at least {THRESHOLD_SIZES[0]}")
    per_column = {f.name: DriftRule(THRESHOLD_METHODS[f.type], math.nan) for f in features}
    numerical = DriftRule(THRESHOLD_METHODS["numerical"], math.nan)
    prediction = DriftRule(THRESHOLD_METHODS["categorical" if task == MULTICLASS else "numerical"], math.nan)
    return DriftConfig(default=numerical, drift_share=share, per_column=per_column, prediction=prediction,
                       alpha=alpha)
