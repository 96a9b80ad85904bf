"""docker-compose.yml, .env.example, the Python image and the Elasticsearch setup one-shot.

No Docker engine runs here: the file is validated by docker-compose 1.29 (`config -q`, which needs
no engine) and read as YAML for the properties the stack depends on."""
from __future__ import annotations

import dataclasses
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
COMPOSE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
sys.path.insert(0, str(REPO / "docker"))
import es_setup  # noqa: E402

from common.store import StoreSettings, connect  # noqa: E402
from tests.conftest import empty_opensearch  # noqa: E402

LONG_RUNNING = {"elasticsearch", "kibana", "fluentd", "filebeat", "serving", "log_processor", "log_processor_1",
                "prometheus", "alertmanager", "grafana", "mailpit", "notification-sink", "evidently-ui",
                "node-exporter", "elasticsearch-exporter"}
ONE_SHOTS = {"setup", "kibana-import", "traffic"}


def _filled_env(tmp_path: Path) -> Path:
    """.env.example with every empty secret filled in, as a user is told to do."""
    lines = []
    for line in ENV_EXAMPLE.read_text().splitlines():
        if re.fullmatch(r"[A-Z_]+(PASSWORD|KEY)=", line):
            line += "x" * 40
        lines.append(line)
    path = tmp_path / "filled.env"
    path.write_text("\n".join(lines) + "\n")
    return path


def _compose_config(env_file: Path, *args: str) -> subprocess.CompletedProcess:
    # a clean environment: no stray ELASTIC_PASSWORD etc. from the caller's shell, no repo .env
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run(["docker-compose", "--project-directory", str(REPO), "-f", str(COMPOSE),
                           "--env-file", str(env_file), "config", *args],
                          capture_output=True, text=True, env=env, timeout=60)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


needs_docker_compose = pytest.mark.skipif(
    shutil.which("docker-compose") is None,
    reason="docker-compose (Debian package docker-compose 1.29) not installed; "
           "scripts/ensure-system-packages.sh installs it when run as root")


@needs_docker_compose
def test_docker_compose_validates_the_file_with_passwords_set(tmp_path):
    result = _compose_config(_filled_env(tmp_path), "-q")
    assert result.returncode == 0, result.stderr


@needs_docker_compose
def test_docker_compose_refuses_the_example_env_with_empty_passwords():
    result = _compose_config(ENV_EXAMPLE, "-q")
    assert result.returncode != 0
    assert "set ELASTIC_PASSWORD in .env" in result.stderr


@needs_docker_compose
def test_resolved_config_keeps_services_and_loopback_ports(tmp_path):
    result = _compose_config(_filled_env(tmp_path))
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    assert set(resolved["services"]) == LONG_RUNNING | ONE_SHOTS
    assert resolved["services"]["elasticsearch"]["environment"]["ELASTIC_PASSWORD"] == "x" * 40


def test_every_service_the_brief_names_is_there(compose):
    assert set(compose["services"]) == LONG_RUNNING | ONE_SHOTS


def test_ports_are_published_on_loopback_only(compose):
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port} is reachable from other hosts"


def test_long_running_services_have_healthchecks_and_one_shots_do_not_restart(compose):
    for name in LONG_RUNNING:
        assert compose["services"][name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    for name in ONE_SHOTS:
        assert compose["services"][name]["restart"] == "no"


def test_depends_on_waits_for_health_or_completion(compose):
    services = compose["services"]
    for name, service in services.items():
        for dependency, spec in (service.get("depends_on") or {}).items():
            condition = spec["condition"]
            if dependency in ONE_SHOTS:
                assert condition == "service_completed_successfully", (name, dependency)
            else:
                assert condition == "service_healthy", (name, dependency)
                assert "healthcheck" in services[dependency]
    # everything that logs in to Elasticsearch with a setup-created user waits for the setup
    for name in ("kibana", "fluentd", "filebeat", "log_processor", "grafana"):
        assert "setup" in services[name]["depends_on"], name
    assert "kibana" in services["kibana-import"]["depends_on"]
    assert "elasticsearch" in services["setup"]["depends_on"]


def test_elasticsearch_is_secured_single_node_with_heap_half_the_limit(compose):
    es = compose["services"]["elasticsearch"]
    env = es["environment"]
    assert env["discovery.type"] == "single-node"
    assert env["xpack.security.enabled"] == "true"
    assert es["image"].startswith("docker.elastic.co/elasticsearch/elasticsearch:${STACK_VERSION")
    example = dict(line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines()
                   if "=" in line and not line.startswith("#"))
    assert example["STACK_VERSION"].startswith("9.")
    limit = int(example["ES_MEM_LIMIT"].rstrip("g"))
    heap = int(example["ES_HEAP"].rstrip("g"))
    assert heap * 2 == limit
    assert "-Xms${ES_HEAP" in env["ES_JAVA_OPTS"] and "-Xmx${ES_HEAP" in env["ES_JAVA_OPTS"]
    assert es["mem_limit"].startswith("${ES_MEM_LIMIT")
    assert "401" in " ".join(es["healthcheck"]["test"])


def test_state_lives_on_named_volumes(compose):
    declared = set(compose["volumes"])
    wanted = {"elasticsearch": "/usr/share/elasticsearch/data", "fluentd": "/fluentd/state",
              "filebeat": "/usr/share/filebeat/data", "prometheus": "/prometheus",
              "alertmanager": "/alertmanager", "grafana": "/var/lib/grafana", "evidently-ui": "/app/workspace"}
    for name, target in wanted.items():
        mounts = {v.split(":")[1]: v.split(":")[0] for v in compose["services"][name]["volumes"]}
        assert mounts.get(target) in declared, f"{name}: {target} is not on a named volume"


def test_env_example_commits_no_secret_and_compose_requires_each(compose):
    text = ENV_EXAMPLE.read_text()
    secrets = re.findall(r"^([A-Z_]+(?:PASSWORD|KEY))=(.*)$", text, flags=re.M)
    assert secrets and all(value == "" for _, value in secrets)
    raw = COMPOSE.read_text()
    for name, _ in secrets:
        assert re.search(r"\$\{" + name + r":\?", raw), f"compose does not refuse an empty {name}"


def test_mounted_and_built_paths_exist(compose):
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), f"{name}: {source} missing"
        build = service.get("build")
        if isinstance(build, str):
            assert (REPO / build / "Dockerfile").is_file()
        elif build:
            assert (REPO / build["context"] / build["dockerfile"]).is_file()


def test_python_image_copies_what_the_services_import():
    dockerfile = (REPO / "docker" / "python.Dockerfile").read_text()
    copied = re.findall(r"^COPY (\S+)/ ", dockerfile, flags=re.M)
    for package in ("common", "serving", "log_processor", "elasticsearch", "kibana", "docker"):
        assert package in copied, package
        assert (REPO / package).is_dir()
    assert "python -m serving.bootstrap" in dockerfile


def test_python_services_run_commands_that_exist(compose):
    services = compose["services"]
    assert services["setup"]["command"][-1] == "docker/es_setup.py"
    assert services["kibana-import"]["command"][-1] == "kibana/import_saved_objects.py"
    for name in ("setup", "kibana-import"):
        assert (REPO / services[name]["command"][-1]).is_file()
    assert services["traffic"]["command"][:3] == ["python", "-m", "demo.traffic"]
    assert (REPO / "demo" / "traffic.py").is_file()
    assert services["serving"]["command"] == ["python", "-m", "serving"]
    assert services["log_processor"]["command"] == ["python", "-m", "log_processor"]


def test_serving_ships_events_to_fluentd_and_settings_accept_the_env(compose):
    from serving.settings import ServingSettings
    env = {k: str(v) for k, v in compose["services"]["serving"]["environment"].items()}
    settings = ServingSettings.from_env(env)
    assert settings.event_sinks == ("fluentd",)
    assert (settings.fluentd_host, settings.fluentd_port) == ("fluentd", 24224)
    assert settings.host == "0.0.0.0" and settings.port == 8000
    # the second model: where the image's bootstrap writes it (/app is the image's repo root)
    assert settings.path("duration_model") == Path("/app/var/model/trip_duration")
    assert settings.path("duration_model").relative_to("/app") == \
        ServingSettings(var_dir=Path("var")).path("duration_model")


def test_log_processor_settings_accept_the_env(compose, tmp_path):
    from log_processor.settings import ProcessorSettings
    env = {k: str(v) for k, v in compose["services"]["log_processor"]["environment"].items()}
    env["ELASTICSEARCH_PASSWORD"] = "x" * 12  # compose fills it from .env
    # the secret file the container mounts from secrets/evidently/ (`make compose-env`), here a copy
    mounted = {v.split(":")[1]: v.split(":")[0] for v in compose["services"]["log_processor"]["volumes"]}
    assert mounted["/run/secrets/evidently"] == "./secrets/evidently"
    assert env["LOGPROC_EVIDENTLY_SECRET_FILE"].startswith("/run/secrets/evidently/")
    (tmp_path / "evidently_secret").write_text("s" * 32 + "\n")
    env["LOGPROC_EVIDENTLY_SECRET_FILE"] = str(tmp_path / "evidently_secret")
    settings = ProcessorSettings.from_env(env)
    assert (settings.host, settings.port) == ("0.0.0.0", 8309)
    assert settings.store.url == "http://elasticsearch:9200"
    assert settings.store.username == "log_processor"
    assert settings.monitors_file.is_file()
    assert settings.monitors_file == REPO / "log_processor" / "monitors.yaml"
    assert settings.evidently_workspace == "http://evidently-ui:8000" and settings.evidently_secret == "s" * 32


def test_the_processor_replicas_share_the_monitors_once_each_and_prometheus_scrapes_each(compose):
    """LOGPROC_SHARD over the replicas covers 0..n-1 once each, so every monitor of the image's file has
    exactly one replica; Prometheus scrapes every replica, and each alert links to its replica's port."""
    from log_processor.monitors import load_monitors
    from log_processor.settings import ProcessorSettings
    replicas = {name: s for name, s in compose["services"].items() if s.get("command") == ["python", "-m", "log_processor"]}
    assert set(replicas) == {"log_processor", "log_processor_1"}
    shards = {}
    for name, service in replicas.items():
        env = {k: str(v) for k, v in service["environment"].items()}
        env["ELASTICSEARCH_PASSWORD"] = "x" * 12
        env.pop("LOGPROC_EVIDENTLY_SECRET_FILE")   # the container's file (read: test_log_processor_settings_accept_the_env)
        shards[name] = ProcessorSettings.from_env(env).shard
        assert service["environment"]["ELASTICSEARCH_USERNAME"] == "log_processor"
    assert sorted(s.index for s in shards.values()) == list(range(len(replicas)))
    assert {s.count for s in shards.values()} == {len(replicas)}
    monitors = load_monitors(REPO / "log_processor" / "monitors.yaml")
    owners = {m.name: [name for name, shard in shards.items() if shard.owns(m.name)] for m in monitors}
    assert all(len(o) == 1 for o in owners.values()), owners
    assert len({o[0] for o in owners.values()}) == 2, f"the shipped monitors all land on one replica: {owners}"
    config = yaml.safe_load((REPO / "prometheus" / "prometheus.yml").read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "log_processor")
    urls = {t: sc.get("labels", {}).get("log_processor_url", config["global"]["external_labels"]["log_processor_url"])
            for sc in job["static_configs"] for t in sc["targets"]}
    assert set(urls) == {f"{name}:8309" for name in replicas}
    for name, service in replicas.items():
        published = service["ports"][0].split(":")[-2].split("-")[-1].rstrip("}")
        assert urls[f"{name}:8309"].endswith(f":{published}"), (name, service["ports"], urls)


def test_the_stack_carries_both_monitors_and_their_references_are_built_into_the_image(compose):
    """Read as YAML: the regression monitor's keys are the contract's; the parser that accepts them is
    the log processor's task support (another branch of issue 20)."""
    monitors = {m["name"]: m for m in yaml.safe_load((REPO / "log_processor" / "monitors.yaml").read_text())["monitors"]}
    assert list(monitors) == ["driver_ranker", "trip_duration"]
    duration = monitors["trip_duration"]
    assert (duration["task"], duration["model_name"]) == ("regression", "trip_duration")
    assert duration["prediction"] == {"value": "prediction.value"}
    assert duration["target"] == "target.duration_minutes" and duration["quality"] == {"alert_ratio": 1.5}
    assert "estimation" not in duration
    for key in ("index", "datasets", "features", "join_key", "window", "drift", "min_rows", "label_horizon"):
        assert duration[key] == monitors["driver_ranker"][key], key
    from serving.settings import ServingSettings
    image_var = ServingSettings(var_dir=Path("var"))   # the image runs from /app; bootstrap writes var/
    assert duration["reference"] == {"parquet": str(image_var.path("duration_model") / "reference.parquet"),
                                     "manifest": str(image_var.path("duration_model") / "manifest.json")}
    assert monitors["driver_ranker"]["reference"]["parquet"] == str(image_var.path("model") / "reference.parquet")
    # the traffic profile replays both models' requests
    assert "--no-duration" not in compose["services"]["traffic"]["command"]


def test_dashboards_list_monitors_from_prometheus_not_by_name():
    """A second monitor needs no dashboard edit: every `monitor` variable is a label_values query."""
    for path in sorted((REPO / "grafana" / "dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        variables = [v for v in board["templating"]["list"] if v["name"] == "monitor"]
        assert variables, path.name
        for variable in variables:
            assert variable["type"] == "query" and variable["includeAll"], path.name
            assert variable["definition"].startswith("label_values("), path.name
        assert "driver_ranker" not in path.read_text() and "trip_duration" not in path.read_text(), path.name


def test_prometheus_and_alertmanager_find_their_files(compose):
    prometheus = compose["services"]["prometheus"]
    assert "./prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    assert not any("enable-lifecycle" in arg or "enable-admin-api" in arg for arg in prometheus["command"])
    config = yaml.safe_load((REPO / "prometheus" / "prometheus.yml").read_text())
    targets = {t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    for service, port in (("serving", 8000), ("log_processor", 8309), ("alertmanager", 9093)):
        assert f"{service}:{port}" in targets
        assert service in compose["services"]
    am = yaml.safe_load((REPO / "prometheus" / "alertmanager.yml").read_text())
    host, port = am["global"]["smtp_smarthost"].split(":")
    assert host in compose["services"] and port == "1025"
    mounts = compose["services"]["alertmanager"]["volumes"]
    assert "./prometheus/templates:/etc/alertmanager/templates:ro" in mounts
    assert "./secrets/alertmanager:/etc/alertmanager/secrets:ro" in mounts
    assert compose["services"]["alertmanager"]["entrypoint"] == ["/bin/sh", "/etc/alertmanager/check-secret-files.sh"]
    assert compose["services"]["alertmanager"]["command"][0] == "/bin/alertmanager"
    sink = compose["services"]["notification-sink"]["command"]
    assert sink[:3] == ["python", "-m", "demo.notification_sink"] and (REPO / "demo" / "notification_sink.py").is_file()
    telegram = am["receivers"][0]["telegram_configs"][0]["api_url"]
    assert telegram.startswith("http://notification-sink:")


# --- Alertmanager's secret files: written by `make compose-env`, checked before Alertmanager starts ---

CHECK_SCRIPT = REPO / "prometheus" / "check-secret-files.sh"


def _compose_config_with_secrets_in(directory: Path, tmp_path: Path) -> Path:
    """prometheus/alertmanager.yml with its /etc/alertmanager/secrets paths moved to `directory`."""
    config = tmp_path / "alertmanager.yml"
    config.write_text((REPO / "prometheus" / "alertmanager.yml").read_text()
                      .replace("/etc/alertmanager/secrets", str(directory)))
    return config


def _check(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", str(CHECK_SCRIPT), "echo", "alertmanager started", f"--config.file={config}"],
                          capture_output=True, text=True, timeout=30)


def test_compose_env_writes_the_alertmanager_secret_files_and_keeps_existing_ones(tmp_path):
    secrets = tmp_path / "secrets"
    assert _compose_env("--output", str(tmp_path / ".env"), "--secrets", str(secrets)).returncode == 0
    files = {p.name: p for p in (secrets / "alertmanager").iterdir()}
    assert set(files) == {"slack_api_url", "webhook_url", "telegram_bot_token", "heartbeat_url"}
    assert oct(secrets.stat().st_mode & 0o777) == "0o700"     # other host users cannot reach them
    assert files["slack_api_url"].read_text().startswith("http://notification-sink:9101/services/")
    assert files["webhook_url"].read_text().startswith("http://notification-sink:9102/alerts/")
    assert re.fullmatch(r"\d{10}:[\w-]{30,}\n", files["telegram_bot_token"].read_text())
    assert files["heartbeat_url"].read_text().startswith("http://notification-sink:9104/heartbeat/")
    files["slack_api_url"].write_text("https://hooks.slack.com/services/REAL\n")
    _compose_env("--output", str(tmp_path / "second.env"), "--secrets", str(secrets))
    assert files["slack_api_url"].read_text() == "https://hooks.slack.com/services/REAL\n"
    result = _check(_compose_config_with_secrets_in(secrets / "alertmanager", tmp_path))
    assert result.returncode == 0 and result.stdout.startswith("alertmanager started"), result.stderr


@pytest.mark.parametrize("broken, problem", [("missing", "does not exist; `make compose-env` writes it"),
                                             ("empty", "is empty")])
def test_alertmanager_entrypoint_refuses_a_missing_or_empty_secret_file_naming_it(tmp_path, broken, problem):
    secrets = tmp_path / "secrets"
    _compose_env("--output", str(tmp_path / ".env"), "--secrets", str(secrets))
    target = secrets / "alertmanager" / "telegram_bot_token"
    target.unlink() if broken == "missing" else target.write_text(" \n")
    config = _compose_config_with_secrets_in(secrets / "alertmanager", tmp_path)
    result = _check(config)
    assert result.returncode == 2 and "alertmanager started" not in result.stdout
    assert f"alertmanager: secret file {target} (named in {config}) {problem}" in result.stderr


def test_the_entrypoint_checks_the_same_files_as_the_embedded_stack():
    from demo.alerting_stack import secret_file_fields
    config_text = (REPO / "prometheus" / "alertmanager.yml").read_text()
    shell = subprocess.run(["sh", "-c", "sed -n 's/^[[:space:]-]*[a-z_]*_file:[[:space:]]*\\([^[:space:]#]*\\).*$/\\1/p' \"$0\" "
                            "| sort -u", str(REPO / "prometheus" / "alertmanager.yml")], capture_output=True, text=True)
    assert CHECK_SCRIPT.read_text().count("sed -n 's/^[[:space:]-]*[a-z_]*_file:[[:space:]]*\\([^[:space:]#]*\\).*$/\\1/p'") == 1
    python = {str(holder[key]) for _, holder, key in secret_file_fields(yaml.safe_load(config_text))}
    assert set(shell.stdout.split()) == python == {f"/etc/alertmanager/secrets/{name}" for name in
                                                   ("slack_api_url", "webhook_url", "telegram_bot_token",
                                                    "heartbeat_url")}


# --- the setup one-shot ---

def _env(**overrides) -> dict[str, str]:
    env = {name: "secret-" + name.lower() for name in es_setup.PASSWORD_VARIABLES}
    env.update({name: "k" * 32 for name in es_setup.KEY_VARIABLES})
    env.update(overrides)
    return env


def test_setup_refuses_empty_or_short_passwords_naming_them():
    with pytest.raises(es_setup.SetupError, match="FLUENTD_ES_PASSWORD is empty"):
        es_setup.SetupSettings.from_env(_env(FLUENTD_ES_PASSWORD=""))
    with pytest.raises(es_setup.SetupError, match="GRAFANA_ES_PASSWORD is shorter than 6"):
        es_setup.SetupSettings.from_env(_env(GRAFANA_ES_PASSWORD="abc"))
    settings = es_setup.SetupSettings.from_env(_env())
    assert settings.store().username == "elastic"


def test_setup_cli_exits_2_with_the_reason(tmp_path):
    env = {"PATH": os.environ["PATH"], **_env(ELASTIC_PASSWORD="")}
    result = subprocess.run([sys.executable, str(REPO / "docker" / "es_setup.py")], capture_output=True,
                            text=True, env=env, cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    assert "ELASTIC_PASSWORD is empty" in result.stderr


def test_compose_gives_setup_every_password_it_needs(compose):
    env = compose["services"]["setup"]["environment"]
    assert set(es_setup.PASSWORD_VARIABLES) <= set(env)


def _template_patterns() -> dict[str, list[str]]:
    return {p.name: json.loads(p.read_text())["index_patterns"]
            for p in (REPO / "elasticsearch").glob("*.index-template.json")}


def test_writer_roles_only_create_documents_in_their_own_indices():
    roles = es_setup.roles()
    patterns = {pattern for ps in _template_patterns().values() for pattern in ps}
    for name, role in roles.items():
        assert role["cluster"] == ["monitor"], name
        for grant in role["indices"]:
            assert set(grant["names"]) <= patterns, f"{name} grants {grant['names']} outside the templates"
            if name in ("ml_events_writer", "logs_serving_writer"):  # the shippers: append only
                assert set(grant["privileges"]) == {"create_doc", "auto_configure"}
                assert len(grant["names"]) == 1
            elif name == "ml_monitoring_writer":  # log_processor overwrites its own summary by id
                assert set(grant["privileges"]) == {"index", "auto_configure"}
                assert grant["names"] == ["ml-monitoring-*"]
            else:
                assert set(grant["privileges"]) <= {"read", "view_index_metadata"}
    assert roles["ml_events_writer"]["indices"][0]["names"] == ["ml-events-*"]
    assert roles["logs_serving_writer"]["indices"][0]["names"] == ["logs-serving-*"]


def test_each_service_user_gets_its_password_and_known_roles():
    passwords = _env()
    users = es_setup.users(passwords)
    roles = es_setup.roles()
    for name, user in users.items():
        assert set(user["roles"]) <= set(roles), name
    by_user = {user: var for var, user in es_setup.PASSWORD_VARIABLES.items()}
    for name, user in users.items():
        assert user["password"] == passwords[by_user[name]]


def test_clients_log_in_as_the_users_setup_creates(compose):
    services = compose["services"]
    created = set(es_setup.users(_env())) | {"elastic", "kibana_system"}
    assert services["fluentd"]["environment"]["FLUENTD_ES_USER"] in created
    assert services["filebeat"]["environment"]["FILEBEAT_ES_USER"] in created
    assert services["log_processor"]["environment"]["ELASTICSEARCH_USERNAME"] in created
    assert services["kibana"]["environment"]["ELASTICSEARCH_USERNAME"] == "kibana_system"
    datasources = yaml.safe_load((REPO / "grafana/provisioning/datasources/datasources.yml").read_text())
    es_sources = [d for d in datasources["datasources"] if d["type"] == "elasticsearch"]
    assert es_sources and all(d["basicAuthUser"] in created for d in es_sources)


def test_every_index_name_the_stack_uses_matches_a_template():
    """Fluentd, Filebeat, Kibana data views and Grafana datasources all write/read template-backed indices."""
    patterns = [p for ps in _template_patterns().values() for p in ps]
    fluent = (REPO / "fluentd" / "fluent.conf").read_text()
    prefix = re.search(r"^\s*logstash_prefix\s+(\S+)", fluent, flags=re.M)[1]
    used = [f"{prefix}-2026.11.23"]
    filebeat = yaml.safe_load((REPO / "filebeat" / "filebeat.yml").read_text())
    used.append(re.sub(r"%\{\+[^}]+\}", "2026.11.23", filebeat["output.elasticsearch"]["index"]))
    for line in (REPO / "kibana" / "saved_objects.ndjson").read_text().splitlines():
        obj = json.loads(line)
        if obj["type"] == "index-pattern":
            used.append(obj["attributes"]["title"].replace("*", "2026.11.23"))
    datasources = yaml.safe_load((REPO / "grafana/provisioning/datasources/datasources.yml").read_text())
    used += [d["jsonData"]["index"].replace("*", "2026.11.23")
             for d in datasources["datasources"] if d["type"] == "elasticsearch"]
    assert len(used) >= 6
    for index in used:
        assert any(fnmatch.fnmatchcase(index, p) for p in patterns), f"{index} matches no index template"


def test_healthcheck_commands_parse(compose):
    """Shell healthchecks parse with `sh -n`; inline Python ones compile (quoting slips show here)."""
    for name, service in compose["services"].items():
        test = service.get("healthcheck", {}).get("test")
        if not test:
            continue
        kind, *command = test
        if kind == "CMD-SHELL":
            # compose turns $$ into $ before the container's shell sees the command
            script = command[0].replace("$$", "$")
            result = subprocess.run(["sh", "-n", "-c", script], capture_output=True, text=True)
            assert result.returncode == 0, f"{name}: {result.stderr}"
        else:
            assert kind == "CMD", name
            if command[:2] == ["python", "-c"]:
                compile(command[2], f"<{name} healthcheck>", "exec")


@pytest.mark.parametrize("status_json, healthy", [
    ('{"status":{"overall":{"level":"available","summary":"All services are available"},"core":{}}}', True),
    ('{"status":{"overall":{"summary":"ok","level":"available"}}}', True),
    ('{"status":{"overall":{"level":"available"}}}', True),  # the redacted body an anonymous check gets
    ('{"status":{"overall":{"level":"unavailable"}}}', False),
    ('{"status":{"overall":{"level":"degraded"},"core":{"es":{"level":"available"}}}}', False),
    ('{"statusCode":401,"error":"Unauthorized"}', False),
])
def test_kibana_healthcheck_accepts_only_overall_available(compose, status_json, healthy):
    command = compose["services"]["kibana"]["healthcheck"]["test"][1]
    grep = command.split("| ", 1)[1].replace("$$", "$")
    result = subprocess.run(["sh", "-c", grep], input=status_json, text=True, capture_output=True)
    assert (result.returncode == 0) is healthy


class _RecordingElasticsearch(BaseHTTPRequestHandler):
    """Answers like a secured Elasticsearch 9 node and records each request (no real one runs here)."""
    requests: list = []

    def log_message(self, *args):
        pass

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        type(self).requests.append((self.command, self.path.split("?")[0], body, self.headers.get("Authorization")))
        answer = {"version": {"number": "9.1.0", "build_flavor": "default"}, "tagline": "You Know, for Search"} \
            if self.path == "/" else {"acknowledged": True, "created": True, "role": {"created": True}}
        raw = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Elastic-Product", "Elasticsearch")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    do_GET = do_PUT = do_POST = _answer


def test_setup_run_sends_the_security_and_template_requests():
    handler = type("Handler", (_RecordingElasticsearch,), {"requests": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        es_setup.run(es_setup.SetupSettings.from_env({"ELASTICSEARCH_URL": url, **_env()}))
    finally:
        server.shutdown()
        server.server_close()
    seen = {path: (method, body) for method, path, body, _ in handler.requests}
    assert all(auth and auth.startswith("Basic ") for *_, auth in handler.requests)
    assert seen["/_security/user/kibana_system/_password"] == ("PUT", {"password": _env()["KIBANA_SYSTEM_PASSWORD"]})
    for name, role in es_setup.roles().items():
        method, body = seen[f"/_security/role/{name}"]
        assert method == "PUT" and body["indices"] == role["indices"] and body["cluster"] == role["cluster"]
    for name, user in es_setup.users(_env()).items():
        assert seen[f"/_security/user/{name}"] == ("PUT", {"password": user["password"], "roles": user["roles"]})
    templates = {p.name.removesuffix(".index-template.json") for p in (REPO / "elasticsearch").glob("*.index-template.json")}
    assert {path.removeprefix("/_index_template/") for path in seen if path.startswith("/_index_template/")} == templates
    # retention (issue 32): a lifecycle policy per kind of daily index, with the documented defaults,
    # put before the template that names it
    order = [path for _, path, _, _ in handler.requests]
    for template, policy, days in (("ml-events", "ml-events-retention", 30), ("logs-serving", "logs-serving-retention", 14),
                                   ("ml-monitoring", "ml-monitoring-retention", 400)):
        method, body = seen[f"/_ilm/policy/{policy}"]
        assert method == "PUT" and body["policy"]["phases"]["delete"] == {"min_age": f"{days}d", "actions": {"delete": {}}}
        assert seen[f"/_index_template/{template}"][1]["template"]["settings"]["index.lifecycle.name"] == policy
        assert order.index(f"/_ilm/policy/{policy}") < order.index(f"/_index_template/{template}")
    # the template files stay free of ILM (OpenSearch and osmem read them too)
    assert "lifecycle" not in "".join(p.read_text() for p in (REPO / "elasticsearch").glob("*.json"))


def test_retention_days_are_settings_of_setup():
    settings = es_setup.SetupSettings.from_env(_env(RETENTION_EVENTS_DAYS="7", RETENTION_MONITORING_DAYS="90"))
    policies = es_setup.ilm_policies(settings.retention)
    assert {name: p["phases"]["delete"]["min_age"] for name, p in policies.values()} == \
        {"ml-events-retention": "7d", "logs-serving-retention": "14d", "ml-monitoring-retention": "90d"}
    with pytest.raises(es_setup.SetupError, match="RETENTION_LOGS_DAYS='0' must be at least 1"):
        es_setup.SetupSettings.from_env(_env(RETENTION_LOGS_DAYS="0"))


def test_compose_runs_the_exporters_and_prometheus_scrapes_them(compose):
    services = compose["services"]
    exporter = services["elasticsearch-exporter"]
    assert exporter["environment"]["ES_USERNAME"] in es_setup.users(_env())
    assert es_setup.roles()["metrics_exporter"] == {**es_setup.roles()["metrics_exporter"], "cluster": ["monitor"], "indices": []}
    assert any(arg == "--es.uri=http://elasticsearch:9200" for arg in exporter["command"])
    assert "--path.rootfs=/host" in services["node-exporter"]["command"]
    assert all(":ro" in volume for volume in services["node-exporter"]["volumes"])
    jobs = {job["job_name"]: job["static_configs"][0]["targets"]
            for job in yaml.safe_load((REPO / "prometheus" / "prometheus.yml").read_text())["scrape_configs"]}
    assert jobs["node"] == ["node-exporter:9100"] and jobs["elasticsearch"] == ["elasticsearch-exporter:9114"]
    assert jobs["fluentd"] == ["fluentd:24231"] and jobs["shipper"] == []
    setup_env = services["setup"]["environment"]
    assert {"RETENTION_EVENTS_DAYS", "RETENTION_LOGS_DAYS", "RETENTION_MONITORING_DAYS"} <= set(setup_env)


# --- Kibana: keys and a healthcheck without credentials ---------------------------------------------

def test_kibana_has_all_three_encryption_keys_and_no_superuser_password(compose):
    env = compose["services"]["kibana"]["environment"]
    for setting, variable in [("XPACK_ENCRYPTEDSAVEDOBJECTS_ENCRYPTIONKEY", "KIBANA_ENCRYPTION_KEY"),
                              ("XPACK_SECURITY_ENCRYPTIONKEY", "KIBANA_SECURITY_ENCRYPTION_KEY"),
                              ("XPACK_REPORTING_ENCRYPTIONKEY", "KIBANA_REPORTING_ENCRYPTION_KEY")]:
        assert env[setting].startswith("${" + variable + ":?"), setting
        assert variable in es_setup.KEY_VARIABLES
    # docker inspect shows a container's environment: the superuser password must not be in it
    assert not [k for k, v in env.items() if "ELASTIC_PASSWORD" in str(v)]
    check = " ".join(compose["services"]["kibana"]["healthcheck"]["test"])
    assert " -u" not in check and "PASSWORD" not in check


@pytest.mark.parametrize("name", es_setup.KEY_VARIABLES)
def test_setup_refuses_a_kibana_key_shorter_than_32_characters(name):
    with pytest.raises(es_setup.SetupError, match=f"{name} is shorter than 32 characters"):
        es_setup.SetupSettings.from_env(_env(**{name: "k" * 31}))
    with pytest.raises(es_setup.SetupError, match=f"{name} is empty"):
        es_setup.SetupSettings.from_env({k: v for k, v in _env().items() if k != name})
    assert es_setup.SetupSettings.from_env(_env(**{name: "k" * 32}))


# --- make compose-env -------------------------------------------------------------------------------

def _compose_env(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "scripts" / "compose_env.py"), *args],
                          capture_output=True, text=True, timeout=30)


def _read_env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and not line.startswith("#"))


def test_compose_env_writes_strong_unique_secrets_that_setup_and_compose_accept(tmp_path):
    out = tmp_path / ".env"
    result = _compose_env("--output", str(out), "--secrets", str(tmp_path / "secrets"))
    assert result.returncode == 0, result.stderr
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    env, example = _read_env(out), _read_env(ENV_EXAMPLE)
    assert set(env) == set(example)
    secrets = {k: v for k, v in env.items() if k.endswith(("_PASSWORD", "_KEY"))}
    assert len(secrets) == len(es_setup.PASSWORD_VARIABLES) + len(es_setup.KEY_VARIABLES) + 1  # + Grafana admin
    assert len(set(secrets.values())) == len(secrets), "two secrets are equal"
    for name, value in secrets.items():
        assert re.fullmatch(r"[0-9a-f]+", value) and len(value) >= (64 if name.endswith("_KEY") else 32), name
    assert {k: v for k, v in env.items() if k not in secrets} == {k: v for k, v in example.items() if k not in secrets}
    es_setup.SetupSettings.from_env(env)  # accepted: no SetupError
    if shutil.which("docker-compose"):
        assert _compose_config(out, "-q").returncode == 0
    second = _compose_env("--output", str(tmp_path / "other.env"), "--secrets", str(tmp_path / "secrets"))
    assert _read_env(tmp_path / "other.env")["ELASTIC_PASSWORD"] != env["ELASTIC_PASSWORD"], second.stderr


def test_compose_env_refuses_to_overwrite_an_existing_env(tmp_path):
    out = tmp_path / ".env"
    out.write_text("ELASTIC_PASSWORD=mine\n")
    result = _compose_env("--output", str(out), "--secrets", str(tmp_path / "secrets"))
    assert result.returncode != 0
    assert f"{out} already exists; not overwriting it" in result.stderr
    assert out.read_text() == "ELASTIC_PASSWORD=mine\n"


def test_make_compose_env_runs_the_script_and_the_docs_tell_users_to():
    dry = subprocess.run(["make", "-n", "compose-env"], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert "scripts/compose_env.py" in dry.stdout, dry.stdout + dry.stderr
    assert "make compose-env" in (REPO / "docs" / "compose.md").read_text()


# --- setup retries ----------------------------------------------------------------------------------

class _FlakyElasticsearch(_RecordingElasticsearch):
    """Like the recorder, but the first answers of each security path are 503, 429 or too slow.

    `plan` maps a path to the answers it gives before 200: an HTTP status, or "slow" (no answer
    within the client's timeout). osmem-server has no security API, so this stand-in plays it.
    """
    plan: dict = {}

    def _answer(self):
        path = self.path.split("?")[0]
        queue = type(self).plan.get(path) or []
        if queue:
            step = queue.pop(0)
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            type(self).requests.append((self.command, path, step, None))
            if step == "slow":
                threading.Event().wait(1.5)
                return
            raw = json.dumps({"error": {"type": "unavailable"}, "status": step}).encode()
            self.send_response(step)
            self.send_header("Content-Type", "application/json")
            self.send_header("X-Elastic-Product", "Elasticsearch")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)
            return
        super()._answer()

    do_GET = do_PUT = do_POST = _answer


def _flaky_run(plan: dict, retry_seconds: float) -> list:
    handler = type("Handler", (_FlakyElasticsearch,), {"requests": [], "plan": plan})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        settings = es_setup.SetupSettings.from_env({"ELASTICSEARCH_URL": url, **_env()})
        es_setup.run(dataclasses.replace(settings, retry_seconds=retry_seconds, request_timeout=0.5))
    finally:
        server.shutdown()
        server.server_close()
    return handler.requests


def test_setup_waits_for_the_builtin_users_and_retries_503_429_and_timeouts():
    plan = {"/_security/user/kibana_system": [503, 503, 404],
            "/_security/user/kibana_system/_password": [503, "slow"],
            "/_security/role/ml_events_writer": [429],
            "/_security/user/fluentd_writer": [502]}
    requests = _flaky_run({k: list(v) for k, v in plan.items()}, retry_seconds=30)
    calls = [(method, path) for method, path, *_ in requests]
    for path, answers in plan.items():
        assert sum(1 for _, p in calls if p == path) >= len(answers) + 1, f"{path} was not retried"
    first_write = next(i for i, (method, _) in enumerate(calls) if method in ("PUT", "POST"))
    waits = [i for i, (method, path) in enumerate(calls) if (method, path) == ("GET", "/_security/user/kibana_system")]
    assert len(waits) == 4 and max(waits) < first_write, "wrote before the built-in users were there"
    assert ("PUT", "/_index_template/logs-serving") in calls


def test_setup_gives_up_after_its_retry_budget_naming_the_request():
    started = time.monotonic()
    with pytest.raises(es_setup.SetupError, match=r"kibana_system password: still failing after 2s \(HTTP 503\)"):
        _flaky_run({"/_security/user/kibana_system/_password": [503] * 100}, retry_seconds=2)
    assert 1.0 < time.monotonic() - started < 10


def test_setup_does_not_retry_a_request_the_cluster_rejects_for_good():
    with pytest.raises(es_setup.ApiError) as caught:
        _flaky_run({"/_security/role/ml_logs_reader": [400, 400]}, retry_seconds=30)
    assert caught.value.meta.status == 400


@pytest.mark.opensearch
def test_setup_applies_the_pipeline_and_the_templates_to_a_real_engine(opensearch_node):
    """Against OpenSearch (Elasticsearch's API, with ingest pipelines as the compose stack's store has):
    what setup PUTs is what the engine then holds, and an event indexed through the template gets its
    event.ingested from the engine. (osmem-server has no ingest API; setup is not meant for it.)"""
    empty_opensearch(opensearch_node.url)
    es = connect(StoreSettings(url=opensearch_node.url))
    for template in es.indices.get_index_template()["index_templates"]:      # nothing but what setup PUTs
        es.indices.delete_index_template(name=template["name"])
    for pipeline in es.ingest.get_pipeline().body:
        es.ingest.delete_pipeline(id=pipeline)
    names = es_setup.apply_templates(es, budget=5)
    held = {t["name"]: t["index_template"] for t in es.indices.get_index_template()["index_templates"]}
    assert set(names) <= set(held)
    assert held["logs-serving"]["priority"] > 500, "logs-serving-* must beat the built-in logs-*-* templates"
    assert held["ml-events"]["template"]["settings"]["index"]["default_pipeline"] == "ml-events-ingested"
    es.index(index="ml-events-2026.11.20", id="a", refresh=True,
             document={"@timestamp": "2026-11-20T12:00:00.000Z", "event": {"id": "a", "dataset": "ml.prediction"}})
    assert "ingested" in es.get(index="ml-events-2026.11.20", id="a")["_source"]["event"]
    es.close()
