"""One-shot setup of the secured Elasticsearch in docker-compose.yml (the `setup` service).

Waits for the cluster, then, as `elastic`: sets the `kibana_system` password, creates one role per
writer (create_doc on its own index pattern only) and a reader role, creates the service users, and
applies the index templates from elasticsearch/*.index-template.json. Every call is a PUT/POST
that overwrites, so running it again is harmless. It refuses to start with a missing or short
password rather than create a user nobody can log in as.

    python docker/es_setup.py          # reads the env of the setup service
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from elasticsearch import ApiError  # noqa: E402

from common.schema import EVENTS_INDEX_PATTERN, LOGS_INDEX_PREFIX, MONITORING_INDEX_PATTERN  # noqa: E402
from common.store import StoreSettings, StoreUnavailable, apply_index_templates, connect, probe  # noqa: E402

LOGS_INDEX_PATTERN = LOGS_INDEX_PREFIX + "*"
MIN_PASSWORD_LENGTH = 6  # the native realm rejects shorter ones

# env variable -> the user it sets the password of
PASSWORD_VARIABLES = {
    "ELASTIC_PASSWORD": "elastic",
    "KIBANA_SYSTEM_PASSWORD": "kibana_system",
    "FLUENTD_ES_PASSWORD": "fluentd_writer",
    "FILEBEAT_ES_PASSWORD": "filebeat_writer",
    "LOG_PROCESSOR_ES_PASSWORD": "log_processor",
    "GRAFANA_ES_PASSWORD": "grafana_reader",
}


class SetupError(RuntimeError):
    """A setting is missing or the cluster refused a request; the message says which."""


@dataclass(frozen=True)
class SetupSettings:
    url: str
    passwords: Mapping[str, str]  # env variable name -> value
    ca_file: str | None = None
    wait_seconds: float = 300.0

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
        if problems:
            raise SetupError("refusing to set up Elasticsearch: " + "; ".join(problems))
        return cls(
            url=env.get("ELASTICSEARCH_URL", "http://elasticsearch:9200"),
            passwords={name: env[name] for name in PASSWORD_VARIABLES},
            ca_file=env.get("ELASTICSEARCH_CA_FILE") or None,
            wait_seconds=float(env.get("SETUP_WAIT_SECONDS", cls.wait_seconds)),
        )

    def store(self) -> StoreSettings:
        return StoreSettings(url=self.url, username="elastic", password=self.passwords["ELASTIC_PASSWORD"],
                             ca_file=self.ca_file)


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
    }


def users(passwords: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    return {
        "fluentd_writer": {"password": passwords["FLUENTD_ES_PASSWORD"], "roles": ["ml_events_writer"]},
        "filebeat_writer": {"password": passwords["FILEBEAT_ES_PASSWORD"], "roles": ["logs_serving_writer"]},
        "log_processor": {"password": passwords["LOG_PROCESSOR_ES_PASSWORD"],
                          "roles": ["ml_logs_reader", "ml_monitoring_writer"]},
        "grafana_reader": {"password": passwords["GRAFANA_ES_PASSWORD"], "roles": ["ml_logs_reader"]},
    }


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


def run(settings: SetupSettings) -> None:
    store = settings.store()
    info = wait_for_cluster(store, settings.wait_seconds)
    print(f"Elasticsearch {info.get('version', {}).get('number', '?')} is up", flush=True)
    es = connect(store, info)
    es.security.change_password(username="kibana_system", password=settings.passwords["KIBANA_SYSTEM_PASSWORD"])
    print("kibana_system password set", flush=True)
    for name, body in roles().items():
        es.security.put_role(name=name, **body)
        print(f"role {name}", flush=True)
    for name, body in users(settings.passwords).items():
        es.security.put_user(username=name, **body)
        print(f"user {name} ({', '.join(body['roles'])})", flush=True)
    for name in apply_index_templates(es):
        print(f"index template {name}", flush=True)
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
