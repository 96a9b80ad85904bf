"""`python -m serving`: the API under gunicorn (gthread workers) on SERVING_HOST:SERVING_PORT.

The app is built inside each worker (no preload), so Feast's SQLite connection and the Fluentd
sender thread belong to the process that uses them. With more than one worker, /metrics aggregates
all workers through prometheus_client's multiprocess mode (a scratch dir under var/).
"""
from __future__ import annotations

import logging.config
import os
import shutil
import sys

from gunicorn.app.base import BaseApplication

from serving.logs import logging_config
from serving.settings import ServingSettings


class ServingServer(BaseApplication):
    def __init__(self, settings: ServingSettings) -> None:
        self.settings = settings
        super().__init__()

    def load_config(self) -> None:
        s = self.settings
        options = {
            "bind": f"{s.host}:{s.port}",
            "workers": s.workers,
            "worker_class": "gthread",
            "threads": s.threads,
            "timeout": 30,
            "graceful_timeout": 10,
            "keepalive": 5,
            "accesslog": None,  # the app writes its own JSON access log
            "logconfig_dict": logging_config(),
            "worker_exit": _worker_exit,
            "child_exit": _child_exit,
            "control_socket_disable": True,  # one fixed socket path per user would clash across instances
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self):
        from serving.app import create_app

        return create_app(self.settings, process_tree=True)


def _worker_exit(server, worker) -> None:
    """Close the event sinks so Fluentd gets what is queued (bounded wait)."""
    app = getattr(worker, "wsgi", None)
    services = getattr(app, "extensions", {}).get("serving") if app is not None else None
    if services is not None:
        services.events.close()


def _child_exit(server, worker) -> None:
    metrics_dir = server.app.settings.metrics_dir
    if metrics_dir is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid, str(metrics_dir))


def main() -> int:
    try:
        settings = ServingSettings.from_env()
    except ValueError as exc:
        print(f"serving: bad configuration: {exc}", file=sys.stderr)
        return 2
    logging.config.dictConfig(logging_config())
    # Before anything imports prometheus_client (the app is loaded in the workers): shared files
    # for several workers, in-process values for one (an inherited setting is dropped).
    for name in ("PROMETHEUS_MULTIPROC_DIR", "PROMETHEUS_MULTIPROCESS_DIR"):
        os.environ.pop(name, None)
    if settings.metrics_dir is not None:
        shutil.rmtree(settings.metrics_dir, ignore_errors=True)
        settings.metrics_dir.mkdir(parents=True)
        for name in ("PROMETHEUS_MULTIPROC_DIR", "PROMETHEUS_MULTIPROCESS_DIR"):
            os.environ[name] = str(settings.metrics_dir)
    ServingServer(settings).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
