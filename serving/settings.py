"""ServingSettings: every knob of the serving side (API, sinks, paths), read once from SERVING_* env vars."""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping

from common.env import flag, setting

REPO_ROOT = Path(__file__).resolve().parent.parent
SINK_NAMES = ("file", "fluentd")


def parse_sinks(value: str) -> tuple[str, ...]:
    """"file,fluentd" -> ("file", "fluentd"); "none" or "" -> (). Unknown names are an error."""
    names = tuple(n.strip().lower() for n in value.split(",") if n.strip())
    if names in ((), ("none",)):
        return ()
    unknown = [n for n in names if n not in SINK_NAMES]
    if unknown:
        raise ValueError(f"SERVING_EVENT_SINKS: unknown sink(s) {unknown}; use file, fluentd, "
                         f"file,fluentd or none")
    return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class ServingSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    threads: int = 8
    var_dir: Path = REPO_ROOT / "var"
    # Paths below default to var_dir/...; see `path()`.
    data_dir: Path | None = None
    model_dir: Path | None = None
    duration_model_dir: Path | None = None   # the trip_duration regressor; default: <model dir>/trip_duration
    feast_dir: Path | None = None
    events_file: Path | None = None
    event_sinks: tuple[str, ...] = ("file",)
    events_max_bytes: int = 50 * 1024 * 1024
    events_backups: int = 5
    fluentd_host: str = "127.0.0.1"
    fluentd_port: int = 24224
    fluentd_tag: str = "ml.events"
    fluentd_queue_size: int = 10_000   # events waiting for the sender thread; beyond that: dropped
    fluentd_buffer_bytes: int = 1024 * 1024  # packed events kept while the receiver is down
    fluentd_timeout: float = 1.0
    max_body_bytes: int = 64 * 1024
    max_candidates: int = 100
    decision_threshold: float = 0.5
    access_log: bool = True
    seed: int = 7

    def path(self, name: str) -> Path:
        """Resolved runtime path: "data", "model", "duration_model", "feast" dirs or the "events" file."""
        defaults = {
            "data": self.var_dir / "data",
            "model": self.var_dir / "model",
            "feast": self.var_dir / "feast",
            "events": self.var_dir / "events" / "ml-events.jsonl",
        }
        if name == "duration_model":
            return Path(self.duration_model_dir) if self.duration_model_dir is not None \
                else self.path("model") / "trip_duration"
        explicit = {"data": self.data_dir, "model": self.model_dir, "feast": self.feast_dir,
                    "events": self.events_file}[name]
        return Path(explicit) if explicit is not None else defaults[name]

    @property
    def metrics_dir(self) -> Path | None:
        """Scratch dir for multi-worker /metrics (prometheus_client multiprocess mode); None with 1 worker."""
        return self.var_dir / "serving-metrics" if self.workers > 1 else None

    @property
    def driver_stats_path(self) -> Path:
        return self.path("data") / "driver_stats.parquet"

    def with_(self, **changes) -> "ServingSettings":
        return replace(self, **changes)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "ServingSettings":
        env = os.environ if env is None else env

        def get(name: str, default, convert=str):
            return setting(env, f"SERVING_{name}", default, convert)

        def opt_path(name: str) -> Path | None:
            return get(name, None, Path)

        return cls(
            host=get("HOST", cls.host),
            port=get("PORT", cls.port, int),
            workers=get("WORKERS", cls.workers, int),
            threads=get("THREADS", cls.threads, int),
            var_dir=get("VAR_DIR", cls.var_dir, Path),
            data_dir=opt_path("DATA_DIR"),
            model_dir=opt_path("MODEL_DIR"),
            duration_model_dir=opt_path("DURATION_MODEL_DIR"),
            feast_dir=opt_path("FEAST_DIR"),
            events_file=opt_path("EVENTS_FILE"),
            event_sinks=get("EVENT_SINKS", cls.event_sinks, parse_sinks),
            events_max_bytes=get("EVENTS_MAX_BYTES", cls.events_max_bytes, int),
            events_backups=get("EVENTS_BACKUPS", cls.events_backups, int),
            fluentd_host=get("FLUENTD_HOST", cls.fluentd_host),
            fluentd_port=get("FLUENTD_PORT", cls.fluentd_port, int),
            fluentd_tag=get("FLUENTD_TAG", cls.fluentd_tag),
            fluentd_queue_size=get("FLUENTD_QUEUE_SIZE", cls.fluentd_queue_size, int),
            fluentd_buffer_bytes=get("FLUENTD_BUFFER_BYTES", cls.fluentd_buffer_bytes, int),
            fluentd_timeout=get("FLUENTD_TIMEOUT", cls.fluentd_timeout, float),
            max_body_bytes=get("MAX_BODY_BYTES", cls.max_body_bytes, int),
            max_candidates=get("MAX_CANDIDATES", cls.max_candidates, int),
            decision_threshold=get("DECISION_THRESHOLD", cls.decision_threshold, float),
            access_log=get("ACCESS_LOG", cls.access_log, flag),
            seed=get("SEED", cls.seed, int),
        )
