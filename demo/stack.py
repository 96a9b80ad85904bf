"""The embedded stack: every part of the compose deployment, as small local stand-ins, on loopback.

Start order follows the data: store → mail and notification sinks → serving → shipper (and its /metrics)
→ log processor → retention schedule → node and store exporters (when installed) → Alertmanager
→ Prometheus, except that serving and the log processor, which do not need each other, are launched
together and then waited for in turn (their imports and model loading are most of the start);
`stop` goes the other way. Each child runs in its own process group with its log in
var/log/demo-<part>.log.
"""
from __future__ import annotations

import logging
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml
from osmem_server import OsmemServer

from common.evidently_ui import EvidentlyUI
from common.net import free_port
from common.opensearch_runner import EngineUnavailable, OpenSearchCluster
from common.retention import RetentionLoop, RetentionSettings
from common.store import StoreSettings, apply_index_templates, connect
from common.supervisor import Child, ChildFailed, http_ok
from demo import alerting_stack, exporters
from demo.mail_sink import MailSink
from demo.notification_sink import CHANNELS as CHAT_CHANNELS, NotificationSink
from demo.settings import REPO_ROOT, DemoSettings
from log_processor.monitors import Monitor, load_monitors
from shipper import Shipper, ShipperSettings
from shipper.metrics import serve as serve_shipper_metrics

log = logging.getLogger("demo")
INSTALL_HINT = ("Prometheus/Alertmanager not found ({missing}); running without alerts. "
                "Install them with: sudo apt-get install prometheus prometheus-alertmanager "
                "(or `make system-deps`)")


@dataclass
class Urls:
    store: str = ""
    serving: str = ""
    log_processor: str = ""
    prometheus: str = ""
    alertmanager: str = ""
    smtp: str = ""
    evidently: str = ""
    shipper_metrics: str = ""     # issue 32: the shipper's /metrics and the exporters (empty: not running)
    node_exporter: str = ""
    store_exporter: str = ""


@dataclass
class EmbeddedStack:
    settings: DemoSettings
    say: Callable[[str], None] = print
    urls: Urls = field(default_factory=Urls)
    alerts_missing: list[str] = field(default_factory=list)
    store: OsmemServer | OpenSearchCluster | None = None
    mail: MailSink | None = None
    notifications: NotificationSink | None = None
    shipper: Shipper | None = None
    alerting: alerting_stack.AlertingStack | None = None
    evidently: EvidentlyUI | None = None
    evidently_secret_file: Path | None = None
    _children: list[Child] = field(default_factory=list)
    _shipper_stop: threading.Event = field(default_factory=threading.Event)
    _shipper_thread: threading.Thread | None = None
    exporter_processes: list[exporters.Exporter] = field(default_factory=list)
    retention: RetentionLoop | None = None
    _shipper_metrics_server: object | None = None
    _scrape_targets: dict[str, list[str]] = field(default_factory=dict)   # job -> addresses, beyond serving/processor

    # --- paths ------------------------------------------------------------------------------
    @property
    def events_file(self) -> Path:
        return self.settings.state_dir / "events/ml-events.jsonl"

    def log_file(self, part: str) -> Path:
        return self.settings.log_dir / f"demo-{part}.log"

    @property
    def children(self) -> list[Child]:
        return list(self._children)

    # --- start ------------------------------------------------------------------------------
    def start(self) -> "EmbeddedStack":
        """Start every part; on any failure stop what already runs and re-raise."""
        try:
            self._prepare_dirs()
            self._bootstrap()
            self._start_store()
            self._start_mail_sink()
            self._start_notification_sink()
            evidently_ready = self._start_evidently_ui()
            serving_ready = self._start_serving()
            log_processor_ready = self._start_log_processor()
            serving_ready()
            self._start_shipper()
            self._start_shipper_metrics()
            log_processor_ready()
            evidently_ready()
            self._start_retention()
            self._start_exporters()
            self._start_alerting()
        except BaseException:
            self.stop()
            raise
        return self

    def _prepare_dirs(self) -> None:
        s = self.settings
        shutil.rmtree(s.state_dir, ignore_errors=True)
        s.state_dir.mkdir(parents=True)
        s.mail_dir.mkdir(parents=True, exist_ok=True)
        for old in s.mail_dir.glob("*.eml"):
            old.unlink()
        for channel in CHAT_CHANNELS:
            for old in (s.notifications_dir / channel).glob("*.json"):
                old.unlink()
        s.log_dir.mkdir(parents=True, exist_ok=True)
        for old in s.log_dir.glob("demo-*.log"):
            if old.name != "demo-runner.log":  # open already; the runner truncates it itself
                old.unlink()

    def _bootstrap(self) -> None:
        """Data, model and Feast features (`python -m serving.bootstrap`; quick when up to date)."""
        started = time.monotonic()
        self.say("bootstrap: data, model and Feast features (python -m serving.bootstrap) ...")
        log_file = self.log_file("bootstrap")
        with open(log_file, "ab") as out:
            result = subprocess.run([sys.executable, "-m", "serving.bootstrap"], cwd=REPO_ROOT,
                                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise ChildFailed(f"serving.bootstrap failed (exit {result.returncode}); see {log_file}:\n"
                              + "\n".join(log_file.read_text(errors="replace").splitlines()[-15:]))
        self.say(f"bootstrap: done in {time.monotonic() - started:.1f}s")

    def _start_store(self) -> None:
        port = self.settings.ports.store
        if self.settings.store == "opensearch":
            self.say("store:         starting OpenSearch (resolving it from Maven Central on first use) ...")
            try:
                self.store = OpenSearchCluster.start(1, self.settings.state_dir / "opensearch",
                                                     http_ports=[port] if port else None)
            except EngineUnavailable as exc:
                raise ChildFailed(f"--store opensearch: {exc}") from None
        else:
            self.store = OsmemServer.start(japanese=False, addr=f"127.0.0.1:{port}")
        self.urls.store = self.store.url
        client = connect(StoreSettings(url=self.store.url))
        try:
            templates = apply_index_templates(client)
            version = client.info()["version"]["number"]
        finally:
            client.close()
        name = f"OpenSearch {version}" if self.settings.store == "opensearch" else f"osmem-server {version}"
        self.say(f"store:         {name} at {self.store.url} (templates: {', '.join(templates)})")

    def _start_mail_sink(self) -> None:
        self.mail = MailSink(self.settings.mail_dir, port=self.settings.ports.smtp).start()
        self.urls.smtp = self.mail.address
        self.say(f"smtp sink:     {self.mail.address} → {self.settings.mail_dir}/*.eml")

    def _start_notification_sink(self) -> None:
        self.notifications = NotificationSink(self.settings.notifications_dir).start()
        self.say("chat sink:     " + ", ".join(f"{c} {self.notifications.base(c)}" for c in CHAT_CHANNELS)
                 + f" → {self.settings.notifications_dir}/<channel>/*.json")

    @property
    def prometheus(self) -> alerting_stack.PrometheusProcess | None:
        return self.alerting.prometheus if self.alerting else None

    @property
    def alertmanager(self) -> alerting_stack.AlertmanagerProcess | None:
        return self.alerting.alertmanager if self.alerting else None

    def _child_env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("SERVING_", "LOGPROC_", "SHIPPER_", "ELASTICSEARCH_"))}
        env.update({"PYTHONUNBUFFERED": "1", "ELASTICSEARCH_URL": self.urls.store, **extra})
        return env

    def _start_serving(self) -> Callable[[], None]:
        """Launch serving; the function returned waits until it answers."""
        port = self.settings.ports.serving or free_port()
        self.urls.serving = f"http://127.0.0.1:{port}"
        child = Child("serving", [sys.executable, "-m", "serving"], self.log_file("serving"),
                      env=self._child_env(SERVING_HOST="127.0.0.1", SERVING_PORT=str(port),
                                          SERVING_EVENT_SINKS="file",
                                          SERVING_EVENTS_FILE=str(self.events_file)),
                      cwd=REPO_ROOT)
        self._children.append(child.start())

        def ready() -> None:
            child.wait_ready(lambda: http_ok(self.urls.serving + "/healthz", lambda s: s == 200), 90,
                             "GET /healthz answered 200")
            self.say(f"serving:       {self.urls.serving} (gunicorn, events → {self.events_file})")
        return ready

    def _start_shipper(self) -> None:
        settings = ShipperSettings(files=(self.events_file,), state_dir=self.settings.state_dir / "shipping",
                                   poll_interval=0.2, backoff_max=5.0, log_interval=30.0,
                                   store=StoreSettings(url=self.urls.store))
        self.shipper = Shipper(settings)
        self._shipper_thread = threading.Thread(target=self.shipper.run, args=(self._shipper_stop,),
                                                name="shipper", daemon=True)
        self._shipper_thread.start()
        self.say(f"shipper:       {self.events_file.parent}/ml-events.jsonl* → {self.urls.store} "
                 f"(offsets: {settings.offsets_file})")

    def _start_shipper_metrics(self) -> None:
        """The shipper's /metrics (shipper/metrics.py) on a free loopback port, for Prometheus's shipper job.
        It reads whichever Shipper the stack holds, so it keeps answering across a shipper restart."""
        port = free_port()
        self._shipper_metrics_server, _ = serve_shipper_metrics(lambda: self.shipper.stats, "127.0.0.1", port)
        self.urls.shipper_metrics = f"http://127.0.0.1:{port}"
        self._scrape_targets["shipper"] = [f"127.0.0.1:{port}"]
        self.say(f"shipper:       metrics on {self.urls.shipper_metrics}/metrics")

    def _start_retention(self) -> None:
        """The retention step on a schedule (RETENTION_* settings; common/retention.py): osmem and this
        OpenSearch have no lifecycle management, so daily indices past their days are deleted here."""
        settings = RetentionSettings.from_env()
        settings = RetentionSettings(events_days=settings.events_days, logs_days=settings.logs_days,
                                     monitoring_days=settings.monitoring_days, interval=settings.interval,
                                     store=StoreSettings(url=self.urls.store))
        self.retention = RetentionLoop(settings).start()
        self.say(f"retention:     every {settings.interval:g}s, daily indices older than "
                 + ", ".join(f"{prefix}* {days} d" for prefix, days in settings.days().items()))

    def _start_exporters(self) -> None:
        """Debian's node and Elasticsearch exporters when installed (loopback, free ports), for
        Prometheus's node and elasticsearch jobs; without them the demo says so and runs on."""
        if not self.settings.alerts:
            return   # nothing would scrape them
        missing = exporters.missing()
        if missing:
            self.say(f"exporters:     not installed: {', '.join(missing)} ({exporters.INSTALL_HINT})")
        if exporters.find(exporters.NODE_EXPORTER):
            node = exporters.NodeExporter(self.log_file("node_exporter")).start()
            self.exporter_processes.append(node)
            self.urls.node_exporter = node.url
            self._scrape_targets["node"] = [node.address]
            self.say(f"node exporter: {node.url}/metrics (collectors: {', '.join(exporters.NODE_COLLECTORS)})")
        if exporters.find(exporters.ELASTICSEARCH_EXPORTER):
            store = exporters.ElasticsearchExporter(self.urls.store, self.log_file("store_exporter")).start()
            self.exporter_processes.append(store)
            self.urls.store_exporter = store.url
            self._scrape_targets["elasticsearch"] = [store.address]
            self.say(f"store exporter: {store.url}/metrics (cluster health and heap of {self.urls.store})")

    def monitors(self) -> tuple[Monitor, ...]:
        """The monitors of settings.monitors_file, read and checked by the log processor's own loader
        (ConfigError names the file, line and key): the story treats each one alike."""
        return load_monitors(self.settings.monitors_file, base_dir=REPO_ROOT)

    def _monitors_file(self) -> Path:
        """settings.monitors_file (the project's monitors.yaml by default) with the demo's interval and a
        window of the latest N predictions.

        N is the shorter phase's length, so that after a phase the window holds only that phase's
        predictions and the verdict describes it alone. min_rows = N: no verdict on a half-filled
        window, whose small sample would flag normal traffic as drifted now and then.
        """
        config = yaml.safe_load(self.settings.monitors_file.read_text())
        last = min(self.settings.normal_requests, self.settings.drift_requests)
        for monitor in config["monitors"]:
            monitor["interval"] = f"{self.settings.eval_interval:g}s"
            monitor["window"] = {"last": last}
            monitor["min_rows"] = last
            monitor["max_rows"] = max(int(monitor.get("max_rows", last)), last)
        target = self.settings.state_dir / "monitors.yaml"
        target.write_text(yaml.safe_dump(config, sort_keys=False))
        return target

    def _start_evidently_ui(self) -> Callable[[], None]:
        """Launch `evidently ui` (telemetry off; writes need the secret, written 0600 like the chat
        secrets); the log processor sends it a snapshot per monitor each cycle. The function returned
        waits until it answers."""
        secret_file = self.settings.state_dir / "secrets" / "evidently_secret"
        secret_file.parent.mkdir(parents=True, exist_ok=True)
        secret_file.touch(mode=0o600)
        secret_file.write_text(secrets.token_urlsafe(24) + "\n")
        self.evidently_secret_file = secret_file
        self.evidently = EvidentlyUI(self.settings.state_dir / "evidently", self.log_file("evidently-ui"),
                                     port=self.settings.ports.evidently, secret=secret_file.read_text().strip())
        launched = time.monotonic()
        self.evidently.launch()
        self.urls.evidently = self.evidently.url
        self._children.append(self.evidently.child)

        def ready() -> None:
            """The UI is optional: one that does not come up is said, and the demo goes on without it
            (the processor counts its failed writes in mlmon_snapshot_errors_total)."""
            try:
                self.evidently.wait(90)
            except ChildFailed as exc:
                self.evidently.stop()
                self.urls.evidently = ""
                self.say(f"evidently ui:  not started, the demo goes on without it: {exc}")
                return
            self.say(f"evidently ui:  {self.evidently.url} (up in {time.monotonic() - launched:.1f}s; a snapshot "
                     f"per monitor every {self.settings.eval_interval:g}s)")
        return ready

    def _start_log_processor(self) -> Callable[[], None]:
        """Launch the log processor; the function returned waits until it answers."""
        port = self.settings.ports.log_processor or free_port()
        self.urls.log_processor = f"http://127.0.0.1:{port}"
        child = Child("log_processor", [sys.executable, "-m", "log_processor"], self.log_file("log_processor"),
                      env=self._child_env(LOGPROC_HOST="127.0.0.1", LOGPROC_PORT=str(port),
                                          LOGPROC_MONITORS_FILE=str(self._monitors_file()),
                                          **self._evidently_env()),
                      cwd=REPO_ROOT)
        self._children.append(child.start())

        def ready() -> None:
            child.wait_ready(lambda: http_ok(self.urls.log_processor + "/metrics", lambda s: s == 200), 90,
                             "GET /metrics answered 200")
            self.say(f"log processor: {self.urls.log_processor} (evaluates every {self.settings.eval_interval:g}s)")
        return ready

    def _evidently_env(self) -> dict[str, str]:
        if self.evidently is None:
            return {}
        return {"LOGPROC_EVIDENTLY_WORKSPACE": self.evidently.url,
                "LOGPROC_EVIDENTLY_SECRET_FILE": str(self.evidently_secret_file),
                "LOGPROC_SNAPSHOT_INTERVAL": f"{self.settings.eval_interval:g}"}

    def _start_alerting(self) -> None:
        if not self.settings.alerts:
            self.say("alerting:      off (--no-alerts)")
            return
        self.alerts_missing = alerting_stack.missing_binaries()
        if self.alerts_missing:
            self.say(INSTALL_HINT.format(missing=", ".join(self.alerts_missing)))
            return
        s = self.settings
        try:
            self._alerting_stack(s)
        except alerting_stack.SecretFileError as exc:
            raise ChildFailed(f"alertmanager not started: {exc}") from None
        self.urls.prometheus, self.urls.alertmanager = self.prometheus.url, self.alertmanager.url
        self.say(f"prometheus:    {self.prometheus.url} (scrapes every 1s; alert `for:` 2s for the demo)")
        self.say(f"alertmanager:  {self.alertmanager.url} (mail via {self.mail.address}; Slack, webhook and "
                 f"Telegram via the chat sink; an incident's alerts are collected for 15s)")

    def _alerting_stack(self, s: DemoSettings) -> None:
        """Prometheus + Alertmanager; the chat secrets are written (0600) the way `make compose-env` does."""
        self.alerting = alerting_stack.AlertingStack(
            s.state_dir, {"serving": [self.urls.serving.removeprefix("http://")],
                          "log_processor": [self.urls.log_processor.removeprefix("http://")],
                          **self._scrape_targets},
            self.mail.address, timings=alerting_stack.DEMO,
            external_labels={"grafana_url": s.grafana_url, "kibana_url": s.kibana_url,
                             "log_processor_url": self.urls.log_processor},
            secrets_dir=self.notifications.write_secret_files(s.state_dir / "secrets"),
            telegram_api_url=self.notifications.url("telegram"),
            prometheus_port=s.ports.prometheus or None, alertmanager_port=s.ports.alertmanager or None,
            prometheus_log=self.log_file("prometheus"), alertmanager_log=self.log_file("alertmanager")).start()

    # --- stop -------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop every part, newest first; safe to call twice and after a failed start."""
        if self.alerting is not None:
            self.alerting.stop()
        for exporter in reversed(self.exporter_processes):
            exporter.stop()
        if self.retention is not None:
            self.retention.stop()
        if self._shipper_metrics_server is not None:
            self._shipper_metrics_server.shutdown()
            self._shipper_metrics_server.server_close()
        self._shipper_stop.set()
        for child in reversed(self._children):
            child.stop()
        if self._shipper_thread is not None:
            self._shipper_thread.join(10)
        if self.notifications is not None:
            self.notifications.stop()
        if self.mail is not None:
            self.mail.stop()
        if self.store is not None:
            self.store.close()
