"""Online driver features from Feast, with the ids the store does not know reported, not guessed."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from common.schema import FEATURE_NAMES, FEATURES


@dataclass(frozen=True)
class FeatureRows:
    """Features of the known drivers (in request order) and the ids with no (complete) row."""

    driver_ids: list[int]
    rows: list[dict[str, float | int]]
    missing: list[int]


class OnlineFeatures:
    """Wraps a Feast FeatureStore; one per process. Calls are serialised: the SQLite connection is shared."""

    def __init__(self, store) -> None:
        from serving.feature_repo import FEATURE_REFS

        self._store = store
        self._refs = list(FEATURE_REFS)
        self._lock = threading.Lock()

    @classmethod
    def open(cls, feast_dir: Path) -> "OnlineFeatures":
        from serving.feature_repo import feature_store

        registry = Path(feast_dir) / "registry.db"
        if not registry.exists():
            raise FileNotFoundError(f"no Feast registry at {registry}; run `python -m serving.bootstrap` first")
        store = cls(feature_store(feast_dir))
        store.get([0])  # loads the registry and opens SQLite now, not on the first request
        return store

    def get(self, driver_ids: Sequence[int]) -> FeatureRows:
        with self._lock:
            response = self._store.get_online_features(
                self._refs, [{"driver_id": int(i)} for i in driver_ids]).to_dict()
        known, rows, missing = [], [], []
        for index, driver_id in enumerate(driver_ids):
            values = {name: response[name][index] for name in FEATURE_NAMES}
            if any(v is None for v in values.values()):
                missing.append(int(driver_id))
                continue
            known.append(int(driver_id))
            rows.append({name: FEATURES[name](values[name]) for name in FEATURE_NAMES})
        return FeatureRows(known, rows, missing)
