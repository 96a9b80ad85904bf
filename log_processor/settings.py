"""The processor's one settings object, read from the environment once at start."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from common.env import SettingsError, env_number, flag, setting
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
    # The Evidently UI (docs/evidently-ui.md): a workspace directory, or the URL of a running `evidently ui`
    evidently_workspace: str | None = None          # None: no snapshots
    evidently_secret: str | None = field(default=None, repr=False)   # read from LOGPROC_EVIDENTLY_SECRET_FILE
    snapshot_interval: float = 60.0      # seconds between two snapshots of one monitor
    snapshot_retention: int = 1440       # snapshots kept per monitor's project (a day at one a minute)
    snapshot_timeout: float = 5.0        # seconds per request to the UI

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
            evidently_workspace=evidently_workspace(get("EVIDENTLY_WORKSPACE", None)),
            evidently_secret=secret_file(get("EVIDENTLY_SECRET_FILE", None, Path), "LOGPROC_EVIDENTLY_SECRET_FILE"),
            snapshot_interval=number("SNAPSHOT_INTERVAL", cls.snapshot_interval, float, 0.01),
            snapshot_retention=number("SNAPSHOT_RETENTION", cls.snapshot_retention, int, 1),
            snapshot_timeout=number("SNAPSHOT_TIMEOUT", cls.snapshot_timeout, float, 0.01),
        )


def evidently_workspace(value: str | None) -> str | None:
    """An http(s) URL of a running `evidently ui`, or a workspace directory (absolute, or relative to the
    repository) that exists or whose parent does, and that the processor can write: checked at start."""
    name = "LOGPROC_EVIDENTLY_WORKSPACE"
    if value is None:
        return None
    if value.startswith(("http://", "https://")):
        if not value.split("://", 1)[1].strip("/"):
            raise SettingsError(f"{name}={value!r}: a URL needs a host")
        return value.rstrip("/")
    if "://" in value:
        raise SettingsError(f"{name}={value!r}: a URL must be http:// or https://")
    path = Path(value) if Path(value).is_absolute() else REPO_ROOT / value
    existing = path if path.exists() else path.parent
    if not existing.is_dir():
        raise SettingsError(f"{name}={value!r}: {existing} is not a directory" if existing.exists()
                            else f"{name}={value!r}: {existing} does not exist")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise SettingsError(f"{name}={value!r}: {existing} is not writable")
    return str(path)


def secret_file(path: Path | None, name: str) -> str | None:
    """The secret in the file `path` (one line; surrounding whitespace dropped); a missing, unreadable or
    empty file is an error naming the variable."""
    if path is None:
        return None
    path = path if path.is_absolute() else REPO_ROOT / path
    try:
        secret = path.read_text().strip()
    except OSError as exc:
        raise SettingsError(f"{name}={str(path)!r}: {exc.strerror or exc}") from None
    if not secret:
        raise SettingsError(f"{name}={str(path)!r}: the file is empty")
    return secret
