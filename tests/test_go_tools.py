"""common/go_tools.py: the pins agree with compose, the binaries report their pinned versions, a built
tool is never rebuilt, and a missing Go is a note for the demo but a failure where the tools are required."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from common import go_tools
from tests.conftest import REPO_ROOT, pinned_tool


def compose_image_version(service: str) -> str:
    image = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())["services"][service]["image"]
    return image.rsplit(":v", 1)[1]


def test_the_pins_are_the_versions_compose_runs():
    pins = {pin.binary: pin for pin in go_tools.load_pins()}
    assert set(pins) == {"alertmanager", "amtool", "promtool"}
    alertmanager = compose_image_version("alertmanager")
    assert pins["alertmanager"].reports == pins["amtool"].reports == alertmanager
    assert pins["alertmanager"].version == pins["amtool"].version == f"v{alertmanager}"
    # Prometheus's Go module numbers release 2.x.y as v0.x.y (3.x.y as v0.3xx.y)
    major, minor, patch = compose_image_version("prometheus").split(".")
    assert pins["promtool"].reports == f"{major}.{minor}.{patch}"
    assert pins["promtool"].version == (f"v0.{minor}.{patch}" if major == "2" else f"v0.{major}{int(minor):02d}.{patch}")


@pytest.mark.parametrize("binary", ["alertmanager", "amtool", "promtool"])
def test_each_built_tool_reports_its_pinned_version(binary):
    path = pinned_tool(binary)
    result = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=30)
    assert re.search(rf"^{binary}, version {re.escape(go_tools.pin(binary).reports)} ", result.stdout + result.stderr), result


def write_pins(path: Path, *lines: str) -> Path:
    path.write_text("# binary module version package reports\n" + "".join(line + "\n" for line in lines))
    return path


def test_a_malformed_or_duplicated_pin_is_an_error_naming_the_line(tmp_path):
    with pytest.raises(ValueError, match=r"pins.txt:3: expected `binary module version package reports`"):
        go_tools.load_pins(write_pins(tmp_path / "pins.txt", "a example.com/m v1.0.0 cmd/a 1.0.0", "b example.com/m v1.0.0"))
    with pytest.raises(ValueError, match=r"pins.txt: a pinned more than once"):
        go_tools.load_pins(write_pins(tmp_path / "pins.txt", "a example.com/m v1.0.0 cmd/a 1.0.0",
                                      "a example.com/m v1.1.0 cmd/a 1.1.0"))


def fake_built_tool(tools_dir: Path, pins: Path, binary: str) -> Path:
    """A binary with the stamp a build leaves, for the pin as `pins` has it now."""
    bin_dir = tools_dir / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / binary
    path.write_text("#!/bin/sh\necho fake\n")
    path.chmod(0o755)
    (bin_dir / f".{binary}.pin").write_text(go_tools.pin(binary, pins).line + "\n")
    return path


def test_an_up_to_date_tool_is_used_without_go_and_a_changed_pin_makes_it_stale(tmp_path):
    pins = write_pins(tmp_path / "pins.txt", "demo example.com/m v1.0.0 cmd/demo 1.0.0")
    path = fake_built_tool(tmp_path / "tools", pins, "demo")
    assert go_tools.tool("demo", bin_dir=tmp_path / "tools" / "bin", pins_file=pins) == path
    # nothing to build, so no Go is needed: a Go that does not exist is never called
    assert go_tools.build(tools_dir=tmp_path / "tools", pins_file=pins, go="/nonexistent/go") == [path]
    write_pins(pins, "demo example.com/m v1.0.1 cmd/demo 1.0.1")
    assert go_tools.tool("demo", bin_dir=tmp_path / "tools" / "bin", pins_file=pins) is None


def run_build(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    pins = write_pins(tmp_path / "pins.txt", "demo example.com/m v1.0.0 cmd/demo 1.0.0")
    clean = {k: v for k, v in os.environ.items() if k not in ("CI", "REQUIRE_GO_TOOLS")}
    return subprocess.run([sys.executable, "-m", "common.go_tools", "build", *args, f"--pins={pins}",
                           f"--tools-dir={tmp_path / 'tools'}"], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=60, env={**clean, "GO": "/nonexistent/go", **env})


def test_without_go_the_demo_gets_one_note_saying_what_is_lost(tmp_path):
    result = run_build(tmp_path, "--if-possible")
    assert result.returncode == 0, result.stderr
    assert "GO=/nonexistent/go is not an executable" in result.stdout
    assert "no web UI" in result.stdout and "Debian's Alertmanager" in result.stdout


@pytest.mark.parametrize("env", [{"REQUIRE_GO_TOOLS": "1"}, {"CI": "true"}])
def test_without_go_a_required_build_fails(tmp_path, env):
    result = run_build(tmp_path, "--if-possible", **env)
    assert result.returncode == 1
    assert "GO=/nonexistent/go is not an executable" in result.stderr and "required" in result.stderr


def test_make_go_tools_itself_fails_without_go(tmp_path):
    result = run_build(tmp_path)
    assert result.returncode == 1 and "GO=/nonexistent/go is not an executable" in result.stderr


def test_the_go_caches_stay_under_the_tools_directory(tmp_path):
    env = go_tools.go_env(tmp_path, base={"GOFLAGS": "-mod=mod", "PATH": "/usr/bin"})
    assert all(Path(env[name]).is_relative_to(tmp_path) for name in ("GOPATH", "GOMODCACHE", "GOCACHE"))
    assert env["GOFLAGS"].split() == ["-mod=mod", "-modcacherw", "-buildvcs=false"]
    assert env["GOTOOLCHAIN"] == "local"


def test_the_wrapper_module_carries_the_replace_and_exclude_lines_of_the_tool_s_own_go_mod(tmp_path):
    """promtool's module has replace directives (`go install pkg@version` refuses it): the generated
    wrapper requires it at its pin with the same replace and exclude lines, read from its go.mod."""
    try:
        go = go_tools.find_go()
    except go_tools.GoToolsUnavailable as exc:
        if go_tools.required():
            pytest.fail(str(exc), pytrace=False)
        pytest.skip(str(exc))
    pin = go_tools.pin("promtool")
    runner = go_tools._Go(go, go_tools.TOOLS_DIR, print)   # the project's module cache: no second download
    go_tools._wrapper_go_mod(runner, pin.module, pin.version, tmp_path)
    wrapper = json.loads(runner.run(["mod", "edit", "-json", str(tmp_path / "go.mod")], tmp_path, "reading"))
    info = json.loads(runner.run(["mod", "download", "-json", f"{pin.module}@{pin.version}"], tmp_path, "locating"))
    own = json.loads(runner.run(["mod", "edit", "-json", info["GoMod"]], tmp_path, "reading"))
    assert own["Replace"] and own["Exclude"]     # else this test proves nothing
    assert wrapper["Replace"] == own["Replace"] and wrapper["Exclude"] == own["Exclude"]
    assert wrapper["Require"] == [{"Path": pin.module, "Version": pin.version}]


def test_without_the_module_proxy_the_note_gives_go_s_reason_in_one_line(tmp_path):
    try:
        go = go_tools.find_go()
    except go_tools.GoToolsUnavailable as exc:
        pytest.skip(str(exc))
    result = run_build(tmp_path, "--if-possible", GO=go, GOPROXY="off")
    assert result.returncode == 0, result.stderr
    (note,) = [line for line in result.stdout.splitlines() if line.startswith("note:")]
    assert "module lookup disabled by GOPROXY=off" in note and "no web UI" in note
    assert not (tmp_path / "tools" / "bin" / "demo").exists()
