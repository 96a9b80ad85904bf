"""Real Prometheus and Alertmanager on loopback ports, configured from the files in prometheus/.

prometheus/prometheus.yml and prometheus/alertmanager.yml are written for docker compose (service
host names, relative paths). The render functions here load those same files and rewrite only what
differs on one machine: scrape targets, the Alertmanager address, the SMTP smarthost, the secret
files' directory and the Telegram API base, absolute rule and template paths, and (for tests) shorter
intervals and `for:` durations. There is no second hand-written copy to keep in sync.

Alertmanager is the one compose runs (0.28.1, built from the Go module proxy into var/tools/bin by
common/go_tools.py, with its web UI); it reads the *_file secrets itself, as compose's does, so the
rendered copy only points them at the local secrets directory. The secret files are checked before
Alertmanager starts (SecretFileError names a missing or empty one). Only where that build is
missing does Debian's 0.25 run instead (go_tools.FALLBACK_LOSS says what is lost); it has no webhook
`url_file` or Telegram `bot_token_file`, so for it alone those two secrets are inlined into the
rendered copy, written 0600. Prometheus is Debian's either way: a server built from the Go module has
no web UI (docs/alerts.md#versions).

    with AlertingStack(tmp_dir, targets={"log_processor": ["127.0.0.1:8309"]},
                       smarthost=mail.address, timings=FAST,
                       secrets_dir=chat.write_secret_files(tmp_dir / "secrets"),
                       telegram_api_url=chat.url("telegram")) as stack:
        stack.prometheus.url, stack.alertmanager.url
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from common import go_tools
from common.net import free_port
from common.supervisor import Child, http_ok

PROMETHEUS_DIR = Path(__file__).resolve().parent.parent / "prometheus"
PROMETHEUS_YML = PROMETHEUS_DIR / "prometheus.yml"
ALERTMANAGER_YML = PROMETHEUS_DIR / "alertmanager.yml"
ALERTMANAGER_BINARIES = ("prometheus-alertmanager", "alertmanager")  # Debian's name, upstream's name
# Where prometheus/alertmanager.yml reads its secrets in compose (./secrets/alertmanager mounted there).
COMPOSE_SECRETS_DIR = "/etc/alertmanager/secrets"
# *_file fields the compose image (0.28.1) reads but Debian's 0.25 rejects ("field url_file not found"),
# with the inline field the rendered copy uses instead on older binaries (the fallback only).
FILE_FIELDS_SINCE = {"url_file": ((0, 26), "url"), "bot_token_file": ((0, 26), "bot_token")}
CHAT_INTEGRATIONS = ("slack_configs", "webhook_configs", "telegram_configs")
HEARTBEAT_RECEIVER = "heartbeat"   # the Watchdog's dead man's switch: its route keeps its own timers


class SecretFileError(ValueError):
    """A *_file secret of the Alertmanager config is missing or empty (raised before Alertmanager starts)."""


@dataclass(frozen=True)
class Timings:
    """Intervals for a rendered stack; None keeps the value written in prometheus/."""
    scrape_interval: str | None = None
    evaluation_interval: str | None = None
    alert_for: str | None = None        # replaces every alert's `for:` (rules are re-rendered)
    # (alert, `for:`) pairs that alert_for does not replace: an alert whose condition holds for a moment
    # in normal operation needs a `for:` longer than that moment at any speed
    alert_for_except: tuple[tuple[str, str], ...] = ()
    group_wait: str | None = None
    group_interval: str | None = None
    repeat_interval: str | None = None


PRODUCTION = Timings()
# For tests: alerts fire and notify within seconds of their condition.
# EventsNotArriving holds while a pipeline catches up after a pause: serving's latest prediction moves at
# once, the newest stored one after the shipper's poll, the processor's cycle and a scrape (≤ ~5 s here).
# 8 s keeps that moment quiet (docs/alerts.md#eventsnotarriving).
CATCH_UP = (("EventsNotArriving", "8s"),)
FAST = Timings(scrape_interval="1s", evaluation_interval="1s", alert_for="2s", alert_for_except=CATCH_UP,
               group_wait="1s", group_interval="2s", repeat_interval="1h")
# The demo: fast alerts, each incident (one per monitor: alertmanager.yml groups by monitor) told in
# one firing and one resolved message per channel. Alertmanager flushes a group group_wait after its
# first alert, then every group_interval, and a flush sends an update whenever the group's alerts
# changed since its last message. So, measured on the demo's story (docs/demo.md#timings): an
# incident's alerts start within ~11 s of each other (group_wait 15 s gathers them into the firing
# message), and they clear while the recovery's normal traffic fills the window, ~10-30 s after that
# message. group_interval is longer than that, so the group's first flush after its firing message
# finds every alert cleared (one resolved message); a flush falling between two clearings would
# send a partial update (a 30 s one did). 40 s leaves at least 10 s of margin and ends the story 80 s
# sooner than the 2 min it had.
DEMO = Timings(scrape_interval="1s", evaluation_interval="1s", alert_for="2s", alert_for_except=CATCH_UP,
               group_wait="15s", group_interval="40s", repeat_interval="1h")


def find_prometheus() -> str | None:
    return shutil.which("prometheus")


def find_alertmanager() -> str | None:
    """The pinned build (var/tools/bin, compose's version), else Debian's or one on PATH."""
    pinned = go_tools.tool("alertmanager")
    return str(pinned) if pinned else next((p for p in map(shutil.which, ALERTMANAGER_BINARIES) if p), None)


def alertmanager_fallback_note() -> str | None:
    """One line when Alertmanager is not the pinned build (what is lost); None when it is."""
    if go_tools.tool("alertmanager") or not find_alertmanager():
        return None
    return f"Alertmanager {go_tools.pin('alertmanager').reports} not built (`make go-tools`): {go_tools.FALLBACK_LOSS}"


def missing_binaries() -> list[str]:
    """Names of the binaries this module needs and cannot find (empty when all are there)."""
    missing = [] if find_prometheus() else ["prometheus"]
    return missing + ([] if find_alertmanager() else ["prometheus-alertmanager"])


# --- rendering --------------------------------------------------------------------------------------

def render_rules(source_files: Sequence[Path], out_dir: Path, timings: Timings) -> list[Path]:
    """Copies of the rule files with the test's evaluation interval and `for:` (None: unchanged)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for source in source_files:
        document = yaml.safe_load(source.read_text())
        for group in document.get("groups", []):
            if timings.evaluation_interval:
                group["interval"] = timings.evaluation_interval
            for rule in group.get("rules", []):
                if "alert" in rule and timings.alert_for is not None:
                    rule["for"] = dict(timings.alert_for_except).get(rule["alert"], timings.alert_for)
        target = out_dir / source.name
        target.write_text(yaml.safe_dump(document, sort_keys=False, width=1000))
        written.append(target)
    return written


def render_prometheus_config(out_dir: Path, targets: Mapping[str, Sequence[str]],
                             alertmanagers: Sequence[str] = (), *,
                             external_labels: Mapping[str, str] | None = None,
                             timings: Timings = PRODUCTION, source: Path = PROMETHEUS_YML) -> Path:
    """Write `out_dir/prometheus.yml` from `source`, scraping only the jobs named in `targets`.

    `targets` maps a job name of the source file (serving, log_processor, prometheus, alertmanager)
    to `host:port` addresses; jobs not named are dropped (nothing runs there). Rule files become
    absolute paths, re-rendered under `out_dir/rules/` when timings change them.
    """
    config = yaml.safe_load(source.read_text())
    jobs = {job["job_name"]: job for job in config.get("scrape_configs", [])}
    unknown = sorted(set(targets) - set(jobs))
    if unknown:
        raise ValueError(f"{source}: no scrape job named {', '.join(unknown)} (jobs: {', '.join(jobs)})")
    config["scrape_configs"] = []
    for name, addresses in targets.items():
        job = dict(jobs[name])
        job["static_configs"] = [{"targets": list(addresses)}]
        config["scrape_configs"].append(job)

    glob_ = config.setdefault("global", {})
    if timings.scrape_interval:
        glob_["scrape_interval"] = timings.scrape_interval
    if timings.evaluation_interval:
        glob_["evaluation_interval"] = timings.evaluation_interval
    if external_labels:
        glob_["external_labels"] = {**glob_.get("external_labels", {}), **external_labels}

    alerting = {key: value for key, value in config.get("alerting", {}).items() if key != "alertmanagers"}
    if alertmanagers:   # alert_relabel_configs (the `team` label) stay as written
        alerting["alertmanagers"] = [{"static_configs": [{"targets": list(alertmanagers)}]}]
    config["alerting"] = alerting
    rule_files = [path for pattern in config.get("rule_files", [])
                  for path in sorted(source.parent.glob(pattern))]
    if timings.alert_for is not None or timings.evaluation_interval:
        rule_files = render_rules(rule_files, out_dir / "rules", timings)
    config["rule_files"] = [str(path.resolve()) for path in rule_files]

    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "prometheus.yml"
    target.write_text(yaml.safe_dump(config, sort_keys=False))
    return target


def render_alertmanager_config(out_dir: Path, smarthost: str, *, timings: Timings = PRODUCTION,
                               source: Path = ALERTMANAGER_YML, secrets_dir: Path | None = None,
                               telegram_api_url: str | None = None,
                               version: tuple[int, int, int] | None = None) -> Path:
    """Write `out_dir/alertmanager.yml` (mode 0600) from `source`, sending mail via `smarthost`.

    `secrets_dir` replaces the compose secrets directory in every *_file path (None: the chat
    integrations are left out, e-mail only). Every *_file must then name a non-empty file, else
    SecretFileError names it. For a `version` older than a field (FILE_FIELDS_SINCE) the secret is
    read here and written inline into the copy, which is why the copy is 0600.
    `telegram_api_url` replaces the Telegram Bot API base (the loopback sink).
    """
    config = yaml.safe_load(source.read_text())
    config.setdefault("global", {})["smtp_smarthost"] = smarthost
    config["templates"] = [str(path.resolve()) for pattern in config.get("templates", [])
                           for path in sorted(source.parent.glob(pattern))]
    for route in _routes(config["route"]):
        if route.get("receiver") == HEARTBEAT_RECEIVER:
            continue   # a heartbeat every repeat_interval, not the story's incident timers
        for key in ("group_wait", "group_interval", "repeat_interval"):
            value = getattr(timings, key)
            if value and (route is config["route"] or key in route):
                route[key] = value
    receivers = [dict(receiver) for receiver in config.get("receivers", [])]
    config["receivers"] = receivers
    for receiver in receivers:
        for kind in CHAT_INTEGRATIONS:
            if kind not in receiver:
                continue
            if secrets_dir is None:
                del receiver[kind]
                continue
            receiver[kind] = [dict(integration) for integration in receiver[kind]]
            for integration in receiver[kind]:
                if kind == "telegram_configs" and telegram_api_url:
                    integration["api_url"] = telegram_api_url
    if secrets_dir is not None:
        _resolve_secret_files(config, source, Path(secrets_dir), version)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "alertmanager.yml"
    target.unlink(missing_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        # no YAML aliases: each integration is written out whole (the inlined secrets differ in place)
        out.write(yaml.dump(config, Dumper=_NoAliases, sort_keys=False, width=1000))
    return target


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data) -> bool:
        return True


def _routes(route: dict[str, Any]):
    yield route
    for child in route.get("routes", []):
        yield from _routes(child)


def secret_file_fields(config: Mapping[str, Any]) -> list[tuple[str, dict[str, Any], str]]:
    """(where, the mapping holding it, key) of every *_file field in `global` and the receivers."""
    found = [("global", config.get("global", {}), key) for key in config.get("global", {}) if key.endswith("_file")]
    for receiver in config.get("receivers", []):
        for kind, integrations in receiver.items():
            if not isinstance(integrations, list):
                continue
            for i, integration in enumerate(integrations):
                found += [(f"receivers[{receiver['name']}].{kind}[{i}]", integration, key)
                          for key in integration if key.endswith("_file")]
    return found


def check_secret_file(path: Path, where: str) -> str:
    """The secret in `path` (stripped); SecretFileError naming the file and the field when missing or empty."""
    try:
        value = path.read_text().strip()
    except FileNotFoundError:
        raise SecretFileError(f"{where}: secret file {path} does not exist "
                              f"(`make compose-env` writes it for compose)") from None
    except OSError as exc:
        raise SecretFileError(f"{where}: secret file {path} cannot be read: {exc.strerror}") from None
    if not value:
        raise SecretFileError(f"{where}: secret file {path} is empty")
    return value


def _resolve_secret_files(config: dict[str, Any], source: Path, secrets_dir: Path,
                          version: tuple[int, int, int] | None) -> None:
    for where, holder, key in secret_file_fields(config):
        path = Path(str(holder[key]))
        if str(path).startswith(COMPOSE_SECRETS_DIR + "/"):
            path = secrets_dir / path.relative_to(COMPOSE_SECRETS_DIR)
        value = check_secret_file(path, f"{source}: {where}.{key}")
        since = FILE_FIELDS_SINCE.get(key)
        if since and version is not None and version < since[0]:
            del holder[key]
            holder[since[1]] = value
        else:
            holder[key] = str(path)


def alertmanager_version(binary: str) -> tuple[int, int, int] | None:
    """(major, minor, patch) from `alertmanager --version`; None when it does not say."""
    result = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
    match = re.search(r"version (\d+)\.(\d+)\.(\d+)", result.stdout + result.stderr)
    return tuple(int(part) for part in match.groups()) if match else None


# --- processes --------------------------------------------------------------------------------------

def get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read().decode())


def _answers(url: str, timeout: float = 5.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


# Where a Prometheus serves its UI pages: upstream's builds (the compose image) at /<page>; Debian's
# 2.42 only under /classic/<page> (its React UI is not packaged, /<page> answers 404).
PROMETHEUS_UI_PREFIXES = ("", "/classic")


def prometheus_page(url: str, page: str = "alerts") -> str | None:
    """The URL of the running Prometheus's UI `page` (e.g. alerts), wherever this build serves it;
    None when it serves none."""
    return next((f"{url}{prefix}/{page}" for prefix in PROMETHEUS_UI_PREFIXES if _answers(f"{url}{prefix}/{page}")), None)


def alertmanager_ui(url: str) -> str | None:
    """The running Alertmanager's web UI, or None where the build has none (Debian's serves a page
    saying so at /, and no app bundle)."""
    return f"{url}/" if _answers(f"{url}/script.js") else None


class _Process:
    """A server binary on a loopback port: start, wait for /-/ready, stop (common.supervisor.Child)."""

    name = "process"

    def __init__(self, binary: str, args: list[str], port: int, log_file: Path, ready_timeout: float):
        self.binary, self.args, self.port = binary, args, port
        self.log_file, self.ready_timeout = log_file, ready_timeout
        self.url = f"http://127.0.0.1:{port}"
        self.child = Child(self.name, [binary, *args], log_file)

    def start(self):
        """Start and wait for /-/ready; ChildExited (a RuntimeError) or ChildNotReady (a TimeoutError)
        naming the log and showing its tail, with the process stopped."""
        self.child.start()
        try:
            self.child.wait_ready(lambda: http_ok(self.url + "/-/ready", lambda s: s == 200, timeout=1.0),
                                  self.ready_timeout, f"{self.url}/-/ready answered 200", interval=0.1)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self.child.stop(grace=10.0)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class PrometheusProcess(_Process):
    """`prometheus` with its own TSDB under `data_dir`; no lifecycle or admin API."""

    name = "prometheus"

    def __init__(self, config_file: Path, data_dir: Path, port: int | None = None, *,
                 log_file: Path | None = None, ready_timeout: float = 30.0, binary: str | None = None):
        port = port or free_port()
        binary = binary or find_prometheus()
        if not binary:
            raise FileNotFoundError("prometheus binary not found (Debian package: prometheus)")
        data_dir = Path(data_dir)
        args = [f"--config.file={config_file}", f"--storage.tsdb.path={data_dir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}", f"--web.external-url=http://127.0.0.1:{port}",
                "--log.level=warn"]
        super().__init__(binary, args, port, Path(log_file or data_dir / "prometheus.log"), ready_timeout)

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; the result vector (`[{"metric": {...}, "value": [ts, "v"]}, ...]`)."""
        body = get_json(f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        return body["data"]["result"]

    def alerts(self) -> list[dict[str, Any]]:
        """Active alerts (pending and firing) as Prometheus reports them."""
        return get_json(f"{self.url}/api/v1/alerts")["data"]["alerts"]

    def targets(self) -> list[dict[str, Any]]:
        return get_json(f"{self.url}/api/v1/targets")["data"]["activeTargets"]


class AlertmanagerProcess(_Process):
    """Alertmanager with its own storage under `data_dir` and clustering (gossip) switched off."""

    name = "alertmanager"

    def __init__(self, config_file: Path, data_dir: Path, port: int | None = None, *,
                 log_file: Path | None = None, ready_timeout: float = 30.0, binary: str | None = None):
        port = port or free_port()
        binary = binary or find_alertmanager()
        if not binary:
            raise FileNotFoundError("alertmanager binary not found (Debian package: prometheus-alertmanager)")
        data_dir = Path(data_dir)
        args = [f"--config.file={config_file}", f"--storage.path={data_dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}", f"--web.external-url=http://127.0.0.1:{port}",
                "--cluster.listen-address=", "--log.level=warn"]
        super().__init__(binary, args, port, Path(log_file or data_dir / "alertmanager.log"), ready_timeout)

    def alerts(self) -> list[dict[str, Any]]:
        return get_json(f"{self.url}/api/v2/alerts")

    def post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        """Push alerts as Prometheus does (API v2): `[{"labels": {...}, "annotations": {...}}, ...]`."""
        request = urllib.request.Request(f"{self.url}/api/v2/alerts", data=json.dumps(alerts).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=5.0):
            pass


class AlertingStack:
    """Render both configs under `directory`, then run Alertmanager and Prometheus until exit.

    `targets`: job name → addresses to scrape (Prometheus and Alertmanager themselves are added).
    `smarthost`: where Alertmanager delivers mail. `secrets_dir`: the chat integrations' secret files
    (as compose's secrets/alertmanager/; None: e-mail only); `telegram_api_url`: the Bot API base. `external_labels`: link bases for the e-mails
    (grafana_url, kibana_url, log_processor_url), merged over the ones in prometheus.yml.
    Ports are free ones unless given; logs go beside each process's data unless given.
    """

    def __init__(self, directory: Path, targets: Mapping[str, Sequence[str]], smarthost: str, *,
                 timings: Timings = PRODUCTION, external_labels: Mapping[str, str] | None = None,
                 prometheus_port: int | None = None, alertmanager_port: int | None = None,
                 prometheus_log: Path | None = None, alertmanager_log: Path | None = None,
                 secrets_dir: Path | None = None, telegram_api_url: str | None = None):
        self.directory = Path(directory)
        self.secrets_dir, self.telegram_api_url = secrets_dir, telegram_api_url
        self.targets = dict(targets)
        self.smarthost = smarthost
        self.timings = timings
        self.external_labels = dict(external_labels or {})
        self.prometheus_port, self.alertmanager_port = prometheus_port, alertmanager_port
        self.prometheus_log, self.alertmanager_log = prometheus_log, alertmanager_log
        self.prometheus: PrometheusProcess | None = None
        self.alertmanager: AlertmanagerProcess | None = None

    def start(self) -> "AlertingStack":
        am_dir, prom_dir = self.directory / "alertmanager", self.directory / "prometheus"
        binary = find_alertmanager()
        am_config = render_alertmanager_config(
            am_dir, self.smarthost, timings=self.timings, secrets_dir=self.secrets_dir,
            telegram_api_url=self.telegram_api_url, version=alertmanager_version(binary) if binary else None)
        self.alertmanager = AlertmanagerProcess(am_config, am_dir, self.alertmanager_port,
                                                log_file=self.alertmanager_log).start()
        try:
            prom_port = self.prometheus_port or free_port()
            am_address = f"127.0.0.1:{self.alertmanager.port}"
            targets = {"prometheus": [f"127.0.0.1:{prom_port}"], "alertmanager": [am_address], **self.targets}
            prom_config = render_prometheus_config(prom_dir, targets, [am_address], timings=self.timings,
                                                   external_labels=self.external_labels)
            self.prometheus = PrometheusProcess(prom_config, prom_dir, prom_port,
                                                log_file=self.prometheus_log).start()
        except BaseException:
            self.alertmanager.stop()
            raise
        return self

    def stop(self) -> None:
        for process in (self.prometheus, self.alertmanager):
            if process is not None:
                process.stop()

    def __enter__(self) -> "AlertingStack":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
