"""The file → store shipper against a real osmem-server: each promise of issue 5, one test each."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from osmem_server import OsmemServer

from common.schema import feedback_event, parse_timestamp, prediction_event, utc_now
from common.store import StoreSettings, apply_index_templates, connect
from common.env import SettingsError
from shipper import Shipper, ShipperSettings
from shipper.bulk import item_outcome, to_document
from shipper.offsets import OffsetStore
from tests.conftest import REPO_ROOT, free_port


def make_event(i: int, day: int = 23) -> dict:
    ts = datetime(2026, 11, day, 12, 0, i % 60, tzinfo=timezone.utc)
    return prediction_event(model_name="driver_ranker", model_version="1", request_id=f"r{i}",
                            features={"conv_rate": 0.5, "acc_rate": 0.9, "avg_daily_trips": 10},
                            driver_id=1000 + i, score=0.7, label=1, latency_ms=2.0, timestamp=ts)


def write(path: Path, events: list, raw: str = "") -> list[str]:
    """Append events (dicts) as JSON lines, then `raw` verbatim; returns their ids."""
    with open(path, "a") as handle:
        for event in events:
            handle.write(json.dumps(event) + "\n")
        handle.write(raw)
    return [e["event"].get("id") for e in events]


def settings_for(tmp_path: Path, url: str, **overrides) -> ShipperSettings:
    values = dict(files=(tmp_path / "events.jsonl",), state_dir=tmp_path / "shipper",
                  batch_size=100, poll_interval=0.02, backoff_initial=0.05, backoff_max=0.2,
                  store=StoreSettings(url=url, request_timeout=2.0))
    values.update(overrides)
    return ShipperSettings(**values)


def stored_ids(es, index: str = "ml-events-*") -> set[str]:
    es.indices.refresh(index=index)
    hits = es.search(index=index, size=1000, query={"match_all": {}})["hits"]["hits"]
    return {h["_id"] for h in hits}


def wait_for(condition, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@contextmanager
def running(shipper: Shipper):
    """The shipper following its files on a thread while the block runs; stopped after it."""
    stop = threading.Event()
    thread = threading.Thread(target=shipper.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        stop.set()
        thread.join(15)


@pytest.fixture
def events_file(tmp_path) -> Path:
    return tmp_path / "events.jsonl"


def test_events_go_to_the_daily_index_of_their_timestamp_with_event_id_as_id(tmp_path, store_url, es, events_file):
    ids = write(events_file, [make_event(1, day=23), make_event(2, day=24)])
    shipper = Shipper(settings_for(tmp_path, store_url))
    before = utc_now() - timedelta(milliseconds=1)
    shipper.drain()
    assert stored_ids(es, "ml-events-2026.11.23") == {ids[0]}
    assert stored_ids(es, "ml-events-2026.11.24") == {ids[1]}
    doc = es.get(index="ml-events-2026.11.23", id=ids[0])["_source"]
    assert doc["prediction"]["driver_id"] == 1001
    # event.ingested: when it reached the store (the shipper's stamp, or the store's where it has pipelines)
    assert before <= parse_timestamp(doc["event"]["ingested"]) <= utc_now()
    assert shipper.stats.shipped == 2 and shipper.stats.lag_bytes == 0


def test_reshipping_counts_duplicates_and_never_duplicates_documents(tmp_path, store_url, es, events_file):
    ids = write(events_file, [make_event(i) for i in range(5)])
    Shipper(settings_for(tmp_path, store_url)).drain()
    again = Shipper(settings_for(tmp_path, store_url, state_dir=tmp_path / "fresh-state"))
    again.drain()
    assert (again.stats.shipped, again.stats.duplicates, again.stats.dead_lettered) == (0, 5, 0)
    assert len(stored_ids(es)) == 5 and es.count(index="ml-events-*")["count"] == 5
    assert stored_ids(es) == set(ids)


def test_a_restart_resumes_from_the_saved_offsets(tmp_path, store_url, es, events_file):
    first_ids = write(events_file, [make_event(i) for i in range(3)])
    Shipper(settings_for(tmp_path, store_url)).drain()
    saved = OffsetStore(tmp_path / "shipper/offsets.json").load()[str(events_file)]
    assert saved.offset == events_file.stat().st_size and saved.inode == events_file.stat().st_ino
    later_ids = write(events_file, [make_event(i) for i in range(3, 7)])
    restarted = Shipper(settings_for(tmp_path, store_url))
    restarted.drain()
    assert (restarted.stats.shipped, restarted.stats.duplicates) == (4, 0)
    assert stored_ids(es) == set(first_ids + later_ids)


def test_offsets_are_written_atomically(tmp_path):
    store = OffsetStore(tmp_path / "offsets.json")
    from shipper.tail import Position
    store.save({"/a": Position(5, 10)})
    store.save({"/a": Position(5, 20), "/b": Position(6, 1)})
    assert store.load() == {"/a": Position(5, 20), "/b": Position(6, 1)}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["offsets.json"]  # no temporary left behind


def test_an_unreadable_offsets_file_means_reshipping_from_the_start(tmp_path, store_url, es, events_file, caplog):
    ids = write(events_file, [make_event(i) for i in range(2)])
    offsets = tmp_path / "shipper/offsets.json"
    offsets.parent.mkdir()
    offsets.write_text("{not json")
    with caplog.at_level(logging.WARNING):
        shipper = Shipper(settings_for(tmp_path, store_url))
    shipper.drain()
    assert str(offsets) in caplog.text and "from its start again" in caplog.text
    assert stored_ids(es) == set(ids)


def test_invalid_lines_go_to_the_dead_letter_file_with_a_count_in_the_log(tmp_path, store_url, es, events_file, caplog):
    no_id = make_event(9)
    del no_id["event"]["id"]
    bad_time = make_event(8)
    bad_time["@timestamp"] = "yesterday"
    good = write(events_file, [make_event(1)], raw="{truncated json\n")
    good += write(events_file, [no_id, bad_time, make_event(2)], raw="[1, 2]\n\n")
    with open(events_file, "ab") as handle:
        handle.write(b'{"a": "\xff"}\n')  # not UTF-8
    with caplog.at_level(logging.WARNING, logger="shipper"):
        shipper = Shipper(settings_for(tmp_path, store_url))
        shipper.drain()
    good = [good[0], good[3]]
    assert stored_ids(es) == set(good)
    letters = [json.loads(line) for line in (tmp_path / "shipper/dead-letters.jsonl").read_text().splitlines()]
    reasons = [letter["reason"] for letter in letters]
    assert len(letters) == shipper.stats.dead_lettered == 5  # the blank line is skipped, not dead-lettered
    assert reasons[0].startswith("not valid JSON") and letters[0]["line"] == "{truncated json"
    assert reasons[1] == "no event.id"
    assert "yesterday" in reasons[2]
    assert reasons[3] == "not a JSON object but list"
    assert reasons[4].startswith("not valid JSON") and "utf-8" in reasons[4]
    assert all(letter["file"] == str(events_file) for letter in letters)
    assert "dead-lettered 5 line(s)" in caplog.text and "(5 in total)" in caplog.text


def test_documents_the_store_rejects_are_dead_lettered_not_retried_forever(tmp_path, store_url, es, events_file):
    broken = make_event(1)
    broken["features"]["conv_rate"] = "high"
    ok = write(events_file, [broken, make_event(2)])[1]
    shipper = Shipper(settings_for(tmp_path, store_url))
    shipper.drain()
    assert stored_ids(es) == {ok}
    letter = json.loads((tmp_path / "shipper/dead-letters.jsonl").read_text())
    assert letter["reason"].startswith("400 mapper_parsing_exception") and "conv_rate" in letter["reason"]
    assert (shipper.stats.retries, shipper.stats.dead_lettered) == (0, 1)


def test_a_partial_last_line_waits_for_its_newline(tmp_path, store_url, es, events_file):
    whole = make_event(1)
    half = json.dumps(make_event(2))
    write(events_file, [whole], raw=half[:40])
    shipper = Shipper(settings_for(tmp_path, store_url))
    shipper.drain()
    assert stored_ids(es) == {whole["event"]["id"]}
    assert shipper.stats.dead_lettered == 0
    assert OffsetStore(tmp_path / "shipper/offsets.json").load()[str(events_file)].offset == len(json.dumps(whole)) + 1
    write(events_file, [], raw=half[40:] + "\n")
    shipper.drain()
    assert stored_ids(es) == {whole["event"]["id"], json.loads(half)["event"]["id"]}


def rotate(path: Path) -> None:
    """What the serving's rotating writer does: name.1 → name.2, name → name.1."""
    rotated = sorted(path.parent.glob(path.name + ".*"), key=lambda p: int(p.suffix[1:]), reverse=True)
    for old in rotated:
        old.rename(path.with_name(f"{path.name}.{int(old.suffix[1:]) + 1}"))
    path.rename(path.with_name(path.name + ".1"))


def test_rotation_finishes_the_rotated_file_before_the_new_one(tmp_path, store_url, es, events_file):
    shipper = Shipper(settings_for(tmp_path, store_url))
    ids = write(events_file, [make_event(i) for i in range(3)])
    shipper.drain()
    ids += write(events_file, [make_event(i) for i in range(3, 5)])  # unread when it rotates
    rotated_inode = events_file.stat().st_ino
    rotate(events_file)
    new_ids = write(events_file, [make_event(i) for i in range(5, 7)])
    shipper.ship_once()
    assert stored_ids(es) == set(ids)  # the rest of the rotated file first, the new file not yet
    assert OffsetStore(tmp_path / "shipper/offsets.json").load()[str(events_file)].inode == rotated_inode
    shipper.ship_once()
    assert stored_ids(es) == set(ids + new_ids)
    assert shipper.stats.duplicates == 0


def test_two_rotations_between_polls_and_a_restart_lose_nothing(tmp_path, store_url, es, events_file):
    ids = write(events_file, [make_event(i) for i in range(2)])
    Shipper(settings_for(tmp_path, store_url)).drain()
    ids += write(events_file, [make_event(2)], raw=json.dumps(make_event(3))[:30])  # writer died mid-line
    rotate(events_file)
    ids += write(events_file, [make_event(4)])
    rotate(events_file)
    ids += write(events_file, [make_event(5)])
    shipper = Shipper(settings_for(tmp_path, store_url))  # a restart, too
    shipper.drain()
    assert stored_ids(es) == set(ids)
    assert (shipper.stats.shipped, shipper.stats.duplicates, shipper.stats.dead_lettered) == (3, 0, 1)
    assert shipper.stats.lag_bytes == 0


def test_a_truncated_file_is_read_again_from_its_start(tmp_path, store_url, es, events_file):
    write(events_file, [make_event(i) for i in range(4)])
    shipper = Shipper(settings_for(tmp_path, store_url))
    shipper.drain()
    events_file.write_text("")
    new = write(events_file, [make_event(9)])
    shipper.drain()
    assert new[0] in stored_ids(es) and shipper.stats.shipped == 5


def test_store_down_retries_with_backoff_and_loses_nothing(tmp_path, events_file):
    port = free_port()
    addr = f"127.0.0.1:{port}"

    def start_store() -> OsmemServer:
        server = OsmemServer.start(japanese=False, addr=addr)
        client = connect(StoreSettings(url=server.url))
        apply_index_templates(client)
        client.close()
        return server

    server = start_store()
    settings = settings_for(tmp_path, server.url)
    shipper = Shipper(settings)
    try:
        with running(shipper) as thread:
            write(events_file, [make_event(i) for i in range(3)])
            wait_for(lambda: shipper.stats.shipped == 3, what="the first 3 events")
            server.close()
            offsets_before = settings.offsets_file.read_text()
            while_down = write(events_file, [make_event(i) for i in range(3, 8)])
            wait_for(lambda: shipper.stats.retries >= 3, what="retries while the store is down")
            assert not shipper.stats.store_available and "store unavailable" in shipper.stats.last_error
            assert settings.offsets_file.read_text() == offsets_before  # not advanced without an ack
            back = utc_now() - timedelta(milliseconds=1)
            server = start_store()  # an empty in-memory store again: only what was not acknowledged arrives
            wait_for(lambda: shipper.stats.shipped == 8, what="the events written while the store was down")
            assert shipper.stats.store_available and shipper.stats.lag_bytes == 0
            client = connect(StoreSettings(url=server.url))
            assert stored_ids(client) == set(while_down)
            stamps = [parse_timestamp(h["_source"]["event"]["ingested"])
                      for h in client.search(index="ml-events-*", size=100)["hits"]["hits"]]
            assert len(stamps) == 5 and min(stamps) >= back     # stamped when delivered, not at the first try
            client.close()
            assert OffsetStore(settings.offsets_file).load()[str(events_file)].offset == events_file.stat().st_size
    finally:
        server.close()
    assert not thread.is_alive()


def test_stopping_while_the_store_is_down_keeps_the_batch_for_the_next_start(tmp_path, events_file):
    url = f"http://127.0.0.1:{free_port()}"
    write(events_file, [make_event(1)])
    shipper = Shipper(settings_for(tmp_path, url))
    stop = threading.Event()
    thread = threading.Thread(target=shipper.run, args=(stop,), daemon=True)
    thread.start()
    wait_for(lambda: shipper.stats.retries >= 2, what="retries")
    stop.set()
    thread.join(5)
    assert not thread.is_alive() and shipper.stats.shipped == 0
    assert not (tmp_path / "shipper/offsets.json").exists()


def test_backoff_doubles_up_to_its_maximum(tmp_path, events_file, caplog):
    write(events_file, [make_event(1)])
    shipper = Shipper(settings_for(tmp_path, f"http://127.0.0.1:{free_port()}",
                                   backoff_initial=0.01, backoff_max=0.04))
    stop = threading.Event()
    with caplog.at_level(logging.WARNING, logger="shipper"):
        thread = threading.Thread(target=shipper.run, args=(stop,), daemon=True)
        thread.start()
        wait_for(lambda: shipper.stats.retries >= 5, what="5 retries")
        stop.set()
        thread.join(5)
    waits = [float(r.args[2]) for r in caplog.records if "retry" in r.getMessage()]
    assert waits[:5] == [0.01, 0.02, 0.04, 0.04, 0.04]


def test_bulk_item_outcomes():
    assert item_outcome({"create": {"status": 201}}) == ("created", "")
    assert item_outcome({"create": {"status": 409, "error": {"type": "version_conflict_engine_exception"}}}) == ("duplicate", "")
    assert item_outcome({"create": {"status": 429, "error": {"type": "es_rejected_execution_exception", "reason": "queue full"}}})[0] == "retry"
    assert item_outcome({"create": {"status": 503, "error": {"type": "unavailable_shards_exception", "reason": "x"}}})[0] == "retry"
    outcome, reason = item_outcome({"create": {"status": 400, "error": {"type": "mapper_parsing_exception", "reason": "bad"}}})
    assert (outcome, reason) == ("rejected", "400 mapper_parsing_exception: bad")


def test_feedback_events_are_documents_too():
    event = feedback_event(model_name="m", model_version="1", request_id="r", trip_completed=1,
                           timestamp=datetime(2026, 1, 2, tzinfo=timezone.utc))
    doc = to_document(json.dumps(event).encode(), "ml-events-")
    assert (doc.index, doc.id) == ("ml-events-2026.01.02", event["event"]["id"])


def test_settings_from_env():
    s = ShipperSettings.from_env({"SHIPPER_FILES": "/a.jsonl, /b.jsonl", "SHIPPER_STATE_DIR": "/st",
                                  "SHIPPER_BATCH_SIZE": "7", "SHIPPER_POLL_INTERVAL": "0.1",
                                  "ELASTICSEARCH_URL": "http://127.0.0.1:1"})
    assert s.files == (Path("/a.jsonl"), Path("/b.jsonl")) and s.offsets_file == Path("/st/offsets.json")
    assert (s.batch_size, s.poll_interval, s.store.url) == (7, 0.1, "http://127.0.0.1:1")
    default = ShipperSettings.from_env({})
    assert default.files == (REPO_ROOT / "var/events/ml-events.jsonl",)
    assert default.state_dir == REPO_ROOT / "var/shipper"


@pytest.mark.parametrize("env, message", [
    ({"SHIPPER_BATCH_SIZE": "lots"}, "SHIPPER_BATCH_SIZE='lots' is not an integer"),
    ({"SHIPPER_BATCH_SIZE": "0"}, "SHIPPER_BATCH_SIZE='0' must be at least 1"),
    ({"SHIPPER_POLL_INTERVAL": "soon"}, "SHIPPER_POLL_INTERVAL='soon' is not a number"),
    ({"SHIPPER_BACKOFF_INITIAL": "5", "SHIPPER_BACKOFF_MAX": "1"}, "SHIPPER_BACKOFF_MAX must not be smaller"),
])
def test_bad_settings_name_the_variable(env, message):
    with pytest.raises(SettingsError, match=message.replace("(", r"\(")):
        ShipperSettings.from_env(env)


def run_cli(tmp_path: Path, extra_env: dict) -> subprocess.CompletedProcess:
    env = {**os.environ, "SHIPPER_FILES": str(tmp_path / "events.jsonl"),
           "SHIPPER_STATE_DIR": str(tmp_path / "shipper"), **extra_env}
    return subprocess.run([sys.executable, "-m", "shipper", "--once"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_cli_once_ships_and_exits(tmp_path, store_url, es, events_file):
    ids = write(events_file, [make_event(i) for i in range(3)])
    result = run_cli(tmp_path, {"ELASTICSEARCH_URL": store_url})
    assert result.returncode == 0, result.stderr
    assert "stopped: shipped=3 duplicates=0" in result.stderr
    assert stored_ids(es) == set(ids)


def test_cli_bad_setting_exits_2_naming_the_variable(tmp_path):
    result = run_cli(tmp_path, {"SHIPPER_BATCH_SIZE": "-3"})
    assert result.returncode == 2
    assert "SHIPPER_BATCH_SIZE='-3' must be at least 1" in result.stderr


def test_the_shipper_depends_on_common_only():
    """Data flows one way: the shipper imports the schema and store client, never demo/, serving/ or the processor."""
    import ast
    project = {"common", "serving", "log_processor", "demo", "benchmarks", "tests", "shipper"}
    for path in sorted((REPO_ROOT / "shipper").glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            for name in names:
                top = name.split(".")[0]
                assert top not in project - {"common", "shipper"}, f"{path.name} imports {name}"


def test_cli_help_lists_its_options_and_settings():
    result = subprocess.run([sys.executable, "-m", "shipper", "--help"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "--once" in result.stdout and "SHIPPER_FILES" in result.stdout
