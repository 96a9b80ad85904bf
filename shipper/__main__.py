"""`python -m shipper`: follow the event files and ship them (Ctrl-C stops), or `--once`.

Settings from the environment (docs/shipper.md): SHIPPER_FILES, SHIPPER_STATE_DIR,
SHIPPER_INDEX_PREFIX, SHIPPER_BATCH_SIZE, SHIPPER_POLL_INTERVAL, SHIPPER_BACKOFF_INITIAL,
SHIPPER_BACKOFF_MAX, SHIPPER_LOG_INTERVAL, SHIPPER_METRICS_HOST, SHIPPER_METRICS_PORT (GET /metrics,
default 127.0.0.1:9310; 0 turns it off) and the store's ELASTICSEARCH_*.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from common.env import SettingsError
from shipper.metrics import serve
from shipper.settings import ShipperSettings
from shipper.shipper import Shipper, log


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shipper", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--once", action="store_true", help="ship what is complete now, then exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = ShipperSettings.from_env()
    except SettingsError as exc:
        print(f"python -m shipper: {exc}", file=sys.stderr)
        return 2
    shipper = Shipper(settings)
    metrics_server = None
    if settings.metrics_port and not args.once:
        try:
            metrics_server, _ = serve(lambda: shipper.stats, settings.metrics_host, settings.metrics_port)
        except OSError as exc:
            print(f"python -m shipper: SHIPPER_METRICS_PORT={settings.metrics_port} on "
                  f"{settings.metrics_host}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        log.info("metrics on http://%s:%d/metrics", settings.metrics_host, settings.metrics_port)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    if args.once:
        shipper.drain(stop)
        shipper.close()
    else:
        shipper.run(stop)
    if metrics_server is not None:
        metrics_server.shutdown()
    s = shipper.stats
    log.info("stopped: shipped=%d duplicates=%d dead_lettered=%d retries=%d lag_bytes=%d",
             s.shipped, s.duplicates, s.dead_lettered, s.retries, s.lag_bytes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
