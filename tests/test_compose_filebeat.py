"""filebeat/filebeat.yml (Filebeat 9.x), checked for what COMPOSE-NOTES require: filestream with a
unique id, container + ndjson parsers, opt-in hints autodiscover, deterministic _id, our own index
and template, the registry on a named volume."""
from __future__ import annotations

import fnmatch
import json
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
HINT_LABEL = "co.elastic.logs/enabled"


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load((REPO / "filebeat" / "filebeat.yml").read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def provider(config) -> dict:
    providers = config["filebeat.autodiscover"]["providers"]
    assert len(providers) == 1 and providers[0]["type"] == "docker"
    return providers[0]


def test_no_input_type_removed_in_filebeat_9(config):
    text = (REPO / "filebeat" / "filebeat.yml").read_text()
    assert "type: container" not in text and "type: log\n" not in text
    assert "filebeat.inputs" not in config  # everything comes through autodiscover


def test_hints_autodiscover_collects_only_opted_in_containers(provider, compose):
    assert provider["hints.enabled"] is True
    default = provider["hints.default_config"]
    assert default["enabled"] is False, "without this every container on the host is shipped"
    opted_in = [name for name, s in compose["services"].items() if (s.get("labels") or {}).get(HINT_LABEL) == "true"]
    assert opted_in == ["serving"]


def test_filestream_input_has_a_unique_stable_id_and_reads_docker_json_logs(provider):
    default = provider["hints.default_config"]
    assert default["type"] == "filestream"
    assert "${data.container.id}" in default["id"]
    assert default["paths"] == ["/var/lib/docker/containers/${data.container.id}/*-json.log"]


def test_parsers_unwrap_docker_then_lift_serving_json(provider):
    parsers = provider["hints.default_config"]["parsers"]
    assert [next(iter(p)) for p in parsers] == ["container", "ndjson"]
    ndjson = parsers[1]["ndjson"]
    assert ndjson["target"] == ""
    assert ndjson["overwrite_keys"] is True
    assert ndjson["add_error_key"] is True
    assert ndjson["expand_keys"] is True


def test_document_id_is_a_fingerprint_of_the_line_position(config):
    fingerprints = [p["fingerprint"] for p in config["processors"] if "fingerprint" in p]
    assert len(fingerprints) == 1
    fp = fingerprints[0]
    assert fp["target_field"] == "@metadata._id"
    # container + file + byte offset identify one line; a resent batch carries the same values
    assert {"container.id", "log.file.path", "log.offset"} <= set(fp["fields"])
    # only values read from the line or its position: nothing that differs between two sends
    assert set(fp["fields"]) <= {"container.id", "log.file.path", "log.offset", "@timestamp", "message"}


def test_output_writes_our_daily_index_with_our_template(config):
    index = config["output.elasticsearch"]["index"]
    assert index == "logs-serving-%{+yyyy.MM.dd}"
    template = json.loads((REPO / "elasticsearch" / "logs-serving.index-template.json").read_text())
    assert any(fnmatch.fnmatchcase("logs-serving-2026.11.23", p) for p in template["index_patterns"])
    # Filebeat must not install its own template/ILM (it would write to a data stream instead)
    assert config["setup.template.enabled"] is False
    assert config["setup.ilm.enabled"] is False


def test_credentials_come_from_the_environment_compose_sets(config, compose):
    output = config["output.elasticsearch"]
    env = compose["services"]["filebeat"]["environment"]
    for key, variable in (("username", "FILEBEAT_ES_USER"), ("password", "FILEBEAT_ES_PASSWORD")):
        assert output[key] == "${" + variable + "}"
        assert variable in env
    assert output["hosts"][0].startswith("${FILEBEAT_ES_HOST:")


def test_registry_and_log_mounts(config, compose):
    assert config["path.data"] == "/usr/share/filebeat/data"
    volumes = compose["services"]["filebeat"]["volumes"]
    named = [v for v in volumes if v.split(":")[1] == config["path.data"]]
    assert named and named[0].split(":")[0] in compose["volumes"]
    assert "/var/lib/docker/containers:/var/lib/docker/containers:ro" in volumes
    assert "/var/run/docker.sock:/var/run/docker.sock:ro" in volumes
    assert "./filebeat/filebeat.yml:/usr/share/filebeat/filebeat.yml:ro" in volumes
