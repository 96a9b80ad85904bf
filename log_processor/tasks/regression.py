"""Regression: MAE, RMSE, MAPE, R², mean error (bias: mean of prediction − target) from Evidently
(`MAE`, `RMSE`, `MAPE`, `R2Score`, `MeanError`); the median and 90th percentile of the absolute error
by hand (Evidently 0.7 has only their maximum, `AbsMaxError`). MAPE is a ratio here (Evidently's
percent / 100), as Prometheus values are. The predicted value is the prediction-drift column and the
realized value the target-drift column, both numerical."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd
from evidently import DataDefinition, Regression as EvidentlyRegression
from evidently.metrics import MAE, MAPE, RMSE, MeanError, R2Score

from log_processor.monitors import REGRESSION, Monitor
from log_processor.tasks import TaskQuality, finite, metric_value
from log_processor.validate import PREDICTION, TARGET

QUALITY_METRICS = {"mae": MAE, "rmse": RMSE, "mape": MAPE, "r2": R2Score, "mean_error": MeanError}
SCALE = {"mape": 0.01}      # Evidently's percent -> a ratio


class Regression:
    name = REGRESSION
    prediction_kind = "numerical"
    target_kind = "numerical"
    drift_column = PREDICTION

    def prediction_field(self, monitor: Monitor) -> str:
        return monitor.prediction_value

    def reference_columns(self, monitor: Monitor) -> list[str]:
        return [PREDICTION]

    def normalise(self, frame: pd.DataFrame, monitor: Monitor) -> pd.DataFrame:
        return frame.assign(**{PREDICTION: frame[PREDICTION].astype(float), TARGET: frame[TARGET].astype(float)})

    def quality_frame(self, frame: pd.DataFrame, monitor: Monitor) -> pd.DataFrame:
        labelled = frame[frame[TARGET].notna()]
        return pd.DataFrame({TARGET: labelled[TARGET].to_numpy(dtype=float),
                             PREDICTION: labelled[PREDICTION].to_numpy(dtype=float)})

    def definition(self, monitor: Monitor) -> DataDefinition:
        return DataDefinition(numerical_columns=[TARGET, PREDICTION],
                              regression=[EvidentlyRegression(target=TARGET, prediction=PREDICTION)])

    def metrics(self, monitor: Monitor, labelled: pd.DataFrame) -> dict[str, Any]:
        return {name: cls() for name, cls in QUALITY_METRICS.items()}

    def read(self, values: Mapping[str, Any], metrics: Mapping[str, Any], labelled: pd.DataFrame,
             monitor: Monitor) -> TaskQuality:
        raw = {name: metric_value(values[m.metric_id][0]) for name, m in metrics.items()}
        raw = {name: (v * SCALE[name] if name in SCALE and v is not None else v) for name, v in raw.items()}
        error = np.abs(labelled[PREDICTION].to_numpy(dtype=float) - labelled[TARGET].to_numpy(dtype=float))
        if len(error):
            raw["abs_error_p50"], raw["abs_error_p90"] = (float(q) for q in np.quantile(error, [0.5, 0.9]))
        return TaskQuality(metrics=finite(raw))


TASK = Regression()
