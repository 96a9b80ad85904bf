"""The shipper's one settings object, read from `SHIPPER_*` (and the store's `ELASTICSEARCH_*`)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from common.env import SettingsError, env_number
from common.schema import EVENTS_INDEX_PREFIX
from common.store import StoreSettings

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class ShipperSettings:
    files: tuple[Path, ...] = (REPO_ROOT / "var/events/ml-events.jsonl",)
    state_dir: Path = REPO_ROOT / "var/shipper"
    index_prefix: str = EVENTS_INDEX_PREFIX
    batch_size: int = 2000           # lines per bulk request: 16 k events/s into OpenSearch against 12 k at 500 (docs/benchmarks.md)
    poll_interval: float = 0.5
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    log_interval: float = 10.0
    store: StoreSettings = field(default_factory=StoreSettings)
    metrics_host: str = "127.0.0.1"  # /metrics (shipper/metrics.py); 0.0.0.0 to be scraped from elsewhere
    metrics_port: int = 9310         # 0: no /metrics endpoint

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "ShipperSettings":
        env = os.environ if env is None else env
        files = tuple(Path(p.strip()) for p in env.get("SHIPPER_FILES", "").split(",") if p.strip())
        settings = cls(
            files=files or cls.files,
            state_dir=Path(env["SHIPPER_STATE_DIR"]) if env.get("SHIPPER_STATE_DIR") else cls.state_dir,
            index_prefix=env.get("SHIPPER_INDEX_PREFIX") or cls.index_prefix,
            batch_size=env_number(env, "SHIPPER_BATCH_SIZE", cls.batch_size, int, 1),
            poll_interval=env_number(env, "SHIPPER_POLL_INTERVAL", cls.poll_interval, float, 0.01),
            backoff_initial=env_number(env, "SHIPPER_BACKOFF_INITIAL", cls.backoff_initial, float, 0.01),
            backoff_max=env_number(env, "SHIPPER_BACKOFF_MAX", cls.backoff_max, float, 0.01),
            log_interval=env_number(env, "SHIPPER_LOG_INTERVAL", cls.log_interval, float, 0.1),
            store=StoreSettings.from_env(env),
            metrics_host=env.get("SHIPPER_METRICS_HOST") or cls.metrics_host,
            metrics_port=env_number(env, "SHIPPER_METRICS_PORT", cls.metrics_port, int, 0, 65535),
        )
        if settings.backoff_max < settings.backoff_initial:
            raise SettingsError("SHIPPER_BACKOFF_MAX must not be smaller than SHIPPER_BACKOFF_INITIAL")
        return settings

    @property
    def offsets_file(self) -> Path:
        return self.state_dir / "offsets.json"

    @property
    def dead_letter_file(self) -> Path:
        return self.state_dir / "dead-letters.jsonl"
