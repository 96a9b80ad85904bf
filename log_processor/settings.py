"""The processor's one settings object, read from the environment once at start."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from common.env import env_number, flag, setting
from common.store import StoreSettings
from log_processor.shard import Shard

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class ProcessorSettings:
    host: str = "127.0.0.1"
    port: int = 8309
    monitors_file: Path = REPO_ROOT / "log_processor" / "monitors.yaml"
    interval: float | None = None        # overrides every monitor's interval (tests, demo)
    threads: int = 4                     # gunicorn threads of the single worker
    fetch_workers: int = 2               # parallel time-slice queries per window
    page_size: int | None = None         # documents per search page; None: the store's (log_processor/read/store.py)
    backoff_max: float = 60.0            # longest wait after store errors
    stale_after: float | None = None     # seconds; default 3 x interval per monitor
    write_summaries: bool = True
    incremental: bool = True             # read only what reached the store since the last cycle
    read_overlap: float = 10.0           # seconds of ingest time read again (refresh delay)
    full_read_every: float = 3600.0      # seconds between full reads of each window (safety net)
    store: StoreSettings = field(default_factory=StoreSettings)
    shard: Shard = Shard()               # this replica's share of the monitors (log_processor/shard.py)
    segment_gauges: int = 10             # K: the worst segments per monitor exported with a `segment` label

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "ProcessorSettings":
        """A value that is not of its type is a ValueError naming the variable (`python -m log_processor` exits 2)."""
        env = os.environ if env is None else env

        def get(name: str, default, convert=str):
            return setting(env, f"LOGPROC_{name}", default, convert)

        def number(name: str, default, kind: type, minimum: float, maximum: float | None = None):
            return env_number(env, f"LOGPROC_{name}", default, kind, minimum, maximum)

        monitors = get("MONITORS_FILE", cls.monitors_file, Path)
        return cls(
            host=get("HOST", cls.host),
            port=number("PORT", cls.port, int, 1, 65535),
            monitors_file=monitors if monitors.is_absolute() else REPO_ROOT / monitors,
            interval=number("INTERVAL", None, float, 0.01),
            threads=number("THREADS", cls.threads, int, 1),
            fetch_workers=number("FETCH_WORKERS", cls.fetch_workers, int, 1),
            page_size=number("PAGE_SIZE", None, int, 1, 10000),
            backoff_max=number("BACKOFF_MAX", cls.backoff_max, float, 0),
            stale_after=number("STALE_AFTER", None, float, 0.01),
            write_summaries=get("WRITE_SUMMARIES", True, flag),
            incremental=get("INCREMENTAL", True, flag),
            read_overlap=number("READ_OVERLAP", cls.read_overlap, float, 0),
            full_read_every=number("FULL_READ_EVERY", cls.full_read_every, float, 0),
            store=StoreSettings.from_env(env),
            shard=get("SHARD", cls.shard, Shard.parse),
            segment_gauges=number("SEGMENT_GAUGES", cls.segment_gauges, int, 0, 200),
        )
