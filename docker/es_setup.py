"""One-shot setup of the secured Elasticsearch in docker-compose.yml (the `setup` service).

Waits for the cluster and for its built-in users (the security index starts after the node answers),
then, as `elastic`: sets the `kibana_system` password, creates one role per writer (create_doc on its
own index pattern only) and a reader role, creates the service users, and applies the index templates
from elasticsearch/ (ingest pipelines, then index templates). Every call is a PUT/POST that overwrites, so running it
again is harmless, and every call is retried with backoff for about a minute on 429, 5xx and
timeouts (a node that is still starting answers 503). It refuses to start with a missing or short
password, or a Kibana encryption key under 32 characters, rather than start a stack that cannot work.

    python docker/es_setup.py          # reads the env of the setup service
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from elastic_transport import ConnectionError as TransportConnectionError, ConnectionTimeout  # noqa: E402
from elasticsearch import ApiError, Elasticsearch  # noqa: E402

from common.env import SettingsError  # noqa: E402
from common.retention import RetentionSettings  # noqa: E402
from common.schema import EVENTS_INDEX_PATTERN, LOGS_INDEX_PREFIX, MONITORING_INDEX_PATTERN  # noqa: E402
from common.store import (TEMPLATES_DIR, StoreSettings, StoreUnavailable, connect, index_templates,  # noqa: E402
                          ingest_pipelines, probe)

LOGS_INDEX_PATTERN = LOGS_INDEX_PREFIX + "*"
MIN_PASSWORD_LENGTH = 6  # the native realm rejects shorter ones
MIN_KEY_LENGTH = 32  # Kibana refuses shorter encryption keys at start

# env variable -> the user it sets the password of
PASSWORD_VARIABLES = {
    "ELASTIC_PASSWORD": "elastic",
    "KIBANA_SYSTEM_PASSWORD": "kibana_system",
    "FLUENTD_ES_PASSWORD": "fluentd_writer",
    "FILEBEAT_ES_PASSWORD": "filebeat_writer",
    "LOG_PROCESSOR_ES_PASSWORD": "log_processor",
    "GRAFANA_ES_PASSWORD": "grafana_reader",
    "EXPORTER_ES_PASSWORD": "metrics_exporter",
}
# Kibana's three encryption keys (saved objects, session/security, reporting); checked here because
# every service waits on setup, so a short key stops the stack with one clear line instead of a
# Kibana restart loop.
KEY_VARIABLES = ("KIBANA_ENCRYPTION_KEY", "KIBANA_SECURITY_ENCRYPTION_KEY", "KIBANA_REPORTING_ENCRYPTION_KEY")
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class SetupError(RuntimeError):
    """A setting is missing or the cluster refused a request; the message says which."""


@dataclass(frozen=True)
class SetupSettings:
    url: str
    passwords: Mapping[str, str]  # env variable name -> value
    ca_file: str | None = None
    wait_seconds: float = 300.0     # for the node to answer at all
    retry_seconds: float = 60.0     # for each request that answers 429/5xx or times out
    request_timeout: float = 15.0
    retention: RetentionSettings = RetentionSettings()   # days per daily index kind (ILM policies)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "SetupSettings":
        env = os.environ if env is None else env
        problems = []
        for name in PASSWORD_VARIABLES:
            value = env.get(name, "")
            if not value:
                problems.append(f"{name} is empty (set it in .env)")
            elif len(value) < MIN_PASSWORD_LENGTH:
                problems.append(f"{name} is shorter than {MIN_PASSWORD_LENGTH} characters")
        for name in KEY_VARIABLES:
            value = env.get(name, "")
            if len(value) < MIN_KEY_LENGTH:
                problems.append(f"{name} is {'empty' if not value else 'shorter than 32 characters'} "
                                f"(Kibana needs {MIN_KEY_LENGTH}+; `make compose-env` writes one)")
        try:
            retention = RetentionSettings.from_env(env)
        except SettingsError as exc:
            problems.append(str(exc))
        if problems:
            raise SetupError("refusing to set up Elasticsearch: " + "; ".join(problems))
        return cls(
            url=env.get("ELASTICSEARCH_URL", "http://elasticsearch:9200"),
            passwords={name: env[name] for name in PASSWORD_VARIABLES},
            ca_file=env.get("ELASTICSEARCH_CA_FILE") or None,
            wait_seconds=float(env.get("SETUP_WAIT_SECONDS", cls.wait_seconds)),
            retry_seconds=float(env.get("SETUP_RETRY_SECONDS", cls.retry_seconds)),
            retention=retention,
        )

    def store(self) -> StoreSettings:
        return StoreSettings(url=self.url, username="elastic", password=self.passwords["ELASTIC_PASSWORD"],
                             ca_file=self.ca_file, request_timeout=self.request_timeout)


def _writer(pattern: str, description: str, write: str = "create_doc") -> dict[str, Any]:
    # auto_configure lets the first document of a new day create that day's index; nothing else
    return {
        "cluster": ["monitor"],
        "indices": [{"names": [pattern], "privileges": [write, "auto_configure"]}],
        "metadata": {"description": description},
    }


def roles() -> dict[str, dict[str, Any]]:
    """Least privilege: each shipper may only add documents to its own indices, readers only read."""
    return {
        "ml_events_writer": _writer(EVENTS_INDEX_PATTERN, "Fluentd: create ml-events documents"),
        "logs_serving_writer": _writer(LOGS_INDEX_PATTERN, "Filebeat: create logs-serving documents"),
        # the processor writes each summary with `index` under a deterministic id (a retried write
        # replaces its own document), which create_doc does not allow; still no delete, no admin
        "ml_monitoring_writer": _writer(MONITORING_INDEX_PATTERN, "log_processor: one summary per evaluation",
                                        write="index"),
        "ml_logs_reader": {
            "cluster": ["monitor"],
            "indices": [{
                "names": [EVENTS_INDEX_PATTERN, MONITORING_INDEX_PATTERN, LOGS_INDEX_PATTERN],
                "privileges": ["read", "view_index_metadata"],
            }],
            "metadata": {"description": "log_processor windows, Grafana panels"},
        },
        # prometheus-elasticsearch-exporter: cluster health and node stats (heap), no index access
        "metrics_exporter": {
            "cluster": ["monitor"],
            "indices": [],
            "metadata": {"description": "elasticsearch-exporter: _cluster/health, _nodes/stats"},
        },
    }


def users(passwords: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    return {
        "fluentd_writer": {"password": passwords["FLUENTD_ES_PASSWORD"], "roles": ["ml_events_writer"]},
        "filebeat_writer": {"password": passwords["FILEBEAT_ES_PASSWORD"], "roles": ["logs_serving_writer"]},
        "log_processor": {"password": passwords["LOG_PROCESSOR_ES_PASSWORD"],
                          "roles": ["ml_logs_reader", "ml_monitoring_writer"]},
        "grafana_reader": {"password": passwords["GRAFANA_ES_PASSWORD"], "roles": ["ml_logs_reader"]},
        "metrics_exporter": {"password": passwords["EXPORTER_ES_PASSWORD"], "roles": ["metrics_exporter"]},
    }


def ilm_policy(days: int) -> dict[str, Any]:
    """An index lifecycle policy that deletes an index `days` days after its creation (a daily index is
    created by its day's first document; nothing rolls over)."""
    return {"phases": {"hot": {"min_age": "0ms", "actions": {}},
                       "delete": {"min_age": f"{days}d", "actions": {"delete": {}}}}}


def ilm_policies(retention: RetentionSettings) -> dict[str, tuple[str, dict[str, Any]]]:
    """Index prefix -> (policy name, policy): `ml-events-retention` etc., from the retention settings."""
    return {prefix: (f"{prefix.rstrip('-')}-retention", ilm_policy(days)) for prefix, days in retention.days().items()}


def with_lifecycle(template: dict[str, Any], policies: dict[str, tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The template with `index.lifecycle.name` of the policy whose prefix its index patterns share
    (unchanged when none does). Only here: OpenSearch and osmem take the same template files and know no ILM."""
    for prefix, (name, _) in policies.items():
        if all(pattern.startswith(prefix) for pattern in template.get("index_patterns", [])):
            settings = {**template.get("template", {}).get("settings", {}), "index.lifecycle.name": name}
            return {**template, "template": {**template.get("template", {}), "settings": settings}}
    return template


def wait_for_cluster(store: StoreSettings, wait_seconds: float) -> dict[str, Any]:
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            return probe(store)
        except StoreUnavailable as exc:
            if time.monotonic() > deadline:
                raise SetupError(f"Elasticsearch did not accept the elastic user within {wait_seconds:.0f}s: {exc}")
            print(f"waiting for Elasticsearch at {store.url} ...", flush=True)
            time.sleep(3)


def retrying(what: str, call: Callable[[], Any], budget: float, *, also: frozenset[int] = frozenset(),
             sleep: Callable[[float], None] = time.sleep) -> Any:
    """`call()`, again with exponential backoff (0.5 s doubling to 8 s) while it answers 429/5xx (or a
    status in `also`) or times out, until `budget` seconds have passed; other errors raise at once."""
    deadline, delay = time.monotonic() + budget, 0.5
    while True:
        try:
            return call()
        except ApiError as exc:
            if exc.meta.status not in RETRY_STATUSES | also:
                raise
            problem = f"HTTP {exc.meta.status}"
        except (TransportConnectionError, ConnectionTimeout) as exc:  # refused, reset, timed out
            problem = type(exc).__name__
        if time.monotonic() + delay > deadline:
            raise SetupError(f"{what}: still failing after {budget:.0f}s ({problem})")
        print(f"{what}: {problem}, retrying in {delay:g}s", flush=True)
        sleep(delay)
        delay = min(delay * 2, 8.0)


def wait_for_builtin_users(es: Elasticsearch, budget: float) -> None:
    """The reserved users live in the security index, which starts after the node answers: until it
    is up, user calls answer 503 (or 404 for a moment); writing before that would fail."""
    retrying("waiting for the built-in users", lambda: es.security.get_user(username="kibana_system"),
             budget, also=frozenset({404}))


def apply_templates(es: Elasticsearch, budget: float, directory: Path = TEMPLATES_DIR,
                    retention: RetentionSettings | None = None) -> list[str]:
    """The ingest pipelines first: the ml-events template names one as its default_pipeline; with
    `retention` (Elasticsearch only: OpenSearch has no ILM), the lifecycle policies before the
    templates that name them."""
    policies = ilm_policies(retention) if retention is not None else {}
    for name, policy in policies.values():
        retrying(f"lifecycle policy {name}", lambda: es.ilm.put_lifecycle(name=name, policy=policy), budget)
        print(f"lifecycle policy {name}: delete after {policy['phases']['delete']['min_age']}", flush=True)
    for name, body in ingest_pipelines(directory).items():
        retrying(f"ingest pipeline {name}", lambda: es.ingest.put_pipeline(id=name, **body), budget)
        print(f"ingest pipeline {name}", flush=True)
    names = []
    for name, body in index_templates(directory).items():
        body = with_lifecycle(body, policies)
        retrying(f"index template {name}", lambda: es.indices.put_index_template(name=name, **body), budget)
        names.append(name)
    return names


def run(settings: SetupSettings) -> None:
    store = settings.store()
    info = wait_for_cluster(store, settings.wait_seconds)
    print(f"Elasticsearch {info.get('version', {}).get('number', '?')} is up", flush=True)
    es = connect(store, info)
    budget = settings.retry_seconds
    try:
        wait_for_builtin_users(es, budget)
        retrying("kibana_system password", lambda: es.security.change_password(
            username="kibana_system", password=settings.passwords["KIBANA_SYSTEM_PASSWORD"]), budget)
        print("kibana_system password set", flush=True)
        for name, body in roles().items():
            retrying(f"role {name}", lambda: es.security.put_role(name=name, **body), budget)
            print(f"role {name}", flush=True)
        for name, body in users(settings.passwords).items():
            retrying(f"user {name}", lambda: es.security.put_user(username=name, **body), budget)
            print(f"user {name} ({', '.join(body['roles'])})", flush=True)
        for name in apply_templates(es, budget, retention=settings.retention):
            print(f"index template {name}", flush=True)
    finally:
        es.close()
    print("setup done", flush=True)


def main() -> int:
    try:
        run(SetupSettings.from_env())
    except SetupError as exc:
        print(f"setup: {exc}", file=sys.stderr)
        return 2
    except ApiError as exc:
        print(f"setup: Elasticsearch refused a request: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
