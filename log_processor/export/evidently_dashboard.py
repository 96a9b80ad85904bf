"""A monitor's Evidently UI project and its dashboard, from code (export/evidently_workspace.py
applies them at each start, the way Grafana provisioning does). Pure.

One project per monitor, its id derived from the monitor's name, so the dashboard's URL stays the
same across restarts and workspaces. Every id here is derived the same way: provisioning again
writes the same dashboard, whatever was there (an edit in the UI is replaced at the next start).
The panels every monitor gets are below; the task's own come from its module (tasks/*.py `panels`).
Each series names a gauge family and labels of the snapshot (export/evidently_snapshot.py).
"""
from __future__ import annotations

import uuid
from typing import Any

from log_processor.export import metrics as m
from log_processor.monitors import Monitor
from log_processor.tasks import task_for
from log_processor.tasks.base import Panel, Series

NAMESPACE = uuid.UUID("0b5c3a52-8f6e-4d1c-9a0e-5d7f2b1e4c90")
METRIC_TYPE = "evidently:metric_v2:"
DRIFT, QUALITY = "Drift", "Quality and data"     # sections: text panels (Evidently OSS has one tab)


def project_id(monitor: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"project/{monitor}"))


def project(monitor: Monitor) -> dict[str, Any]:
    """The project (Evidently's `ProjectModel`) of one monitor."""
    return {"id": project_id(monitor.name), "name": monitor.name, "version": "2",
            "description": f"log processor monitor {monitor.name} ({monitor.task}, model {monitor.model_name}): "
                           f"its windows over time, one snapshot per LOGPROC_SNAPSHOT_INTERVAL"}


def drift_panels(monitor: Monitor) -> tuple[Panel, ...]:
    """Drift share and drifted features, each feature's score against its threshold, prediction and
    target drift, values outside the reference's range."""
    def against_threshold(title: str, score: m.Family, threshold: m.Family, labels=()) -> Panel:
        return Panel(title, (Series(score.name, labels, "score ({{method}})"),
                             Series(threshold.name, labels, "threshold")))

    return (
        # Evidently 0.7.23's counter shows a 0 as "no value" (a falsy check in its front end): counters
        # here are of values that are 0 only when nothing happened
        # Evidently 0.7.23's counter shows a 0 as "no value" (a falsy check in its front end): the
        # counters here count what is 0 only when nothing happened
        Panel("Latest window", (Series(m.WINDOW_ROWS.name, (("kind", "evaluated"),), "rows evaluated"),
                                Series(m.WINDOW_ROWS.name, (("kind", "labelled"),), "labelled rows")), kind="counter"),
        Panel("Snapshots with dataset drift in the time range", (Series(m.DATASET_DRIFT.name, legend="snapshots"),),
              kind="counter", aggregation="sum", description='"no value": none (the UI shows a 0 so)'),
        Panel("Drifted features: share and count", (Series(m.DRIFTED_SHARE.name, legend="share of features"),
                                                    Series(m.DRIFTED_FEATURES.name, legend="drifted features"),
                                                    Series(m.DATASET_DRIFT.name, legend="dataset drift (1: yes)")),
              size="full"),
        *(against_threshold(f"{feature}: drift score against its threshold", m.FEATURE_SCORE, m.FEATURE_THRESHOLD,
                            (("feature", feature),)) for feature in monitor.feature_names),
        against_threshold("prediction drift", m.PREDICTION_SCORE, m.PREDICTION_THRESHOLD),
        against_threshold("target drift (labelled rows)", m.TARGET_SCORE, m.TARGET_THRESHOLD),
        Panel("values outside the reference's range (share of rows)",
              (Series(m.OUT_OF_RANGE.name, legend="{{feature}}"),)),
    )


def data_panels(monitor: Monitor) -> tuple[Panel, ...]:
    return (
        Panel("label coverage (labelled / current rows)", (Series(m.LABEL_COVERAGE.name, legend="coverage"),)),
        Panel("rows in the window", tuple(Series(m.WINDOW_ROWS.name, (("kind", kind),), kind)
                                          for kind in ("current", "labelled", "evaluated"))),
    )


def panels(monitor: Monitor) -> tuple[Panel, ...]:
    """Every panel of the monitor's dashboard, in order; a section starts with a text panel."""
    return (Panel(DRIFT, (), kind="text", size="full"), *drift_panels(monitor),
            Panel(QUALITY, (), kind="text", size="full", description=task_for(monitor).title),
            *task_for(monitor).panels(monitor), *data_panels(monitor))


def dashboard(monitor: Monitor) -> dict[str, Any]:
    """The dashboard (Evidently's `DashboardModel`) of one monitor: one tab (the most Evidently OSS takes)."""
    out = []
    for panel in panels(monitor):
        params: dict[str, Any] = {"plot_type": panel.kind}
        if panel.kind == "counter":
            params["aggregation"] = panel.aggregation
        if panel.kind == "bar":
            params["is_stacked"] = False
        out.append({"id": str(uuid.uuid5(NAMESPACE, f"panel/{monitor.name}/{panel.title}")), "title": panel.title,
                    "subtitle": panel.description, "size": panel.size,
                    "values": [panel_metric(s) for s in panel.series], "plot_params": params})
    tab = {"id": str(uuid.uuid5(NAMESPACE, f"tab/{monitor.name}")), "title": monitor.name,
           "panels": [p["id"] for p in out]}
    return {"tabs": [tab], "panels": out}


def panel_metric(series: Series) -> dict[str, Any]:
    return {"legend": series.legend, "tags": [], "metadata": {}, "metric": METRIC_TYPE + series.family,
            "metric_labels": dict(series.labels), "view_params": {}}


def series_filter(series: Series) -> dict[str, Any]:
    """What the UI's front end asks for one series (POST /api/v2/snapshots/{project}/data_series_batch)."""
    return {"tags": [], "metadata": {}, "metric": METRIC_TYPE + series.family, "metric_labels": dict(series.labels)}
