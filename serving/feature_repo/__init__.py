"""The Feast feature repository, built in code so that it works from any working directory.

`definitions(source)` returns the driver entity and the hourly-stats feature view over the
generated Parquet file; `repo_config(feast_dir)` keeps all Feast state (registry, SQLite online
store) under one directory (var/feast/ by default).
"""
from serving.feature_repo.config import PROJECT, repo_config
from serving.feature_repo.definitions import DRIVER_VIEW, FEATURE_REFS, definitions

__all__ = ["PROJECT", "repo_config", "DRIVER_VIEW", "FEATURE_REFS", "definitions"]
