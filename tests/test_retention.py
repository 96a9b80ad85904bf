"""The retention step (issue 32, point 6) on both stores: osmem-server and the real OpenSearch.

Daily indices older than their setting go, by the date in their name; an index without a date, with
a suffix after the date, with an impossible date, of another prefix, or younger than its age stays.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import date, datetime, timedelta, timezone

import pytest

from common.env import SettingsError
from common.retention import RetentionLoop, RetentionSettings, apply, expired, index_day
from common.schema import EVENTS_INDEX_PREFIX, LOGS_INDEX_PREFIX, MONITORING_INDEX_PREFIX
from common.store import StoreSettings
from tests.conftest import REPO_ROOT, free_port

# one day for the whole module: a run that crosses midnight UTC must not move the boundary under it
TODAY = datetime.now(timezone.utc).date()


def day(days_ago: int, prefix: str = EVENTS_INDEX_PREFIX) -> str:
    return f"{prefix}{TODAY - timedelta(days=days_ago):%Y.%m.%d}"


SETTINGS = RetentionSettings(events_days=30, logs_days=14, monitoring_days=400)
EXPIRED = {day(31), day(365), day(15, LOGS_INDEX_PREFIX), day(401, MONITORING_INDEX_PREFIX)}
SURVIVORS = {
    day(0), day(30),                               # younger than / exactly at its age
    day(14, LOGS_INDEX_PREFIX), day(365, MONITORING_INDEX_PREFIX),
    "ml-events-archive",                           # no date
    day(60) + "-restored",                         # a date, then more: not a daily index
    "ml-events-2020.13.45",                        # no such day
    "other-logs-2020.01.01",                       # an old date under a prefix retention does not own
}


def test_expired_is_by_the_date_in_the_name_and_the_prefix_s_age():
    assert {name for name, _ in expired(EXPIRED | SURVIVORS, SETTINGS.days(), TODAY)} == EXPIRED
    assert expired([day(31)], SETTINGS.days(), TODAY) == [(day(31), 31)]
    assert index_day("ml-events-2026.02.29", EVENTS_INDEX_PREFIX) is None      # not a leap year
    assert index_day("ml-events-2024.02.29", EVENTS_INDEX_PREFIX) == date(2024, 2, 29)
    # a shorter setting takes more, a longer one less
    shorter = RetentionSettings(events_days=3).days()
    assert day(4) in {n for n, _ in expired([day(4), day(3)], shorter, TODAY)}
    assert not expired([day(3)], shorter, TODAY)


def test_settings_from_env_and_bad_values_name_the_variable():
    s = RetentionSettings.from_env({"RETENTION_EVENTS_DAYS": "7", "RETENTION_INTERVAL": "60",
                                    "ELASTICSEARCH_URL": "http://127.0.0.1:1"})
    assert (s.events_days, s.logs_days, s.monitoring_days, s.interval) == (7, 14, 400, 60.0)
    assert s.store.url == "http://127.0.0.1:1"
    with pytest.raises(SettingsError, match="RETENTION_LOGS_DAYS='0' must be at least 1"):
        RetentionSettings.from_env({"RETENTION_LOGS_DAYS": "0"})
    with pytest.raises(SettingsError, match="RETENTION_MONITORING_DAYS='a year' is not an integer"):
        RetentionSettings.from_env({"RETENTION_MONITORING_DAYS": "a year"})


def make_indices(es, names) -> None:
    for name in names:
        es.indices.create(index=name)


def test_a_run_deletes_only_expired_daily_indices(es, store_url):
    make_indices(es, EXPIRED | SURVIVORS)
    deleted = apply(es, SETTINGS, today=TODAY, dry_run=True)
    assert {name for name, _ in deleted} == EXPIRED
    assert EXPIRED <= set(es.indices.get(index="*"))             # a dry run deletes nothing
    deleted = apply(es, SETTINGS, today=TODAY)
    assert {name for name, _ in deleted} == EXPIRED
    left = set(es.indices.get(index="*", expand_wildcards="open,closed"))
    assert SURVIVORS <= left and not (EXPIRED & left)
    assert apply(es, SETTINGS, today=TODAY) == []                               # nothing more on a second run


def test_the_command_and_the_loop_run_against_the_store(es, store_url):
    make_indices(es, {day(40), day(1)})
    env = {**os.environ, "ELASTICSEARCH_URL": store_url}
    result = subprocess.run([sys.executable, "-m", "common.retention"], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"deleted 1 index(es): {day(40)}" in result.stdout
    assert set(es.indices.get(index="ml-events-*")) == {day(1)}

    make_indices(es, {day(50)})
    loop = RetentionLoop(RetentionSettings(interval=3600, store=StoreSettings(url=store_url))).start()
    try:
        deadline = time.monotonic() + 30
        while loop.runs < 1:
            assert time.monotonic() < deadline, "the first scheduled run did not happen"
            time.sleep(0.05)
    finally:
        loop.stop()
    assert loop.deleted == [day(50)] and loop.errors == 0
    assert set(es.indices.get(index="ml-events-*")) == {day(1)}


def test_a_bad_setting_exits_2_and_a_store_that_is_down_exits_1_naming_it(tmp_path):
    env = {**os.environ, "RETENTION_EVENTS_DAYS": "-1"}
    result = subprocess.run([sys.executable, "-m", "common.retention"], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "RETENTION_EVENTS_DAYS='-1' must be at least 1" in result.stderr
    url = f"http://127.0.0.1:{free_port()}"
    env = {**os.environ, "ELASTICSEARCH_URL": url, "ELASTICSEARCH_TIMEOUT": "2"}
    result = subprocess.run([sys.executable, "-m", "common.retention"], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and f"store at {url}" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    loop = RetentionLoop(RetentionSettings(store=StoreSettings(url=url, request_timeout=2)))
    assert loop.run_once() == [] and loop.errors == 1 and loop.last_error
