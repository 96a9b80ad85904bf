"""The Feast feature repository, built in code so that it works from any working directory.

`definitions(source)` returns the driver entity and the hourly-stats feature view over the
generated Parquet file; `repo_config(feast_dir)` keeps all Feast state (registry, SQLite online
store) under one directory (var/feast/ by default). Serving code reaches Feast only through here.

Importing feast sets PROMETHEUS_MULTIPROC_DIR (feast/metrics.py) for the whole process, which would
turn prometheus_client's in-process values into files if prometheus_client were imported after it.
So prometheus_client is imported first, and serving/metrics.py never infers its mode from that
variable.
"""
from pathlib import Path

import prometheus_client  # noqa: F401  (must precede feast; see above)

from serving.feature_repo.config import PROJECT, repo_config
from serving.feature_repo.definitions import DRIVER_VIEW, FEATURE_REFS, definitions


def feature_store(feast_dir: Path):
    """A FeatureStore over the state in `feast_dir`."""
    from feast import FeatureStore

    return FeatureStore(config=repo_config(feast_dir))


__all__ = ["PROJECT", "repo_config", "feature_store", "DRIVER_VIEW", "FEATURE_REFS", "definitions"]
