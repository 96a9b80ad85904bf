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

from log_processor.columns import PREDICTION, TARGET, Columns, Rejects, number_column, numbers
from log_processor.monitors import REGRESSION, Monitor
from log_processor.tasks.base import Family, Panel, Samples, Series, TaskQuality, finite, metric_value, samples_of

QUALITY_METRICS = {"mae": MAE, "rmse": RMSE, "mape": MAPE, "r2": R2Score, "mean_error": MeanError}
SCALE = {"mape": 0.01}      # Evidently's percent -> a ratio
# No plots in the quality report: each costs Evidently another pass that validates every distinct
# target value (a regression target has as many as rows), and at 40 000 labelled rows the five
# defaults were a third of a steady cycle. The values and error quantiles are gauges and on /report.
QUALITY = Family("mlmon_regression_quality", "Regression quality on labelled rows", ("metric",))
REFERENCE_QUALITY = Family("mlmon_reference_regression_quality", "Regression quality on the reference's labelled rows",
                           ("metric",))
ALERT_RATIO = Family("mlmon_regression_quality_alert_ratio",
                     "RegressionQualityDegraded fires above this x the reference's MAE (monitors.yaml quality.alert_ratio)")
PLOTS = {"mae": {"error_distr": False}, "rmse": {"error_distr": False}, "mape": {"perc_error_plot": False},
         "mean_error": {"error_plot": False}}


class Regression:
    name = REGRESSION
    prediction_kind = "numerical"
    target_kind = "numerical"
    drift_column = PREDICTION
    families = (QUALITY, REFERENCE_QUALITY, ALERT_RATIO)
    title = "Regression quality"

    def prediction_field(self, monitor: Monitor) -> str:
        return monitor.prediction_value

    def reference_columns(self, monitor: Monitor) -> list[str]:
        return [PREDICTION]

    def prediction_columns(self, columns: Columns, monitor: Monitor, rejects: Rejects) -> dict[str, np.ndarray]:
        return {PREDICTION: number_column(columns(monitor.prediction_value), rejects)}

    def target_column(self, raw: list[Any], monitor: Monitor, rejects: Rejects) -> np.ndarray:
        """The realized value; one that is no finite number cannot be scored (target_not_finite)."""
        values, missing, wrong, non_finite = numbers(raw)
        rejects.add("missing_field", missing)
        rejects.add("target_not_finite", wrong | non_finite)
        return values

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
        return {name: cls(**PLOTS.get(name, {})) for name, cls in QUALITY_METRICS.items()}

    def read(self, values: Mapping[str, Any], metrics: Mapping[str, Any], labelled: pd.DataFrame,
             monitor: Monitor) -> TaskQuality:
        raw = {name: metric_value(values[m.metric_id][0]) for name, m in metrics.items()}
        raw = {name: (v * SCALE[name] if name in SCALE and v is not None else v) for name, v in raw.items()}
        error = np.abs(labelled[PREDICTION].to_numpy(dtype=float) - labelled[TARGET].to_numpy(dtype=float))
        if len(error):
            raw["abs_error_p50"], raw["abs_error_p90"] = (float(q) for q in np.quantile(error, [0.5, 0.9]))
        return TaskQuality(metrics=finite(raw))

    def samples(self, quality: TaskQuality, monitor: Monitor) -> Samples:
        return samples_of(QUALITY, quality.metrics)

    def reference_samples(self, quality: TaskQuality | None, monitor: Monitor) -> Samples:
        out = samples_of(REFERENCE_QUALITY, quality.metrics) if quality else {}
        if monitor.quality_alert_ratio is not None:
            out[ALERT_RATIO] = [((), monitor.quality_alert_ratio)]
        return out

    def summary_fields(self, frame: pd.DataFrame, monitor: Monitor,
                       predicted: dict[str, float] | None = None) -> dict[str, Any]:
        return {"predicted_positive_share": None}

    def panels(self, monitor: Monitor) -> tuple[Panel, ...]:
        """MAE and RMSE against the reference's; the bias (mean of prediction - target) around 0."""
        out = [Panel(f"{metric.upper()} against the reference",
                     (Series(QUALITY.name, (("metric", metric),), f"{metric.upper()} (window)"),
                      Series(REFERENCE_QUALITY.name, (("metric", metric),), f"{metric.upper()} (reference)")))
               for metric in ("mae", "rmse")]
        out.append(Panel("bias: mean of prediction - target", (
            Series(QUALITY.name, (("metric", "mean_error"),), "window"),
            Series(REFERENCE_QUALITY.name, (("metric", "mean_error"),), "reference"))))
        return tuple(out)


TASK = Regression()
