"""Feast RepoConfig for the local setup: local provider, file offline store, SQLite online store."""
from __future__ import annotations

from pathlib import Path

from feast import RepoConfig
from feast.infra.offline_stores.dask import DaskOfflineStoreConfig
from feast.infra.online_stores.sqlite import SqliteOnlineStoreConfig
from feast.repo_config import RegistryConfig

PROJECT = "driver_ranking"


def repo_config(feast_dir: Path) -> RepoConfig:
    feast_dir = Path(feast_dir).resolve()
    feast_dir.mkdir(parents=True, exist_ok=True)
    return RepoConfig(
        project=PROJECT,
        provider="local",
        # cache_ttl_seconds=0: the registry is read once per process, never re-read per request.
        registry=RegistryConfig(path=str(feast_dir / "registry.db"), cache_ttl_seconds=0),
        online_store=SqliteOnlineStoreConfig(path=str(feast_dir / "online_store.db")),
        offline_store=DaskOfflineStoreConfig(type="file"),  # Feast's file offline store (Dask engine)
        entity_key_serialization_version=3,
        repo_path=feast_dir,
    )
