"""Every link `python -m demo` prints under "where to look" answers 200 with the page it names.

The demo runs as a user starts it (alerts on, short phases), stays up after its story, and each
printed URL is requested while it runs. A link added later without a marker here fails the test.
"""
from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
import yaml

from demo.alerting_stack import missing_binaries
from tests.conftest import REPO_ROOT, pinned_tool
from tests.test_demo_e2e import demo_env, wait_for_line

pytestmark = pytest.mark.slow

FIRST_MONITOR = yaml.safe_load((REPO_ROOT / "log_processor/monitors.yaml").read_text())["monitors"][0]["name"]
# name printed (its start) -> text the page's body holds
MARKERS = {
    "log processor metrics": "mlmon_verdict_available",
    "drift report (Evidently)": f'href="?monitor={FIRST_MONITOR}"',   # the monitors' index (see below)
    "verdict as JSON": f'"{FIRST_MONITOR}"',
    "serving metrics": "serving_requests_total",
    "Elasticsearch API": '"hits"',
    "Prometheus UI": "<title>Prometheus Time Series Collection and Processing Server</title>",
    "Alertmanager UI": "<title>Alertmanager</title>",
    "Evidently UI": "<title>Evidently",     # one per monitor: its project's dashboard (a single-page app)
}
ROW = re.compile(r"^  (\S.*?)\s{2,}(\S+)$")


def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def where_to_look(lines: list[str]) -> dict[str, str]:
    """name -> URL of each printed row that is a URL (the rest are file paths)."""
    start = next(i for i, line in enumerate(lines) if line.startswith("where to look:"))
    rows = {}
    for line in lines[start + 1:]:
        match = ROW.match(line.rstrip("\n"))
        if not match:
            break
        if match.group(2).startswith("http"):
            rows[match.group(1)] = match.group(2)
    return rows


def test_every_link_under_where_to_look_answers_with_its_page(tmp_path):
    if missing_binaries():
        pytest.skip(f"not installed: {', '.join(missing_binaries())} (make system-deps): no alerting links")
    pinned_tool("alertmanager")     # the UI link needs the pinned build (a failure where it is required)
    process = subprocess.Popen([sys.executable, "-m", "demo", "--normal-requests", "100", "--drift-requests", "100"],
                               cwd=REPO_ROOT, env=demo_env(tmp_path), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        lines = wait_for_line(process, "The stack stays up", timeout=600)
        links = where_to_look(lines)
        answers = {name: fetch(url) for name, url in links.items()}
        # the Alertmanager UI is the web app itself, not Debian's page saying there is none
        ui_status, ui_bundle = fetch(links.get("Alertmanager UI", "http://127.0.0.1:9/") + "script.js")
        # the drift report link lists the monitors; each one's Evidently report is one click on
        report = fetch(links.get("drift report (Evidently)", "http://127.0.0.1:9/") + f"?monitor={FIRST_MONITOR}")
        # each Evidently UI link is a project whose snapshots the processor wrote (its API, as the app reads it)
        snapshots = {name: fetch(url.replace("/projects/", "/api/projects/") + "/snapshots")
                     for name, url in links.items() if name.startswith("Evidently UI")}
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
    printed = "".join(lines)
    named = {name: next((key for key in MARKERS if name.startswith(key)), None) for name in links}
    assert None not in named.values(), f"links without a marker here: {named}\n{printed}"
    assert sorted(set(named.values())) == sorted(MARKERS), printed      # every page is printed, the alerting ones too
    assert len(snapshots) == len(yaml.safe_load((REPO_ROOT / "log_processor/monitors.yaml").read_text())["monitors"])
    for name, (status, body) in snapshots.items():
        assert status == 200 and len(json.loads(body)) >= 1, f"{name}: {status} {body[:300]}"
    for name, url in links.items():
        status, body = answers[name]
        assert status == 200, f"{name} {url} answered {status}: {body[:300]}"
        assert MARKERS[named[name]] in body, f"{name} {url}: no {MARKERS[named[name]]!r} in {body[:300]!r}"
    assert links["Prometheus UI"].endswith("/alerts")
    if "/classic/" in links["Prometheus UI"]:   # Debian's server-rendered page lists the alerting rules
        assert "DataDriftDetected" in answers["Prometheus UI"][1]
    assert "does not include a web application" not in answers["Alertmanager UI"][1]
    assert ui_status == 200 and "Elm" in ui_bundle
    assert report[0] == 200 and "Evidently report" in report[1], report[1][:300]
    print("\n".join(f"{answers[name][0]} {url}" for name, url in links.items()))
