"""common.supervisor with real child processes: ready, dead before ready, deaf to SIGTERM, with grandchildren."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from common.supervisor import Child, ChildExited, ChildFailed, ChildNotReady, http_ok, wait_until
from tests.conftest import REPO_ROOT, free_port


def python(code: str) -> list[str]:
    return [sys.executable, "-u", "-c", code]


def gone(pid: int, timeout: float = 20.0) -> bool:
    """True once `pid` no longer exists or is a zombie (reaped by its new parent soon after)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/status") as status:
                if "zombie" in status.read():
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


def log_line(path: Path, prefix: str, timeout: float = 20.0) -> str:
    """The first line of the log starting with `prefix`, waiting for the child to write it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            for line in path.read_text().splitlines():
                if line.startswith(prefix):
                    return line.removeprefix(prefix)
        time.sleep(0.05)
    raise AssertionError(f"no line {prefix!r} in {path}")


def test_a_child_that_becomes_ready_is_served_and_stopped(tmp_path):
    port = free_port()
    log = tmp_path / "logs" / "http.log"
    child = Child("http", [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)], log,
                  cwd=tmp_path)
    with child:
        child.wait_ready(lambda: http_ok(f"http://127.0.0.1:{port}/"), 30, "GET / answered")
        assert child.running and http_ok(f"http://127.0.0.1:{port}/", lambda status: status == 200)
        pid = child.pid
        assert os.getpgid(pid) == pid, "the child leads a process group of its own"
    assert not child.running and child.returncode is not None
    assert not http_ok(f"http://127.0.0.1:{port}/")
    assert "GET / HTTP" in log.read_text(), "the child's output went to its log file"


def test_a_child_that_dies_before_ready_names_its_log_and_shows_its_tail(tmp_path):
    log = tmp_path / "dying.log"
    lines = "; ".join(f"print('line {i}')" for i in range(30))
    child = Child("dying", python(f"{lines}; print('bad config: port taken'); raise SystemExit(3)"), log).start()
    with pytest.raises(ChildExited) as failure:
        child.wait_ready(lambda: False, 60, "it listened")
    message = str(failure.value)
    assert message.startswith(f"dying exited with code 3 before it listened; see {log}:\n")
    assert message.endswith("bad config: port taken")
    assert message.splitlines()[1:] == [f"line {i}" for i in range(16, 30)] + ["bad config: port taken"], \
        "the log's last 15 lines"
    assert isinstance(failure.value, RuntimeError) and failure.value.log_file == log


def test_a_child_never_ready_fails_after_the_timeout_and_is_left_to_the_caller(tmp_path):
    log = tmp_path / "slow.log"
    with Child("slow", python("import time; print('still warming up', flush=True); time.sleep(600)"), log) as child:
        log_line(log, "still warming up")
        with pytest.raises(ChildNotReady) as failure:
            child.wait_ready(lambda: False, 0.5, "GET /healthz answered")
        assert str(failure.value) == f"slow not ready (GET /healthz answered) after 0.5s; see {log}:\nstill warming up"
        assert isinstance(failure.value, TimeoutError) and isinstance(failure.value, ChildFailed)
        assert child.running
    assert not child.running


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace_period(tmp_path):
    log = tmp_path / "deaf.log"
    child = Child("deaf", python("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                                 "print('ignoring', flush=True); time.sleep(600)"), log).start()
    log_line(log, "ignoring")        # the handler is in place
    child.stop(grace=0.5)
    assert child.returncode == -signal.SIGKILL


def test_a_child_that_exits_on_sigterm_is_not_killed(tmp_path):
    child = Child("polite", python("import time; print('up', flush=True); time.sleep(600)"), tmp_path / "p.log").start()
    log_line(child.log_file, "up")
    child.stop(grace=30)
    assert child.returncode == -signal.SIGTERM


def test_stopping_a_child_takes_its_whole_group_along(tmp_path):
    """The leader exits on SIGTERM while its worker ignores it (a gunicorn worker mid-request): the
    group's SIGKILL after the grace period takes the worker too."""
    worker = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
    leader = (f"import subprocess, sys, time; w = subprocess.Popen([sys.executable, '-c', {worker!r}]); "
              "print(f'worker {w.pid}', flush=True); time.sleep(600)")
    child = Child("leader", python(leader), tmp_path / "leader.log").start()
    worker_pid = int(log_line(child.log_file, "worker "))
    assert os.getpgid(worker_pid) == child.pid
    child.stop(grace=2)
    assert child.returncode == -signal.SIGTERM
    assert gone(worker_pid), f"worker {worker_pid} outlived its group's stop"


def test_a_child_can_be_started_again_after_it_exited_and_its_log_keeps_both_runs(tmp_path):
    log = tmp_path / "again.log"
    child = Child("again", python("import os; print('run', os.getpid())"), log)
    for _ in range(2):
        child.start().process.wait(30)
    assert [line.split()[0] for line in log.read_text().splitlines()] == ["run", "run"]
    assert child.returncode == 0


def test_wait_until_names_the_child_that_died_among_several(tmp_path):
    alive = Child("alive", python("import time; time.sleep(600)"), tmp_path / "alive.log").start()
    dead = Child("node-2", python("print('out of memory'); raise SystemExit(137)"), tmp_path / "node-2.log").start()
    try:
        with pytest.raises(ChildExited, match=r"^node-2 exited with code 137 before the cluster formed; "
                                              rf"see {tmp_path / 'node-2.log'}:\nout of memory$"):
            wait_until(lambda: False, [alive, dead], 60, "the cluster formed")
        assert alive.running
    finally:
        alive.stop()


def test_die_with_parent_takes_the_child_along_when_its_parent_is_killed(tmp_path):
    script = ("import sys, time; from pathlib import Path; from common.supervisor import Child;"
              f"c = Child('orphan', [sys.executable, '-c', 'import time; time.sleep(600)'], Path({str(tmp_path / 'o.log')!r}),"
              " die_with_parent=True).start(); print(c.pid, flush=True); time.sleep(600)")
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        orphan = int(parent.stdout.readline())
        assert os.path.exists(f"/proc/{orphan}")
    finally:
        parent.kill()
        parent.wait(10)
    assert gone(orphan), f"child {orphan} outlived the process that started it"


def test_http_ok_takes_a_refused_connection_and_a_5xx_as_not_ready(tmp_path):
    assert not http_ok(f"http://127.0.0.1:{free_port()}/")
    port = free_port()
    server = ("import http.server\nclass H(http.server.BaseHTTPRequestHandler):\n"
              "    def do_GET(self):\n        self.send_response(503 if self.path == '/down' else 404); self.end_headers()\n"
              f"http.server.HTTPServer(('127.0.0.1', {port}), H).serve_forever()\n")
    with Child("http", python(server), tmp_path / "h.log") as child:
        child.wait_ready(lambda: http_ok(f"http://127.0.0.1:{port}/up"), 30, "it answered")
        assert http_ok(f"http://127.0.0.1:{port}/missing")                  # 404: up, by default
        assert not http_ok(f"http://127.0.0.1:{port}/missing", lambda status: status == 200)
        assert not http_ok(f"http://127.0.0.1:{port}/down")                 # 503


def test_a_child_without_a_log_directory_gets_one_and_a_stop_before_start_is_harmless(tmp_path):
    child = Child("never", python("pass"), tmp_path / "a" / "b" / "never.log")
    child.stop()
    assert child.pid is None and child.returncode is None and not child.running
    assert child.tail() == "(no log)"
    child.start().process.wait(30)
    assert (tmp_path / "a" / "b" / "never.log").exists()
