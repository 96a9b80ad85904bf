"""`python -m log_processor`: validate the monitors file, then serve the app with gunicorn.

One worker (the monitor threads live in the process, and /metrics must see their state) with a
few threads for concurrent scrapes; the app is built inside the worker, after the fork.

`python -m log_processor prepare`: load every Parquet reference of the monitors file and cache its
drift thresholds, score calibration and the model's feature importance beside it, then exit (`make
setup` runs it). Computing them takes tens of seconds on 2 cores, which the first cycle would
otherwise spend before its first verdict.
"""
from __future__ import annotations

import logging
import sys
import time

from gunicorn.app.base import BaseApplication

from log_processor.monitors import ConfigError, load_monitors
from log_processor.settings import ProcessorSettings


class _Gunicorn(BaseApplication):
    def __init__(self, settings: ProcessorSettings):
        self.settings = settings
        super().__init__()

    def load_config(self) -> None:
        s = self.settings
        for key, value in {"bind": f"{s.host}:{s.port}", "workers": 1, "threads": s.threads,
                           "worker_class": "gthread", "timeout": 120, "graceful_timeout": 10,
                           "accesslog": None, "loglevel": "info",
                           # gunicorn's control socket has one fixed path per user: it would clash
                           # with serving's (and a second processor's) on the same machine
                           "control_socket_disable": True,
                           "worker_exit": _stop_processor}.items():
            self.cfg.set(key, value)

    def load(self):
        from log_processor.app import create_app
        return create_app(self.settings)


def _stop_processor(server, worker) -> None:
    app = getattr(worker, "wsgi", None)
    processor = getattr(app, "extensions", {}).get("log_processor") if app else None
    if processor is not None:
        processor.stop()


def prepare(monitors) -> int:
    from log_processor.evaluate.reference import ReferenceUnusable, load_reference

    for monitor in monitors:
        if monitor.reference.parquet is None:
            print(f"log_processor: monitor {monitor.name}: reference read from the store at start", flush=True)
            continue
        started = time.perf_counter()
        try:
            reference = load_reference(monitor, store=None)
        except ReferenceUnusable as exc:
            print(f"log_processor: monitor {monitor.name}: {exc}", file=sys.stderr)
            return 1
        print(f"log_processor: monitor {monitor.name}: reference {reference.version}, its drift thresholds "
              f"and score calibration ready ({time.perf_counter() - started:.1f} s)", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv not in ([], ["prepare"]):
        print("usage: python -m log_processor [prepare]", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING if argv else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = ProcessorSettings.from_env()
    except ValueError as exc:
        print(f"log_processor: bad configuration: {exc}", file=sys.stderr)
        return 2
    try:
        monitors = load_monitors(settings.monitors_file, interval_override=settings.interval)
    except ConfigError as exc:
        print(f"log_processor: invalid monitor configuration: {exc}", file=sys.stderr)
        return 2
    if argv:
        return prepare(monitors)
    owned = [m for m in monitors if settings.shard.owns(m.name)]
    names = ", ".join(f"{m.name} (every {m.interval_seconds:g}s)" for m in owned) or "no monitor"
    if settings.shard.count > 1:
        names = f"shard {settings.shard}: {names} of {len(monitors)}"
    print(f"log_processor: {names}; store {settings.store.url}; http://{settings.host}:{settings.port}/metrics",
          flush=True)
    _Gunicorn(settings).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
