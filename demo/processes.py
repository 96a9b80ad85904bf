"""Child processes of the embedded stack, each in its own process group, logging to var/log/.

Own process groups matter twice: Ctrl-C on the terminal reaches only the runner, which then stops
the children in order; and stopping a child signals its whole group, so gunicorn's workers go
with their master and nothing is left behind.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Mapping, Sequence


class ChildFailed(RuntimeError):
    """A child exited or never became ready; the message points at its log file."""


class Child:
    def __init__(self, name: str, argv: Sequence[str], log_file: Path,
                 env: Mapping[str, str] | None = None, cwd: Path | None = None) -> None:
        self.name = name
        self.log_file = Path(log_file)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=dict(env) if env else None,
                                            cwd=cwd, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def wait_ready(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll `check` until it holds; fail early, naming the log, when the child dies."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise ChildFailed(f"{self.name} exited with code {self.process.returncode} before "
                                  f"{what}; see {self.log_file}:\n{self.tail()}")
            if check():
                return
            time.sleep(0.2)
        raise ChildFailed(f"{self.name} not ready ({what}) after {timeout:.0f}s; see {self.log_file}:\n{self.tail()}")

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM to the whole group, SIGKILL to what is left after `grace` seconds."""
        self._signal_group(signal.SIGTERM)
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            pass
        # The leader may be gone while workers linger: make sure the group is empty.
        self._signal_group(signal.SIGKILL)
        try:
            self.process.wait(2)
        except subprocess.TimeoutExpired:
            pass

    def _signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.process.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def http_ok(url: str, accept_status: Callable[[int], bool] = lambda s: s < 500) -> bool:
    """True when `url` answers with an accepted HTTP status (default: anything but 5xx)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return accept_status(response.status)
    except urllib.error.HTTPError as exc:
        return accept_status(exc.code)
    except (urllib.error.URLError, OSError):
        return False
