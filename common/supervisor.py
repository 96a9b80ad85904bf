"""Child processes for the demo, the tests, the benchmarks and the OpenSearch launcher: start, wait
until ready, stop.

Each child runs in its own process group (session) with stdout and stderr appended to a log file.
The group matters twice: Ctrl-C on the terminal reaches only the parent, which then stops its
children in the order it chooses; and a stop signals the whole group, so workers (gunicorn's, a
JVM's helpers) go with their leader and nothing is left behind. Waiting for readiness fails at
once when the child exits, and every failure names the log file and shows its last lines.

    child = Child("serving", [sys.executable, "-m", "serving"], Path("var/log/serving.log")).start()
    child.wait_ready(lambda: http_ok("http://127.0.0.1:8000/healthz"), 90, "GET /healthz answered")
    ...
    child.stop()
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Mapping, Sequence


class ChildFailed(RuntimeError):
    """A child could not start, exited, or was not ready in time; the message names its log and shows its tail.

    `child` is None where a caller raises it for a step that is not a supervised child (the demo's
    bootstrap run, say)."""

    def __init__(self, message: str, child: "Child | None" = None) -> None:
        super().__init__(message)
        self.child = child
        self.log_file = child.log_file if child is not None else None


class ChildExited(ChildFailed):
    """The child exited before it was ready (`child.returncode` says how)."""


class ChildNotReady(ChildFailed, TimeoutError):
    """The child still runs but was not ready before the deadline."""


class Child:
    """One command in its own process group, logging to `log_file` (appended: a restart keeps the old lines).

    `tail_lines`: how much of the log a failure shows. `die_with_parent`: the child gets SIGTERM
    when the thread that started it dies, even by kill -9 (Linux's PR_SET_PDEATHSIG), for children
    that must not outlive a crashed parent (a JVM holding gigabytes); start it from a thread that
    lives as long as the child should.
    """

    def __init__(self, name: str, argv: Sequence[str], log_file: Path, *,
                 env: Mapping[str, str] | None = None, cwd: Path | None = None,
                 die_with_parent: bool = False, tail_lines: int = 15) -> None:
        self.name = name
        self.argv = [str(arg) for arg in argv]
        self.log_file = Path(log_file)
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.die_with_parent = die_with_parent
        self.tail_lines = tail_lines
        self.process: subprocess.Popen | None = None

    def start(self) -> "Child":
        """Start the command (again, when it has exited); a running child is left as it is."""
        if self.running:
            return self
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=self.env, cwd=self.cwd,
                                            start_new_session=True,
                                            preexec_fn=_die_with_parent if self.die_with_parent else None)
        return self

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        """The exit code (negative: killed by that signal); None while it runs or before it started."""
        return self.process.poll() if self.process is not None else None

    def wait_ready(self, ready: Callable[[], bool], timeout: float, what: str,
                   interval: float = 0.2) -> "Child":
        """Poll `ready` until it holds; ChildExited at once when the child exits, ChildNotReady after `timeout`."""
        wait_until(ready, [self], timeout, what, interval)
        return self

    def tail(self, lines: int | None = None) -> str:
        """The log's last lines (`tail_lines` by default; "(no log)" when it cannot be read)."""
        try:
            text = self.log_file.read_text(errors="replace")
            return "\n".join(text.splitlines()[-(lines or self.tail_lines):])
        except OSError:
            return "(no log)"

    def signal(self, signum: int) -> None:
        """Send `signum` to the child's whole process group (nothing when it is gone)."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM to the group, SIGKILL to whatever is left of it after `grace` seconds."""
        if self.process is None:
            return
        self.signal(signal.SIGTERM)
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            pass
        # The leader may have exited while its workers linger: make sure the group is empty.
        self.kill()

    def kill(self) -> None:
        """SIGKILL to the group at once, as in a crash."""
        if self.process is None:
            return
        self.signal(signal.SIGKILL)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            pass

    def __enter__(self) -> "Child":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def wait_until(ready: Callable[[], bool], children: Sequence[Child], timeout: float, what: str,
               interval: float = 0.2) -> None:
    """Poll `ready` until it holds, while every one of `children` runs.

    One that exits raises ChildExited naming it and its log at once, rather than after the whole
    timeout; past `timeout`, ChildNotReady names the first child's log.
    """
    if not children:
        raise ValueError(f"wait_until({what!r}) needs at least one child to watch")
    deadline = time.monotonic() + timeout
    while True:
        for child in children:
            if not child.running:
                raise ChildExited(f"{child.name} exited with code {child.returncode} before {what}; "
                                  f"see {child.log_file}:\n{child.tail()}", child)
        if ready():
            return
        if time.monotonic() >= deadline:
            first = children[0]
            raise ChildNotReady(f"{first.name} not ready ({what}) after {timeout:g}s; "
                                f"see {first.log_file}:\n{first.tail()}", first)
        time.sleep(interval)


def http_ok(url: str, accept_status: Callable[[int], bool] = lambda status: status < 500,
            timeout: float = 2.0) -> bool:
    """True when `url` answers with an accepted HTTP status (default: anything but 5xx)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return accept_status(response.status)
    except urllib.error.HTTPError as exc:
        return accept_status(exc.code)
    except (urllib.error.URLError, OSError):
        return False


def _die_with_parent() -> None:  # runs in the child between fork and exec
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
