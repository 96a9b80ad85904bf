"""The processor's one settings object, read from the environment once at start."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from common.store import StoreSettings

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class ProcessorSettings:
    host: str = "127.0.0.1"
    port: int = 8309
    monitors_file: Path = REPO_ROOT / "log_processor" / "monitors.yaml"
    interval: float | None = None        # overrides every monitor's interval (tests, demo)
    threads: int = 4                     # gunicorn threads of the single worker
    fetch_workers: int = 2               # parallel time-slice queries per window
    page_size: int | None = None         # documents per search page; None: the store's (log_processor/store.py)
    backoff_max: float = 60.0            # longest wait after store errors
    stale_after: float | None = None     # seconds; default 3 x interval per monitor
    write_summaries: bool = True
    incremental: bool = True             # read only what reached the store since the last cycle
    read_overlap: float = 10.0           # seconds of ingest time read again (refresh delay)
    full_read_every: float = 3600.0      # seconds between full reads of each window (safety net)
    store: StoreSettings = field(default_factory=StoreSettings)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "ProcessorSettings":
        env = os.environ if env is None else env
        interval = env.get("LOGPROC_INTERVAL")
        stale = env.get("LOGPROC_STALE_AFTER")
        monitors = Path(env.get("LOGPROC_MONITORS_FILE", str(cls.monitors_file)))
        return cls(
            host=env.get("LOGPROC_HOST", cls.host),
            port=int(env.get("LOGPROC_PORT", cls.port)),
            monitors_file=monitors if monitors.is_absolute() else REPO_ROOT / monitors,
            interval=float(interval) if interval else None,
            threads=int(env.get("LOGPROC_THREADS", cls.threads)),
            fetch_workers=int(env.get("LOGPROC_FETCH_WORKERS", cls.fetch_workers)),
            page_size=int(env["LOGPROC_PAGE_SIZE"]) if env.get("LOGPROC_PAGE_SIZE") else None,
            backoff_max=float(env.get("LOGPROC_BACKOFF_MAX", cls.backoff_max)),
            stale_after=float(stale) if stale else None,
            write_summaries=_flag(env.get("LOGPROC_WRITE_SUMMARIES", "true")),
            incremental=_flag(env.get("LOGPROC_INCREMENTAL", "true")),
            read_overlap=float(env.get("LOGPROC_READ_OVERLAP", cls.read_overlap)),
            full_read_every=float(env.get("LOGPROC_FULL_READ_EVERY", cls.full_read_every)),
            store=StoreSettings.from_env(env),
        )


def _flag(value: str) -> bool:
    return value.lower() not in ("0", "false", "no")
