"""The I/O of the Evidently UI: each monitor's project and dashboard provisioned at start, then the
snapshots the runners offer, written by a thread of their own, into a workspace directory or a
running `evidently ui` (docs/evidently-ui.md).

The UI is optional and never in the way of a cycle: `offer` appends to a bounded queue and returns
(when the queue is full the oldest snapshot goes, counted as `dropped`); the writer thread provisions
the projects first, then sends the queue's head until it is written. A failure is counted in
`mlmon_snapshot_errors_total{monitor,reason}` and the same snapshot is tried again after a backoff
(doubling up to a minute), so a UI that is down, slow (each request has a timeout) or refusing writes
costs the cycles nothing. After each snapshot the project keeps at most `retention` of them: the
oldest are deleted (through the UI's API, or from the directory).

Two backends, same five operations: `RemoteUI` (HTTP; the secret in the `evidently-secret` header,
as Evidently's own RemoteWorkspace sends it) and `LocalWorkspace` (Evidently's own file layout,
through its LocalState: a `evidently ui --workspace DIR` on the same directory picks new files up).
"""
from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Protocol

from prometheus_client import CollectorRegistry, Counter

from log_processor.export.evidently_dashboard import dashboard, project, project_id
from log_processor.export.evidently_snapshot import snapshot_body
from log_processor.monitors import Monitor
from log_processor.tasks.base import Samples

log = logging.getLogger("log_processor.evidently")

SECRET_HEADER = "evidently-secret"
REASONS = ("unreachable", "timeout", "refused", "rejected", "server_error", "io", "dropped")
BACKOFF_MIN, BACKOFF_MAX = 1.0, 60.0


class WriteError(Exception):
    """A write that did not happen; `reason` is one of REASONS."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class Backend(Protocol):
    where: str
    def ensure_project(self, project: dict[str, Any]) -> None: ...
    def save_dashboard(self, project_id: str, dashboard: dict[str, Any]) -> None: ...
    def add_snapshot(self, project_id: str, body: dict[str, Any]) -> str: ...
    def list_snapshots(self, project_id: str) -> list[str]: ...      # oldest first
    def delete_snapshot(self, project_id: str, snapshot_id: str) -> None: ...


class RemoteUI:
    """A running `evidently ui`, over its HTTP API (the paths Evidently's RemoteWorkspace uses)."""

    def __init__(self, url: str, secret: str | None, timeout: float):
        self.where, self.secret, self.timeout = url.rstrip("/"), secret, timeout

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.where + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.secret is not None:
            request.add_header(SECRET_HEADER, self.secret)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:200].decode(errors="replace")
            reason = ("refused" if exc.code in (401, 403) else "server_error" if exc.code >= 500 else "rejected")
            raise WriteError(reason, f"{method} {path}: HTTP {exc.code} {detail}") from None
        except TimeoutError:
            raise WriteError("timeout", f"{method} {path}: no answer in {self.timeout:g}s") from None
        except (urllib.error.URLError, OSError) as exc:
            cause = getattr(exc, "reason", exc)
            reason = "timeout" if isinstance(cause, TimeoutError) else "unreachable"
            raise WriteError(reason, f"{method} {path}: {cause}") from None
        return json.loads(payload) if payload else None

    def ensure_project(self, project: dict[str, Any]) -> None:
        try:
            self._request("GET", f"/api/projects/{project['id']}/info")
        except WriteError as exc:
            if "HTTP 404" not in str(exc):
                raise
            self._request("POST", "/api/v2/projects", project)

    def save_dashboard(self, project_id: str, dashboard: dict[str, Any]) -> None:
        self._request("POST", f"/api/v2/dashboards/{project_id}", dashboard)

    def add_snapshot(self, project_id: str, body: dict[str, Any]) -> str:
        return str(self._request("POST", f"/api/v2/snapshots/{project_id}", body)["snapshot_id"])

    def list_snapshots(self, project_id: str) -> list[str]:
        listed = self._request("GET", f"/api/projects/{project_id}/snapshots")
        return [s["id"] for s in sorted(listed, key=lambda s: (s["timestamp"], s["id"]))]

    def delete_snapshot(self, project_id: str, snapshot_id: str) -> None:
        self._request("DELETE", f"/api/projects/{project_id}/{snapshot_id}")


class LocalWorkspace:
    """A workspace directory in Evidently's layout, written through Evidently's own LocalState."""

    def __init__(self, path: str):
        from evidently.ui.storage.local.base import LocalState
        self.where = path
        self.state = LocalState(path)

    def _io(self, what: str, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except (OSError, ValueError) as exc:
            raise WriteError("io", f"{what} in {self.where}: {exc}") from None

    def ensure_project(self, project: dict[str, Any]) -> None:
        from evidently.sdk.models import ProjectModel
        self._io("project", lambda: self.state.write_project(ProjectModel.parse_obj(project)))

    def save_dashboard(self, project_id: str, dashboard: dict[str, Any]) -> None:
        from evidently.sdk.models import DashboardModel
        self._io("dashboard", lambda: self.state.write_dashboard(project_id, DashboardModel.parse_obj(dashboard)))

    def add_snapshot(self, project_id: str, body: dict[str, Any]) -> str:
        from evidently.core.serialization import SnapshotModel
        from evidently.legacy.core import new_id
        snapshot_id = str(new_id())     # uuid7: time-ordered, as the UI's own ids
        self._io("snapshot", lambda: self.state.write_snapshot(project_id, snapshot_id, SnapshotModel.parse_obj(body)))
        return snapshot_id

    def list_snapshots(self, project_id: str) -> list[str]:
        if not self.state.location.exists(self.state._snapshot_dir(project_id)):
            return []
        return sorted(str(s) for s in self._io("listing", lambda: self.state.list_snapshots(project_id)))

    def delete_snapshot(self, project_id: str, snapshot_id: str) -> None:
        self._io("deletion", lambda: self.state.delete_snapshot(project_id, snapshot_id))


def backend_for(workspace: str, secret: str | None, timeout: float) -> Backend:
    if workspace.startswith(("http://", "https://")):
        return RemoteUI(workspace, secret, timeout)
    return LocalWorkspace(workspace)


@dataclass
class _Offer:
    monitor: str
    samples: Samples
    at: float
    metadata: dict[str, str]


class SnapshotCounters:
    """mlmon_snapshots_total{monitor} and mlmon_snapshot_errors_total{monitor,reason} (docs/metrics.md)."""

    def __init__(self, registry: CollectorRegistry, monitors: Iterable[str]):
        self.written = Counter("mlmon_snapshots", "Snapshots written to the Evidently UI", ("monitor",),
                               registry=registry)
        self.errors = Counter("mlmon_snapshot_errors", "Evidently UI writes that failed (retried) or snapshots dropped",
                              ("monitor", "reason"), registry=registry)
        for name in monitors:
            self.written.labels(name)
            for reason in REASONS:
                self.errors.labels(name, reason)


class SnapshotWriter:
    """Provisions each monitor's project and dashboard, then writes the offered snapshots, in its own thread."""

    def __init__(self, backend: Backend, monitors: Iterable[Monitor], counters: SnapshotCounters, *,
                 interval: float, retention: int, queue_size: int = 64, clock: Callable[[], float] = time.time):
        self.backend, self.counters = backend, counters
        self.monitors = {m.name: m for m in monitors}
        self.interval, self.retention, self.clock = interval, retention, clock
        self.queue: deque[_Offer] = deque()
        self.queue_size = queue_size
        self.kept: dict[str, deque[str]] = {}       # monitor -> its project's snapshot ids, oldest first
        self.provisioned = False
        self.last_error: str | None = None
        self._due: dict[str, float] = {}
        self._lock = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- the runners' side: never blocks on I/O ------------------------------------------------------
    def due(self, monitor: str, now: float) -> bool:
        """Whether `monitor`'s next snapshot is due at `now`: one per `interval`, give or take the quarter
        of an interval by which the schedule may start a cycle early (schedule.py)."""
        return now >= self._due.get(monitor, float("-inf")) - 0.25 * self.interval

    def offer(self, monitor: str, samples: Samples, at: float, metadata: dict[str, str] | None = None) -> None:
        self._due[monitor] = at + self.interval
        with self._lock:
            if len(self.queue) >= self.queue_size:
                dropped = self.queue.popleft()
                self.counters.errors.labels(dropped.monitor, "dropped").inc()
            self.queue.append(_Offer(monitor, samples, at, metadata or {}))
            self._lock.notify()

    # --- the writer thread ------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="evidently-snapshots", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._lock:
            self._lock.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                if not self.provisioned:
                    self.provision()
                elif not self.write_next():
                    with self._lock:
                        if not self.queue and not self._stop.is_set():
                            self._lock.wait(1.0)
                    continue
                failures = 0
            except WriteError as exc:
                failures += 1
                self.last_error = str(exc)
                log.warning("evidently ui %s: %s (attempt %d)", self.backend.where, exc, failures)
                self._stop.wait(min(BACKOFF_MAX, BACKOFF_MIN * 2 ** min(failures - 1, 8)))

    def provision(self) -> None:
        """Each monitor's project and dashboard, written again (idempotent: same ids, same content); its
        existing snapshots listed for retention."""
        for name, monitor in self.monitors.items():
            pid = project_id(name)
            try:
                self.backend.ensure_project(project(monitor))
                self.backend.save_dashboard(pid, dashboard(monitor))
                self.kept[name] = deque(self.backend.list_snapshots(pid))
            except WriteError as exc:
                self.counters.errors.labels(name, exc.reason).inc()
                raise
        self.provisioned = True
        log.info("evidently ui %s: %d projects and dashboards provisioned", self.backend.where, len(self.monitors))

    def write_next(self) -> bool:
        """Write the queue's head, then apply retention to its project; False when the queue was empty.
        A failed write leaves the snapshot at the head (WriteError)."""
        with self._lock:
            if not self.queue:
                return False
            offer = self.queue[0]
        pid = project_id(offer.monitor)
        try:
            snapshot_id = self.backend.add_snapshot(pid, snapshot_body(offer.monitor, offer.samples, offer.at,
                                                                       offer.metadata))
        except WriteError as exc:
            self.counters.errors.labels(offer.monitor, exc.reason).inc()
            raise
        with self._lock:
            if self.queue and self.queue[0] is offer:
                self.queue.popleft()
        self.counters.written.labels(offer.monitor).inc()
        kept = self.kept.setdefault(offer.monitor, deque())
        kept.append(snapshot_id)
        while len(kept) > self.retention:
            try:
                self.backend.delete_snapshot(pid, kept[0])
            except WriteError as exc:
                self.counters.errors.labels(offer.monitor, exc.reason).inc()
                self.last_error = str(exc)
                break       # tried again after the next snapshot
            kept.popleft()
        return True
