"""`python -m demo` (`make demo`): the whole stack on this machine, no Docker.

Starts the store, serving, the shipper, the log processor, Prometheus + Alertmanager, an SMTP sink
and a Slack/webhook/Telegram sink on loopback; replays normal, drifted, then normal traffic again
(the recovery, so the incidents resolve), then traffic in which one city alone drifts; prints, for each monitor of the monitors file, what the
stack saw and what each channel received (one table per monitor, its columns from its task). Without
--once the stack stays up until Ctrl-C; with --once it exits 0 only when the story held.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time

from common.supervisor import ChildFailed
from demo import alerting_stack
from demo.city import PHASE as CITY_PHASE
from demo.report import CHANNELS, StatusWriter, monitor_table, story_failures
from demo.runner import Story
from demo.settings import DemoSettings, SettingsError, add_arguments
from demo.stack import EmbeddedStack
from log_processor.export.evidently_dashboard import project_id
from log_processor.monitors import ConfigError


def shifted_features() -> set[str]:
    from serving.data import DRIFT_SPEC, FEATURE_COLUMNS
    return {name for name in FEATURE_COLUMNS if DRIFT_SPEC[name]["drifts"]}


def _on_interrupt(interrupted: threading.Event):
    """Ctrl-C and SIGTERM: a KeyboardInterrupt now, and a flag the story checks each second."""
    def handler(signum, frame):
        interrupted.set()
        raise KeyboardInterrupt
    return handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        settings = DemoSettings.from_env().with_args(args)
    except SettingsError as exc:
        parser.error(str(exc))
    stack = EmbeddedStack(settings)
    try:
        monitors = stack.monitors()
    except ConfigError as exc:
        parser.error(str(exc))
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, filename=settings.log_dir / "demo-runner.log", filemode="w",
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    interrupted = threading.Event()
    signal.signal(signal.SIGTERM, _on_interrupt(interrupted))
    signal.signal(signal.SIGINT, _on_interrupt(interrupted))

    started = time.monotonic()
    status = StatusWriter()
    exit_code = 0
    try:
        stack.start()
        print(f"stack up in {time.monotonic() - started:.0f}s; logs in {settings.log_dir}/demo-*.log\n", flush=True)
        story = Story(stack, monitors, status, interrupted=interrupted)
        results = story.run()
        print()
        for monitor in monitors:
            print(monitor_table(results, monitor) + "\n")
        for note in story.notes:
            print(f"note: {note}")
        expect_email = stack.prometheus is not None
        if not expect_email:
            print("note: Prometheus/Alertmanager not running, so no alert e-mail is expected"
                  + (f" (missing: {', '.join(stack.alerts_missing)})" if stack.alerts_missing else ""))
        print_urls(stack)
        channels = CHANNELS if expect_email else ()
        failures = story_failures(results, monitors, shifted_features(), expect_email, channels=channels,
                                  stall=bool(settings.stall), city_monitors=story.city_monitors)
        failures += [f for r in results if r.name == CITY_PHASE for f in story.city.failures(r, monitors, channels)]
        if settings.once:
            print(f"\nstory {'FAILED' if failures else 'held'} in {time.monotonic() - started:.0f}s"
                  + "".join(f"\n  - {f}" for f in failures), flush=True)
            exit_code = 1 if failures else 0
        else:
            print("\nThe stack stays up for exploring; Ctrl-C stops it.", flush=True)
            story.idle(threading.Event())
    except KeyboardInterrupt:
        status.done()
        print("\ninterrupted", flush=True)
        exit_code = 1 if settings.once else 0
    except ChildFailed as exc:
        status.done()
        print(f"\ndemo: {exc}", file=sys.stderr, flush=True)
        exit_code = 1
    finally:
        # One clean stop, even when Ctrl-C is pressed again meanwhile.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("stopping the stack ...", flush=True)
        stack.stop()
        print("stopped.", flush=True)
    return exit_code


def print_urls(stack: EmbeddedStack) -> None:
    u = stack.urls
    rows = [
        ("log processor metrics", f"{u.log_processor}/metrics"),
        ("drift report (Evidently)", f"{u.log_processor}/report"),
        ("verdict as JSON", f"{u.log_processor}/report.json"),
        ("serving metrics", f"{u.serving}/metrics"),
        (f"Elasticsearch API ({stack.settings.store})", f"{u.store}/ml-events-*/_search"),
    ]
    notes = []
    if u.prometheus:
        # the UI page where this build serves it (Debian's 2.42: /classic/alerts), else the API
        alerts_page = alerting_stack.prometheus_page(u.prometheus, "alerts")
        rows.append(("Prometheus UI", alerts_page) if alerts_page else
                    ("Prometheus alerts (API)", f"{u.prometheus}/api/v1/alerts"))
        ui = alerting_stack.alertmanager_ui(u.alertmanager)
        rows.append(("Alertmanager UI", ui) if ui else ("Alertmanager alerts (API)", f"{u.alertmanager}/api/v2/alerts"))
        fallback = alerting_stack.alertmanager_fallback_note()
        if fallback:
            notes.append(fallback)
    if u.evidently:     # each monitor's dashboard of drift and quality over time (docs/evidently-ui.md)
        rows.extend((f"Evidently UI: {m.name}", f"{u.evidently}/projects/{project_id(m.name)}")
                    for m in stack.monitors())
    rows.append(("alert e-mails", f"{stack.settings.mail_dir}/*.eml"))
    rows.append(("Slack / webhook / Telegram", f"{stack.settings.notifications_dir}/<channel>/*.json"))
    print("\nwhere to look:")
    width = max(len(name) for name, _ in rows)
    for name, url in rows:
        print(f"  {name.ljust(width)}  {url}")
    for note in notes:
        print(f"  note: {note}")


if __name__ == "__main__":
    sys.exit(main())
