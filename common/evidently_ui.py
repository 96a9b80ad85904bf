"""`evidently ui` (the Evidently UI service of the pinned evidently wheel) as a child process on
loopback: the demo's dashboard of drift over time and the tests' real UI (docs/evidently-ui.md).

Telemetry off (DO_NOT_TRACK=1). With a secret, writes need it in the `evidently-secret` header and
reads stay anonymous; the secret reaches the UI in its environment (EVIDENTLY_SECRET), never on its
command line. It answers GET /api/version once up (about 4 s on an idle 2-core machine).
"""
from __future__ import annotations

import json
import os
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from common.net import free_port
from common.supervisor import Child

DEFAULT_PORT = 8001


@dataclass
class EvidentlyUI:
    workspace: Path
    log_file: Path
    port: int = 0                       # 0: DEFAULT_PORT when free, else any free port
    secret: str | None = field(default=None, repr=False)
    host: str = "127.0.0.1"
    child: Child | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 60.0) -> "EvidentlyUI":
        return self.launch().wait(timeout)

    def launch(self) -> "EvidentlyUI":
        """Start the process and return at once (`wait` for it to answer)."""
        if not self.port:
            self.port = DEFAULT_PORT if port_free(self.host, DEFAULT_PORT) else free_port(self.host)
        self.workspace.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "DO_NOT_TRACK": "1"}
        env.pop("EVIDENTLY_SECRET", None)
        if self.secret is not None:
            env["EVIDENTLY_SECRET"] = self.secret
        executable = Path(sys.executable).with_name("evidently")
        self.child = Child("evidently-ui", [executable, "ui", "--host", self.host, "--port", str(self.port),
                                            "--workspace", str(self.workspace)], self.log_file, env=env).start()
        return self

    def wait(self, timeout: float = 60.0) -> "EvidentlyUI":
        """Until GET /api/version answers (ChildExited at once if the process exits)."""
        assert self.child is not None, "launch() first"
        self.child.wait_ready(self.ready, timeout, f"GET {self.url}/api/version")
        return self

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/api/version", timeout=2) as response:
                return json.loads(response.read()).get("application") == "Evidently UI"
        except (OSError, ValueError):
            return False

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop()

    def __enter__(self) -> "EvidentlyUI":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def port_free(host: str, port: int) -> bool:
    import socket
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True
