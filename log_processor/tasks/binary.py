"""Binary classification (the default task): accuracy, precision, recall and F1 of the *logged*
predicted labels (never a threshold on the score) against the realized 0/1 targets, all Evidently's;
the positive-class score drives the prediction drift and the probabilistic family."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd
from evidently import BinaryClassification, DataDefinition
from evidently.metrics import Accuracy, F1Score, Precision, Recall

from log_processor.columns import PREDICTION, SCORE, TARGET, Columns, Rejects, number_column
from log_processor.monitors import BINARY, Monitor
from log_processor.tasks import probabilistic
from log_processor.tasks.base import (CLASSIFICATION_QUALITY, ONE_CONFUSION_MATRIX, REFERENCE_CLASSIFICATION_QUALITY,
                                     Panel, Samples, TaskQuality, classification_panels, finite, samples_of)

QUALITY_METRICS = {"accuracy": Accuracy, "precision": Precision, "recall": Recall, "f1": F1Score}


class Binary:
    name = BINARY
    prediction_kind = "numerical"
    target_kind = "categorical"
    drift_column = SCORE
    families = (CLASSIFICATION_QUALITY, REFERENCE_CLASSIFICATION_QUALITY)
    title = "Classification quality"

    def prediction_field(self, monitor: Monitor) -> str:
        return monitor.prediction_score

    def reference_columns(self, monitor: Monitor) -> list[str]:
        return [PREDICTION, SCORE]

    def prediction_columns(self, columns: Columns, monitor: Monitor, rejects: Rejects) -> dict[str, np.ndarray]:
        """The logged label (0/1) and the positive-class score."""
        label = number_column(columns(monitor.prediction_label), rejects)
        score = number_column(columns(monitor.prediction_score), rejects)
        return {PREDICTION: np.where(np.isnan(label), 0, label).astype(np.int64), SCORE: score}

    def target_column(self, raw: list[Any], monitor: Monitor, rejects: Rejects) -> np.ndarray:
        values = number_column(raw, rejects)
        return np.where(np.isnan(values), 0, values).astype(np.int64)

    def normalise(self, frame: pd.DataFrame, monitor: Monitor) -> pd.DataFrame:
        return frame

    def quality_frame(self, frame: pd.DataFrame, monitor: Monitor) -> pd.DataFrame:
        labelled = frame[frame[TARGET].notna()]
        return pd.DataFrame({TARGET: labelled[TARGET].astype(int).to_numpy(),
                             PREDICTION: labelled[PREDICTION].astype(int).to_numpy(),
                             SCORE: labelled[SCORE].astype(float).to_numpy()})

    def class_names(self, labels: pd.Series, monitor: Monitor) -> pd.Series:
        """0/1 labels as the gauges' class names "0" and "1"."""
        return labels.astype(int).astype(str)

    def definition(self, monitor: Monitor) -> DataDefinition:
        return DataDefinition(
            categorical_columns=[TARGET, PREDICTION], numerical_columns=[SCORE],
            classification=[BinaryClassification(target=TARGET, prediction_labels=PREDICTION),
                            BinaryClassification(name=probabilistic.PROBAS, target=TARGET,
                                                 prediction_probas=SCORE, pos_label=1)])

    def metrics(self, monitor: Monitor, labelled: pd.DataFrame) -> dict[str, Any]:
        present = labelled[TARGET].nunique()
        return {**{name: cls(**ONE_CONFUSION_MATRIX.get(cls, {})) for name, cls in QUALITY_METRICS.items()},
                **probabilistic.evidently_metrics(present, 2)}

    def read(self, values: Mapping[str, Any], metrics: Mapping[str, Any], labelled: pd.DataFrame,
             monitor: Monitor) -> TaskQuality:
        own, evidently = probabilistic.split({name: values[m.metric_id][0] for name, m in metrics.items()})
        y, p = labelled[TARGET].to_numpy(dtype=float), labelled[SCORE].to_numpy(dtype=float)
        hand, curve = probabilistic.by_hand(p, y, p[:, None], y[:, None])
        return TaskQuality(metrics=finite(own), probabilistic=finite({**evidently, **hand}), calibration_curve=curve)

    def samples(self, quality: TaskQuality, monitor: Monitor) -> Samples:
        return samples_of(CLASSIFICATION_QUALITY, quality.metrics)

    def reference_samples(self, quality: TaskQuality | None, monitor: Monitor) -> Samples:
        return samples_of(REFERENCE_CLASSIFICATION_QUALITY, quality.metrics) if quality else {}

    def summary_fields(self, frame: pd.DataFrame, monitor: Monitor,
                       predicted: dict[str, float] | None = None) -> dict[str, Any]:
        if predicted is not None:
            return {"predicted_positive_share": predicted.get("1", 0.0)}
        return {"predicted_positive_share": float((frame[PREDICTION] == 1).mean()) if len(frame) else None}

    def panels(self, monitor: Monitor) -> tuple[Panel, ...]:
        return classification_panels(("accuracy", "f1"), monitor)


TASK = Binary()

