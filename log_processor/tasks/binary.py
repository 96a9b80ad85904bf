"""Binary classification (the default task): accuracy, precision, recall and F1 of the *logged*
predicted labels (never a threshold on the score) against the realized 0/1 targets, all Evidently's;
the positive-class score drives the prediction drift and the probabilistic family."""
from __future__ import annotations

from typing import Any, Mapping

import pandas as pd
from evidently import BinaryClassification, DataDefinition
from evidently.metrics import Accuracy, F1Score, Precision, Recall

from log_processor.monitors import BINARY, Monitor
from log_processor.tasks import TaskQuality, finite, probabilistic
from log_processor.validate import PREDICTION, SCORE, TARGET

QUALITY_METRICS = {"accuracy": Accuracy, "precision": Precision, "recall": Recall, "f1": F1Score}


class Binary:
    name = BINARY
    prediction_kind = "numerical"
    target_kind = "categorical"
    drift_column = SCORE

    def prediction_field(self, monitor: Monitor) -> str:
        return monitor.prediction_score

    def reference_columns(self, monitor: Monitor) -> list[str]:
        return [PREDICTION, SCORE]

    def normalise(self, frame: pd.DataFrame, monitor: Monitor) -> pd.DataFrame:
        return frame

    def quality_frame(self, frame: pd.DataFrame, monitor: Monitor) -> pd.DataFrame:
        labelled = frame[frame[TARGET].notna()]
        return pd.DataFrame({TARGET: labelled[TARGET].astype(int).to_numpy(),
                             PREDICTION: labelled[PREDICTION].astype(int).to_numpy(),
                             SCORE: labelled[SCORE].astype(float).to_numpy()})

    def definition(self, monitor: Monitor) -> DataDefinition:
        return DataDefinition(
            categorical_columns=[TARGET, PREDICTION], numerical_columns=[SCORE],
            classification=[BinaryClassification(target=TARGET, prediction_labels=PREDICTION),
                            BinaryClassification(name=probabilistic.PROBAS, target=TARGET,
                                                 prediction_probas=SCORE, pos_label=1)])

    def metrics(self, monitor: Monitor, labelled: pd.DataFrame) -> dict[str, Any]:
        present = labelled[TARGET].nunique()
        return {**{name: cls() for name, cls in QUALITY_METRICS.items()},
                **probabilistic.evidently_metrics(present, 2)}

    def read(self, values: Mapping[str, Any], metrics: Mapping[str, Any], labelled: pd.DataFrame,
             monitor: Monitor) -> TaskQuality:
        own, evidently = probabilistic.split({name: values[m.metric_id][0] for name, m in metrics.items()})
        y, p = labelled[TARGET].to_numpy(dtype=float), labelled[SCORE].to_numpy(dtype=float)
        hand, curve = probabilistic.by_hand(p, y, p[:, None], y[:, None])
        return TaskQuality(metrics=finite(own), probabilistic=finite({**evidently, **hand}), calibration_curve=curve)


TASK = Binary()

