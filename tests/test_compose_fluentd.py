"""fluentd/fluent.conf, checked without Fluentd: a small structural parser of its directive syntax,
then the settings that make delivery lossless and duplicate-free (id_key, create, file buffer)."""
from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from common.schema import EVENTS_INDEX_PREFIX, daily_index, feedback_event, prediction_event
from serving.event_sinks import FluentdSink
from serving.settings import ServingSettings
from tests.serving_support import ForwardReceiver

REPO = Path(__file__).resolve().parent.parent
CONF = REPO / "fluentd" / "fluent.conf"


class FluentConfError(ValueError):
    """A structural error, reported as `file:line: what`."""


@dataclass
class Directive:
    name: str
    arg: str
    line: int
    params: dict[str, str] = field(default_factory=dict)
    children: list["Directive"] = field(default_factory=list)

    def child(self, name: str) -> "Directive | None":
        return next((c for c in self.children if c.name == name), None)

    def all(self, name: str) -> list["Directive"]:
        return [c for c in self.children if c.name == name]


_OPEN = re.compile(r"^<([A-Za-z_@][\w@-]*)(?:\s+([^>]*))?>$")
_CLOSE = re.compile(r"^</([A-Za-z_@][\w@-]*)>$")
_PARAM = re.compile(r"^(@?[A-Za-z_][\w.-]*)(?:\s+(.*))?$")


def parse_fluent_conf(text: str, path: str = "fluent.conf") -> Directive:
    """Fluentd's directive syntax: `<name arg>` ... `</name>`, `key value` params, `#` comments."""
    root = Directive("ROOT", "", 0)
    stack = [root]
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if m := _CLOSE.match(line):
            if len(stack) == 1:
                raise FluentConfError(f"{path}:{number}: </{m[1]}> closes nothing")
            if stack[-1].name != m[1]:
                raise FluentConfError(f"{path}:{number}: </{m[1]}> closes <{stack[-1].name}> "
                                      f"opened at line {stack[-1].line}")
            stack.pop()
        elif m := _OPEN.match(line):
            directive = Directive(m[1], (m[2] or "").strip(), number)
            stack[-1].children.append(directive)
            stack.append(directive)
        elif line.startswith("<"):
            raise FluentConfError(f"{path}:{number}: malformed directive {line!r}")
        elif m := _PARAM.match(line):
            if len(stack) == 1 and not m[1].startswith("@"):
                raise FluentConfError(f"{path}:{number}: parameter {m[1]!r} outside any directive")
            if m[1] in stack[-1].params:
                raise FluentConfError(f"{path}:{number}: parameter {m[1]!r} set twice in <{stack[-1].name}>")
            stack[-1].params[m[1]] = (m[2] or "").strip()
        else:
            raise FluentConfError(f"{path}:{number}: cannot parse {line!r}")
    if len(stack) > 1:
        raise FluentConfError(f"{path}:{stack[-1].line}: <{stack[-1].name}> is never closed")
    return root


def tag_matches(pattern: str, tag: str) -> bool:
    """Fluentd match patterns: `*` one tag part, `**` zero or more (so `a.**` matches `a`), alternatives split by spaces."""
    def one(parts: list[str], tags: list[str]) -> bool:
        if not parts:
            return not tags
        head, rest = parts[0], parts[1:]
        if head == "**":
            return any(one(rest, tags[i:]) for i in range(len(tags) + 1))
        return bool(tags) and fnmatch.fnmatchcase(tags[0], head) and one(rest, tags[1:])

    return any(one(alternative.split("."), tag.split(".")) for alternative in pattern.split())


def record_accessor(expr: str, record: dict):
    """Fluentd's record_accessor dot syntax (`$.a.b`); a plain key reads the top level."""
    if not expr.startswith("$."):
        return record.get(expr)
    node = record
    for part in expr[2:].split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _event(timestamp: datetime | None = None) -> dict:
    return prediction_event(model_name="driver_ranker", model_version="1", request_id="r-1",
                            features={"conv_rate": 0.4, "acc_rate": 0.8, "avg_daily_trips": 12},
                            driver_id=1001, score=0.6, label=1, latency_ms=4.2, timestamp=timestamp)


@pytest.fixture(scope="module")
def conf() -> Directive:
    return parse_fluent_conf(CONF.read_text(), str(CONF))


@pytest.fixture(scope="module")
def es_output(conf) -> Directive:
    tag = ServingSettings().fluentd_tag
    outputs = [m for m in conf.all("match") if tag_matches(m.arg, tag)]
    assert outputs, f"no <match> in {CONF} routes serving's tag {tag!r}"
    first = outputs[0]  # Fluentd routes an event to the first matching <match> only
    assert first.params.get("@type") == "elasticsearch", f"line {first.line}: {tag} goes to {first.params.get('@type')}"
    return first


def test_forward_source_listens_on_24224(conf):
    sources = [s for s in conf.all("source") if s.params.get("@type") == "forward"]
    assert len(sources) == 1
    assert sources[0].params.get("port") == "24224"
    assert sources[0].params.get("bind") == "0.0.0.0"


def test_serving_tag_and_its_sub_tags_reach_elasticsearch(conf):
    tag = ServingSettings().fluentd_tag
    for candidate in (tag, f"{tag}.prediction"):
        first = next(m for m in conf.all("match") if tag_matches(m.arg, candidate))
        assert first.params["@type"] == "elasticsearch", candidate
    # anything else falls through to a file, never into the void
    other = next(m for m in conf.all("match") if tag_matches(m.arg, "something.else"))
    assert other.params["@type"] == "file"


def test_index_is_the_daily_ml_events_index_of_the_event_timestamp(es_output):
    p = es_output.params
    assert p["logstash_format"] == "true"
    assert p.get("utc_index", "true") == "true"
    # 00:30 at UTC+2 is still the 23rd in UTC: the index follows the UTC day of @timestamp
    event = _event(datetime(2026, 11, 24, 0, 30, tzinfo=timezone(timedelta(hours=2))))
    ts = datetime.fromisoformat(event["@timestamp"].replace("Z", "+00:00"))
    index = p["logstash_prefix"] + p.get("logstash_prefix_separator", "-") + ts.strftime(p["logstash_dateformat"])
    assert index == daily_index(EVENTS_INDEX_PREFIX, event["@timestamp"]) == "ml-events-2026.11.23"
    patterns = json.loads((REPO / "elasticsearch" / "ml-events.index-template.json").read_text())["index_patterns"]
    assert any(fnmatch.fnmatchcase(index, pattern) for pattern in patterns)


def test_document_id_is_event_id_and_writes_are_create(es_output):
    p = es_output.params
    assert p["write_operation"] == "create"
    for event in (_event(), feedback_event(model_name="m", model_version="1", request_id="r", trip_completed=1)):
        assert record_accessor(p["id_key"], event) == event["event"]["id"]
    assert p.get("emit_error_for_missing_id") == "true", "create silently skips records without an id otherwise"


def test_es9_connection_settings(es_output):
    p = es_output.params
    assert p["default_elasticsearch_version"] == "9"
    assert p["suppress_type_name"] == "true"
    assert p["verify_es_version_at_startup"] == "true"
    for key in ("host", "port", "user", "password", "scheme"):
        assert "ENV[" in p[key], f"{key} must come from the environment, not the file"


def test_buffer_is_a_bounded_blocking_file_buffer_that_retries_forever(es_output):
    buffer = es_output.child("buffer")
    assert buffer is not None
    b = buffer.params
    assert b["@type"] == "file" and b["path"].startswith("/fluentd/state/")
    assert b["flush_at_shutdown"] == "true"          # default false for file buffers
    assert b["retry_forever"] == "true"
    assert b["retry_type"] == "exponential_backoff"
    assert b["overflow_action"] == "block"
    assert re.fullmatch(r"\d+(MB|GB|m|g)", b["total_limit_size"])
    assert re.fullmatch(r"\d+(MB|m)", b["chunk_limit_size"])
    assert "tag" in buffer.arg.replace(",", " ").split()  # the plugin requires tag or _index as chunk key


def test_rejected_records_are_kept_as_dead_letters(conf):
    labels = [d for d in conf.all("label") if d.arg == "@ERROR"]
    assert labels, "no <label @ERROR>: records the output rejects would be lost"
    outputs = labels[0].all("match")
    assert outputs and outputs[0].params["@type"] == "file"
    assert outputs[0].params["path"].startswith("/fluentd/state/deadletter/")


def test_state_paths_live_on_the_compose_volume(conf):
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    mounts = [v.split(":")[1] for v in compose["services"]["fluentd"]["volumes"]]
    assert "/fluentd/state" in mounts
    paths = [b.params["path"] for m in conf.all("match") for b in m.all("buffer")]
    paths += [b.params["path"] for lab in conf.all("label") for m in lab.all("match") for b in m.all("buffer")]
    assert paths and all(p.startswith("/fluentd/state/") for p in paths)


# --- the checker itself: bad files get an error naming file and line ---

@pytest.mark.parametrize("text, message", [
    ("<match a>\n  @type stdout\n", "x.conf:1: <match> is never closed"),
    ("<match a>\n  <buffer>\n</match>\n", "x.conf:3: </match> closes <buffer> opened at line 2"),
    ("</source>\n", "x.conf:1: </source> closes nothing"),
    ("<match a>\n  port 1\n  port 2\n</match>\n", "x.conf:3: parameter 'port' set twice"),
    ("port 24224\n", "x.conf:1: parameter 'port' outside any directive"),
    ("<match a\n</match>\n", "x.conf:1: malformed directive"),
])
def test_checker_reports_file_and_line(text, message):
    with pytest.raises(FluentConfError, match=re.escape(message)):
        parse_fluent_conf(text, "x.conf")


def test_checker_reads_nesting_and_tag_patterns():
    root = parse_fluent_conf("# c\n<match a.** b>\n  @type x\n  <buffer tag>\n    path /p\n  </buffer>\n</match>\n")
    match = root.child("match")
    assert match.arg == "a.** b" and match.child("buffer").params == {"path": "/p"}
    assert tag_matches("a.**", "a") and tag_matches("a.**", "a.b.c") and tag_matches("x b", "b")
    assert not tag_matches("a.*", "a") and not tag_matches("a.*", "a.b.c") and not tag_matches("a.**", "ab")


def test_records_serving_forwards_route_to_the_es_output_with_their_id_and_index(conf):
    """Serving's real Fluentd sink, configured by the compose env, sends to a forward-protocol
    receiver; each received (tag, record) is routed through the parsed fluent.conf as Fluentd would."""
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    env = {k: str(v) for k, v in compose["services"]["serving"]["environment"].items()}
    settings = ServingSettings.from_env(env)
    assert settings.fluentd_host == "fluentd"  # the compose service name; loopback for this test
    receiver = ForwardReceiver()
    try:
        sink = FluentdSink("127.0.0.1", receiver.port, settings.fluentd_tag)
        events = [_event(), feedback_event(model_name="m", model_version="1", request_id="r", trip_completed=0)]
        for event in events:
            assert sink.emit(event)
        records = receiver.wait_for_records(len(events))
        sink.close()
    finally:
        receiver.close()
    assert len(records) == len(events)
    for (tag, _, record), sent in zip(records, events):
        output = next(m for m in conf.all("match") if tag_matches(m.arg, tag))
        p = output.params
        assert p["@type"] == "elasticsearch", tag
        assert record_accessor(p["id_key"], record) == sent["event"]["id"]
        ts = datetime.fromisoformat(record["@timestamp"].replace("Z", "+00:00"))
        index = p["logstash_prefix"] + p["logstash_prefix_separator"] + ts.strftime(p["logstash_dateformat"])
        assert index == daily_index(EVENTS_INDEX_PREFIX, sent["@timestamp"])


def test_fluentds_own_logs_have_their_own_route_not_the_dead_letters(conf):
    """Fluentd routes its own log events (fluent.*) to <label @FLUENT_LOG> when the label exists;
    without it they would fall into the top-level `<match **>` dead-letter output and grow it forever."""
    labels = [d for d in conf.all("label") if d.arg == "@FLUENT_LOG"]
    assert labels, "no <label @FLUENT_LOG>: Fluentd's own logs would end in the dead-letter files"
    for tag in ("fluent.info", "fluent.warn", "fluent.error"):
        assert any(tag_matches(m.arg, tag) for m in labels[0].all("match")), tag
    assert not any(m.arg.split()[0].startswith("fluent.") for m in conf.all("match")), \
        "a top-level <match fluent.**> is deprecated; use <label @FLUENT_LOG>"


def test_image_and_gems_are_pinned_to_exact_versions():
    dockerfile = (REPO / "fluentd" / "Dockerfile").read_text()
    (base,) = re.findall(r"^FROM\s+(\S+)", dockerfile, re.M)
    assert re.fullmatch(r"fluent/fluentd:v1\.19\.\d+-debian-2\.\d+", base), base
    installs = re.findall(r"gem install (\S+) ([-\w ]+?) --version '([^']+)'", dockerfile)
    gems = {name: version for name, _, version in installs}
    # the plugin asks for any elasticsearch gem: without --conservative its install would upgrade ours
    assert all("--conservative" in flags for name, flags, _ in installs if name != "elastic-transport")
    assert {"elasticsearch", "fluent-plugin-elasticsearch", "elastic-transport", "fluent-plugin-prometheus"} <= set(gems)
    assert list(gems).index("elastic-transport") < list(gems).index("elasticsearch"), "transport must come first"
    for name, version in gems.items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{name} is not pinned exactly: {version}"
    # elasticsearch-ruby releases whose bulk fails on the first flush after each start
    broken = {"9.0.5", "9.1.2", "9.1.3", "9.2.0", "9.2.1", "9.2.2", "9.3.0", "9.3.1", "9.3.2", "9.4.0", "9.4.1"}
    assert gems["elasticsearch"].startswith("9.") and gems["elasticsearch"] not in broken


def test_prometheus_plugin_serves_buffer_retry_and_output_metrics_on_24231(conf):
    """fluent-plugin-prometheus: one HTTP source on 24231 (what prometheus.yml's fluentd job scrapes),
    the output monitor (buffer queue, retries, errors per output) and the plugin monitor."""
    by_type = {s.params.get("@type"): s for s in conf.all("source")}
    server = by_type.get("prometheus")
    assert server is not None, "no <source> @type prometheus"
    assert (server.params.get("bind"), server.params.get("port"), server.params.get("metrics_path")) == \
        ("0.0.0.0", "24231", "/metrics")
    assert {"prometheus_output_monitor", "prometheus_monitor"} <= set(by_type)
    assert all(s.params.get("@id") for s in conf.all("source")), "every source has an @id (its plugin_id label)"
    jobs = {job["job_name"]: job for job in yaml.safe_load((REPO / "prometheus" / "prometheus.yml").read_text())["scrape_configs"]}
    assert jobs["fluentd"]["static_configs"][0]["targets"] == ["fluentd:24231"]
    assert "24231" in (REPO / "fluentd" / "Dockerfile").read_text().split("EXPOSE", 1)[1].splitlines()[0]
