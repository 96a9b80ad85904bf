"""Real Prometheus + Alertmanager started by demo/alerting_stack.py, mailing into demo/mail_sink.py.

Covers what the config checkers cannot: that the rendered stack runs, that a rule's alert travels
Prometheus → Alertmanager → SMTP, that the e-mail template renders monitor, features, scores and
links, that resolved mails are sent, and that a down processor inhibits its own alerts.
"""
from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone

import pytest

from demo.alerting_stack import (FAST, AlertingStack, AlertmanagerProcess, PrometheusProcess,
                                 missing_binaries)
from demo.mail_sink import MailSink
from tests.conftest import free_port

pytestmark = pytest.mark.skipif(bool(missing_binaries()),
                                reason=f"not installed: {', '.join(missing_binaries())} (make system-deps)")

LINKS = {"grafana_url": "http://grafana.test:3000", "kibana_url": "http://kibana.test:5601",
         "log_processor_url": "http://processor.test:8309"}


def poll(check, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} not met after {timeout:.0f}s")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def mail(tmp_path_factory):
    with MailSink(tmp_path_factory.mktemp("mail")) as sink:
        yield sink


@pytest.fixture(scope="module")
def dead_serving() -> str:
    return f"127.0.0.1:{free_port()}"  # nothing listens: ServingDown must fire


@pytest.fixture(scope="module")
def stack(tmp_path_factory, mail, dead_serving):
    with AlertingStack(tmp_path_factory.mktemp("alerting"), {"serving": [dead_serving]}, mail.address,
                       timings=FAST, external_labels=LINKS) as running:
        yield running


def test_prometheus_scrapes_itself_and_alertmanager(stack):
    def healthy():
        jobs = {t["labels"]["job"]: t["health"] for t in stack.prometheus.targets()}
        return jobs.get("prometheus") == "up" and jobs.get("alertmanager") == "up" and jobs
    jobs = poll(healthy, what="prometheus and alertmanager targets up")
    assert jobs["serving"] != "up"


def test_a_rule_alert_travels_to_an_email(stack, mail, dead_serving):
    message = mail.wait_for(lambda m: "ServingDown" in m.subject, timeout=30)
    assert message.subject == f"[FIRING:1] ServingDown instance={dead_serving}"
    assert f"Serving {dead_serving} is down" in message.body
    assert "Runbook:  docs/alerts.md#servingdown" in message.body
    assert "Grafana:       http://grafana.test:3000/d/ml-service-health\n" in message.body
    assert "Drift report" not in message.body  # no monitor, no report link
    assert "grafana_url=" not in message.body  # link labels are not listed as alert labels
    assert f"Query:    {stack.prometheus.url}/graph" in message.body


def _drift_alert(monitor: str, feature: str | None = None, ends_at: datetime | None = None) -> dict:
    labels = {"alertname": "FeatureDrift" if feature else "DataDriftDetected", "severity": "warning",
              "monitor": monitor, "job": "log_processor", "instance": "lp:8309", **LINKS}
    annotations = {"summary": f"Data drift on monitor {monitor}: 66.67% of the feature columns drifted",
                   "description": "Drifted features: acc_rate (ks score 0.0031, threshold 0.05); "
                                  "conv_rate (ks score 1.2e-05, threshold 0.05).",
                   "features": "acc_rate, conv_rate", "runbook_url": "docs/alerts.md#datadriftdetected",
                   "dashboard": "ml-drift"}
    if feature:
        labels.update(feature=feature, method="ks")
        annotations = {"summary": f"Feature {feature} drifted", "description": f"{feature} score 0.001",
                       "features": feature, "runbook_url": "docs/alerts.md#featuredrift"}
    alert = {"labels": labels, "annotations": annotations, "generatorURL": "http://prometheus.test/graph"}
    if ends_at:
        alert["endsAt"] = ends_at.isoformat()
    return alert


def test_email_template_shows_monitor_features_scores_links_and_resolution(stack, mail):
    stack.alertmanager.post_alerts([_drift_alert("tmpl_monitor")])
    firing = mail.wait_for(lambda m: "DataDriftDetected monitor=tmpl_monitor" in m.subject, timeout=20)
    assert firing.subject == "[FIRING:1] DataDriftDetected monitor=tmpl_monitor features: acc_rate, conv_rate"
    body = firing.body
    assert "Monitor:  tmpl_monitor" in body and "Features: acc_rate, conv_rate" in body
    assert "conv_rate (ks score 1.2e-05, threshold 0.05)" in body
    assert "Grafana:       http://grafana.test:3000/d/ml-drift?var-monitor=tmpl_monitor" in body
    assert "Kibana:        http://kibana.test:5601/app/discover" in body
    assert "Drift report:  http://processor.test:8309/report?monitor=tmpl_monitor" in body
    assert f"Alertmanager:  {stack.alertmanager.url}" in body

    stack.alertmanager.post_alerts([_drift_alert("tmpl_monitor", ends_at=datetime.now(timezone.utc)
                                                 - timedelta(seconds=1))])
    resolved = mail.wait_for(lambda m: m.subject.startswith("[RESOLVED] DataDriftDetected monitor=tmpl_monitor"),
                             timeout=20)
    assert "DataDriftDetected is RESOLVED" in resolved.body and "Resolved: " in resolved.body


def test_feature_drift_alerts_of_one_monitor_share_one_email(stack, mail):
    stack.alertmanager.post_alerts([_drift_alert("grouped", "conv_rate"), _drift_alert("grouped", "acc_rate")])
    message = mail.wait_for(lambda m: "FeatureDrift monitor=grouped" in m.subject, timeout=20)
    assert message.subject.startswith("[FIRING:2] FeatureDrift monitor=grouped features: ")
    assert set(message.subject.split("features: ")[1].split(", ")) == {"conv_rate", "acc_rate"}


def test_a_down_processor_inhibits_its_own_staleness_but_not_another_processors(stack, mail):
    def alert(name: str, instance: str, monitor: str | None = None) -> dict:
        labels = {"alertname": name, "severity": "warning", "job": "log_processor", "instance": instance}
        if monitor:
            labels["monitor"] = monitor
        return {"labels": labels, "annotations": {"summary": f"{name} {instance}"}}

    stack.alertmanager.post_alerts([alert("LogProcessorDown", "down:8309"),
                                    alert("MonitoringStale", "down:8309", "behind_down"),
                                    alert("MonitoringStale", "other:8309", "behind_other")])

    def states():
        found = {a["labels"].get("monitor", a["labels"]["alertname"]): a["status"]
                 for a in stack.alertmanager.alerts() if a["labels"]["instance"] in ("down:8309", "other:8309")}
        return found if found.get("behind_down", {}).get("state") == "suppressed" else None

    found = poll(states, what="MonitoringStale of the down processor suppressed")
    assert found["behind_down"]["inhibitedBy"]
    assert found["behind_other"]["state"] == "active"
    mail.wait_for(lambda m: "MonitoringStale monitor=behind_other" in m.subject, timeout=20)
    mail.wait_for(lambda m: "LogProcessorDown" in m.subject and "down:8309" in m.subject, timeout=20)
    assert not [m for m in mail.messages() if "behind_down" in m.subject]


def test_prometheus_with_a_broken_config_fails_with_its_log(tmp_path):
    config = tmp_path / "prometheus.yml"
    config.write_text("scrape_configs:\n  - job_name: x\n    scrape_interval: often\n")
    with pytest.raises(RuntimeError, match=r"(?s)prometheus exited.*often"):
        PrometheusProcess(config, tmp_path / "prom").start()


def test_alertmanager_with_a_broken_config_fails_with_its_log(tmp_path):
    config = tmp_path / "alertmanager.yml"
    config.write_text("route:\n  receiver: nobody\nreceivers: []\n")
    with pytest.raises(RuntimeError, match=r"(?s)alertmanager exited.*nobody"):
        AlertmanagerProcess(config, tmp_path / "am").start()


def test_processes_stop_and_release_their_ports(tmp_path, mail):
    with AlertingStack(tmp_path, {}, mail.address, timings=FAST) as stack:
        ports = [stack.prometheus.port, stack.alertmanager.port]
        urllib.request.urlopen(stack.prometheus.url + "/-/ready", timeout=2).close()
    for port in ports:
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
