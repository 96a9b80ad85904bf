"""Retention of the daily indices, where the store has no lifecycle management (osmem, OpenSearch as
run here): delete `<prefix>YYYY.MM.DD` indices whose day is more than their setting ago, by the date
in their name (common.schema.daily_index), and never any other index.

Elasticsearch in compose does the same with index lifecycle policies that docker/es_setup.py applies
with the templates (`ilm_policy`, from the same settings). Which indices go is pure computation
(`expired`); `apply` lists and deletes. Settings (docs/retention in docs/compose.md and docs/demo.md):

    RETENTION_EVENTS_DAYS      ml-events-*       30
    RETENTION_LOGS_DAYS        logs-serving-*    14
    RETENTION_MONITORING_DAYS  ml-monitoring-*   400
    RETENTION_INTERVAL         seconds between runs in the embedded demo (3600)

An index of day D is deleted once D is more than N days before today (UTC): its newest event is then
at least N days old. A name that does not end in a valid date after a known prefix is never touched.

    python -m common.retention [--dry-run]     # one run against ELASTICSEARCH_URL; exit 2 on a bad setting
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import threading
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Callable, Iterable, Mapping

from elasticsearch import ApiError, Elasticsearch, TransportError

from common.env import SettingsError, env_number
from common.schema import EVENTS_INDEX_PREFIX, LOGS_INDEX_PREFIX, MONITORING_INDEX_PREFIX
from common.store import StoreSettings, StoreUnavailable, connect

log = logging.getLogger("retention")
DAY_SUFFIX = re.compile(r"(\d{4})\.(\d{2})\.(\d{2})")


@dataclass(frozen=True)
class RetentionSettings:
    events_days: int = 30
    logs_days: int = 14
    monitoring_days: int = 400
    interval: float = 3600.0
    store: StoreSettings = field(default_factory=StoreSettings)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "RetentionSettings":
        env = os.environ if env is None else env
        return cls(
            events_days=env_number(env, "RETENTION_EVENTS_DAYS", cls.events_days, int, 1),
            logs_days=env_number(env, "RETENTION_LOGS_DAYS", cls.logs_days, int, 1),
            monitoring_days=env_number(env, "RETENTION_MONITORING_DAYS", cls.monitoring_days, int, 1),
            interval=env_number(env, "RETENTION_INTERVAL", cls.interval, float, 1.0),
            store=StoreSettings.from_env(env),
        )

    def days(self) -> dict[str, int]:
        """Index prefix -> days kept."""
        return {EVENTS_INDEX_PREFIX: self.events_days, LOGS_INDEX_PREFIX: self.logs_days,
                MONITORING_INDEX_PREFIX: self.monitoring_days}


def index_day(name: str, prefix: str) -> date | None:
    """The day in `<prefix>YYYY.MM.DD`; None for any other name (no date, a suffix, an invalid date)."""
    if not name.startswith(prefix):
        return None
    match = DAY_SUFFIX.fullmatch(name[len(prefix):])
    if not match:
        return None
    try:
        return date(*map(int, match.groups()))
    except ValueError:
        return None


def expired(names: Iterable[str], days: Mapping[str, int], today: date) -> list[tuple[str, int]]:
    """(index, age in days) of each daily index older than its prefix's days, oldest first."""
    found = []
    for name in names:
        for prefix, keep in days.items():
            day = index_day(name, prefix)
            if day is not None and (today - day).days > keep:
                found.append((name, (today - day).days))
    return sorted(found, key=lambda item: (-item[1], item[0]))


def daily_indices(es: Elasticsearch, prefixes: Iterable[str]) -> list[str]:
    """Concrete index names under each prefix (open and closed); aliases are not indices."""
    names: set[str] = set()
    for prefix in prefixes:
        names |= set(es.options(ignore_status=404).indices.get(index=f"{prefix}*", expand_wildcards="open,closed"))
    return sorted(names)


def apply(es: Elasticsearch, settings: RetentionSettings, today: date | None = None,
          dry_run: bool = False) -> list[tuple[str, int]]:
    """Delete the expired daily indices (each by its exact name); the ones deleted (or that would be)."""
    today = today or datetime.now(timezone.utc).date()
    days = settings.days()
    doomed = expired(daily_indices(es, days), days, today)
    for name, age in doomed:
        if not dry_run:
            es.options(ignore_status=404).indices.delete(index=name, expand_wildcards="none")
        log.info("%s %s (%d days old)", "would delete" if dry_run else "deleted", name, age)
    return doomed


class RetentionLoop:
    """`apply` every settings.interval seconds on a daemon thread (the embedded demo's schedule).
    A store error is logged and counted, never fatal: the next run tries again."""

    def __init__(self, settings: RetentionSettings,
                 connect_store: Callable[[StoreSettings], Elasticsearch] = connect) -> None:
        self.settings = settings
        self._connect = connect_store
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.runs = 0
        self.deleted: list[str] = []
        self.errors = 0
        self.last_error = ""

    def run_once(self) -> list[tuple[str, int]]:
        try:
            es = self._connect(self.settings.store)
            try:
                doomed = apply(es, self.settings)
            finally:
                es.close()
        except (ApiError, TransportError, StoreUnavailable) as exc:
            self.errors += 1
            self.last_error = str(exc)
            log.warning("retention run failed (next in %.0fs): %s", self.settings.interval, exc)
            return []
        finally:
            self.runs += 1
        self.deleted += [name for name, _ in doomed]
        return doomed

    def start(self) -> "RetentionLoop":
        def loop() -> None:
            while not self._stop.is_set():
                self.run_once()
                self._stop.wait(self.settings.interval)
        self._thread = threading.Thread(target=loop, name="retention", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m common.retention", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = RetentionSettings.from_env()
    except SettingsError as exc:
        print(f"python -m common.retention: {exc}", file=sys.stderr)
        return 2
    try:
        es = connect(settings.store)
        try:
            doomed = apply(es, settings, dry_run=args.dry_run)
        finally:
            es.close()
    except (ApiError, TransportError, StoreUnavailable) as exc:
        print(f"python -m common.retention: store at {settings.store.url}: {exc}", file=sys.stderr)
        return 1
    kept = ", ".join(f"{prefix}* {days} d" for prefix, days in settings.days().items())
    print(f"retention ({kept}): {'would delete' if args.dry_run else 'deleted'} {len(doomed)} "
          f"index(es){': ' + ', '.join(name for name, _ in doomed) if doomed else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
