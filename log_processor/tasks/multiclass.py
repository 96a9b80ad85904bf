"""Multi-class classification: accuracy and macro precision, recall and F1 of the logged predicted
class, and per class precision, recall and F1, all Evidently's (`MulticlassClassification` with the
labels only: given scores, Evidently would rank by them instead of reading the logged class). With a
score vector, the probabilistic family too, from a second classification over the scores. The predicted
class is the prediction-drift column (categorical).

Evidently is handed each class as its index in `classes` (and the score columns named "0", "1", ...):
scikit-learn, under Evidently, sorts the labels of every metric again, and sorting strings made the
quality report five times slower than sorting integers (3.1 s against 0.6 s at 50 000 labelled rows).
The per-class values are named by class again when they are read."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd
from evidently import DataDefinition, MulticlassClassification
from evidently.metrics import (Accuracy, F1ByLabel, F1Score, Precision, PrecisionByLabel, Recall,
                               RecallByLabel)

from log_processor.monitors import MULTICLASS, Monitor
from log_processor.tasks import probabilistic
from log_processor.tasks.base import (CLASSIFICATION_QUALITY, ONE_CONFUSION_MATRIX, REFERENCE_CLASSIFICATION_QUALITY,
                                     Family, Panel, Samples, TaskQuality, classification_panels, finite, samples_of)
from log_processor.columns import (PREDICTION, TARGET, Columns, Rejects, class_column, score_column,
                                   score_vectors)

QUALITY_METRICS = {"accuracy": Accuracy, "precision_macro": Precision, "recall_macro": Recall, "f1_macro": F1Score}
PER_CLASS = {"precision": PrecisionByLabel, "recall": RecallByLabel, "f1": F1ByLabel}
CLASS_QUALITY = Family("mlmon_class_quality", "Per-class quality on labelled rows (multi-class)", ("class", "metric"))


class Multiclass:
    name = MULTICLASS
    prediction_kind = "categorical"
    target_kind = "categorical"
    drift_column = PREDICTION
    families = (CLASSIFICATION_QUALITY, REFERENCE_CLASSIFICATION_QUALITY, CLASS_QUALITY)
    title = "Multi-class classification quality"

    def prediction_field(self, monitor: Monitor) -> str:
        return monitor.prediction_label

    def reference_columns(self, monitor: Monitor) -> list[str]:
        scores = [score_column(c) for c in monitor.classes] if monitor.prediction_scores else []
        return [PREDICTION, *scores]

    def prediction_columns(self, columns: Columns, monitor: Monitor, rejects: Rejects) -> dict[str, np.ndarray]:
        """The logged class, and with `prediction.scores` a score column per class."""
        out = {PREDICTION: class_column(columns(monitor.prediction_label), monitor.classes, rejects)}
        if monitor.prediction_scores:
            scores = score_vectors(columns(monitor.prediction_scores), len(monitor.classes), rejects,
                                   typed=columns.typed)
            out.update({score_column(c): scores[:, i] for i, c in enumerate(monitor.classes)})
        return out

    def target_column(self, raw: list[Any], monitor: Monitor, rejects: Rejects) -> np.ndarray:
        return class_column(raw, monitor.classes, rejects)

    def normalise(self, frame: pd.DataFrame, monitor: Monitor) -> pd.DataFrame:
        """A reference's classes as strings, and none outside `classes` (a misconfigured monitor)."""
        out = frame.assign(**{c: frame[c].where(frame[c].isna(), frame[c].astype(str)) for c in (PREDICTION, TARGET)})
        for column in (PREDICTION, TARGET):
            unknown = set(out[column].dropna()) - set(monitor.classes)
            if unknown:
                raise ValueError(f"reference column {column!r} has classes {sorted(unknown)} outside the monitor's "
                                 f"classes {list(monitor.classes)}")
        return out

    def quality_frame(self, frame: pd.DataFrame, monitor: Monitor) -> pd.DataFrame:
        labelled = frame[frame[TARGET].notna()]
        out = {TARGET: codes(labelled[TARGET], monitor), PREDICTION: codes(labelled[PREDICTION], monitor)}
        if monitor.prediction_scores:     # Evidently names the score columns by their class (its code)
            out.update({str(i): labelled[score_column(c)].to_numpy(dtype=float) for i, c in enumerate(monitor.classes)})
        return pd.DataFrame(out)

    def class_names(self, labels: pd.Series, monitor: Monitor) -> pd.Series:
        """The class strings, from the window's strings or the quality frame's codes."""
        if pd.api.types.is_integer_dtype(labels):
            return pd.Series(np.asarray(monitor.classes, dtype=object)[labels.to_numpy()], index=labels.index)
        return labels.astype(str)

    def definition(self, monitor: Monitor) -> DataDefinition:
        classifications = [MulticlassClassification(target=TARGET, prediction_labels=PREDICTION)]
        if monitor.prediction_scores:
            classifications.append(MulticlassClassification(name=probabilistic.PROBAS, target=TARGET,
                                                            prediction_probas=_score_names(monitor)))
        return DataDefinition(categorical_columns=[TARGET, PREDICTION],
                              numerical_columns=_score_names(monitor) if monitor.prediction_scores else None,
                              classification=classifications)

    def metrics(self, monitor: Monitor, labelled: pd.DataFrame) -> dict[str, Any]:
        metrics: dict[str, Any] = {name: cls(**ONE_CONFUSION_MATRIX.get(cls, {})) for name, cls in QUALITY_METRICS.items()}
        metrics.update({f"c:{name}": cls() for name, cls in PER_CLASS.items()})
        if monitor.prediction_scores:
            present = labelled[TARGET].nunique()
            metrics.update(probabilistic.evidently_metrics(present, len(monitor.classes)))
        return metrics

    def read(self, values: Mapping[str, Any], metrics: Mapping[str, Any], labelled: pd.DataFrame,
             monitor: Monitor) -> TaskQuality:
        raw = {name: values[m.metric_id][0] for name, m in metrics.items()}
        per_class = {}
        for name in PER_CLASS:
            by_label = raw.get(f"c:{name}") or {}
            per_class.update({(monitor.classes[int(code)], name): v for code, v in by_label.items()})
        quality = TaskQuality(metrics=finite({k: raw[k] for k in QUALITY_METRICS}), per_class=finite(per_class))
        if not monitor.prediction_scores:
            return quality
        scores = labelled[_score_names(monitor)].to_numpy(dtype=float)
        onehot = (labelled[TARGET].to_numpy()[:, None] == np.arange(len(monitor.classes))[None, :]).astype(float)
        top = scores.argmax(axis=1) if len(scores) else np.zeros(0, dtype=int)
        hits = onehot[np.arange(len(top)), top] if len(top) else np.zeros(0)
        hand, curve = probabilistic.by_hand(scores.max(axis=1) if len(scores) else np.zeros(0), hits, scores, onehot)
        _, evidently = probabilistic.split(raw)
        return TaskQuality(metrics=quality.metrics, per_class=quality.per_class, calibration_curve=curve,
                           probabilistic=finite({**evidently, **hand}))

    def samples(self, quality: TaskQuality, monitor: Monitor) -> Samples:
        return {**samples_of(CLASSIFICATION_QUALITY, quality.metrics), **samples_of(CLASS_QUALITY, quality.per_class)}

    def reference_samples(self, quality: TaskQuality | None, monitor: Monitor) -> Samples:
        return samples_of(REFERENCE_CLASSIFICATION_QUALITY, quality.metrics) if quality else {}

    def summary_fields(self, frame: pd.DataFrame, monitor: Monitor,
                       predicted: dict[str, float] | None = None) -> dict[str, Any]:
        return {"predicted_positive_share": None}     # class shares: mlmon_class_share

    def panels(self, monitor: Monitor) -> tuple[Panel, ...]:
        return classification_panels(("accuracy", "f1_macro"), monitor)


TASK = Multiclass()


def codes(classes: pd.Series, monitor: Monitor) -> np.ndarray:
    """Each class as its index in the monitor's `classes` (validated upstream: none is outside them)."""
    return pd.Categorical(classes.astype(str), categories=list(monitor.classes)).codes.astype(np.int64)


def _score_names(monitor: Monitor) -> list[str]:
    return [str(i) for i in range(len(monitor.classes))]
