"""Feast objects: the `driver` entity and the `driver_hourly_stats` view over driver_stats.parquet."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, Int64

DRIVER_VIEW = "driver_hourly_stats"
FEATURE_REFS = tuple(f"{DRIVER_VIEW}:{name}" for name in ("conv_rate", "acc_rate", "avg_daily_trips"))


def definitions(source: Path) -> list:
    """Entity + feature view reading `source` (absolute path, so any cwd works)."""
    driver = Entity(name="driver", join_keys=["driver_id"], value_type=ValueType.INT64,
                    description="A driver that can be offered for a ride")
    stats = FileSource(
        name="driver_stats_source",
        path=str(Path(source).resolve()),
        timestamp_field="event_timestamp",
        created_timestamp_column="created",
    )
    view = FeatureView(
        name=DRIVER_VIEW,
        entities=[driver],
        ttl=timedelta(days=0),  # 0 = no expiry: the generated data has a fixed clock in the past
        schema=[
            Field(name="conv_rate", dtype=Float64),
            Field(name="acc_rate", dtype=Float64),
            Field(name="avg_daily_trips", dtype=Int64),
        ],
        online=True,
        source=stats,
        tags={"owner": "serving"},
    )
    return [driver, view]
