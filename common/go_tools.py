"""The Prometheus tools at the versions compose runs, built from the Go module proxy into var/tools/bin.

prometheus/go-tools.txt pins them (Alertmanager and amtool 0.28.1, promtool 2.55.1). Each is built
in a small generated wrapper module under var/tools/src/ that requires the tool's module at its pin
and carries that module's own replace and exclude directives, read from its go.mod (`go install
pkg@version` refuses a module with replace directives, as Prometheus's has). The binaries report
their version (`--version`, via the -X ldflag Prometheus's own builds set). Go's paths (GOPATH,
GOMODCACHE, GOCACHE) are under var/tools/go, so nothing lands outside the checkout and `make clean`
removes it all. A binary is rebuilt only when its pin changes (its stamp beside it differs).

Not built here: the Prometheus server. The module zip has no web UI (its assets are built with npm
outside the module), so the demo keeps Debian's Prometheus, whose UI is embedded.

    python -m common.go_tools build                 # make go-tools: a failure is an error
    python -m common.go_tools build --if-possible   # make demo / make test: a note, unless required
    python -m common.go_tools status

Required (REQUIRE_GO_TOOLS=1, or CI=true as in .ci/run): a tool that cannot be built, or is missing
when a test asks for it, is a failure instead of a fallback to Debian's binaries.
"""
from __future__ import annotations

import argparse
import json
import os
import selectors
import shutil
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

REPO_ROOT = Path(__file__).resolve().parent.parent
PINS_FILE = REPO_ROOT / "prometheus" / "go-tools.txt"
TOOLS_DIR = REPO_ROOT / "var" / "tools"
BIN_DIR = TOOLS_DIR / "bin"
VERSION_LDFLAG = "github.com/prometheus/common/version.Version"
# What the demo and tests lose when they fall back to Debian's binaries (one line, said once).
FALLBACK_LOSS = ("Debian's Alertmanager 0.25 runs instead: no web UI, the *_file secrets it cannot read are "
                 "inlined into a 0600 rendered copy, and the configs are checked at Debian's versions, not compose's")


class GoToolsUnavailable(RuntimeError):
    """A pinned tool cannot be built here; the message says what is missing."""


@dataclass(frozen=True)
class Pin:
    binary: str     # the file name under var/tools/bin
    module: str     # Go module path
    version: str    # module version (v0.55.1)
    package: str    # the main package inside the module (cmd/promtool)
    reports: str    # what `binary --version` says (2.55.1); the version ldflag

    @property
    def line(self) -> str:
        return f"{self.binary} {self.module} {self.version} {self.package} {self.reports}"


def load_pins(path: Path = PINS_FILE) -> list[Pin]:
    pins = []
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        text = raw.split("#", 1)[0].split()
        if not text:
            continue
        if len(text) != 5:
            raise ValueError(f"{path}:{number}: expected `binary module version package reports`, got {raw.strip()!r}")
        pins.append(Pin(*text))
    names = [pin.binary for pin in pins]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"{path}: {', '.join(duplicates)} pinned more than once")
    return pins


def pin(binary: str, pins_file: Path = PINS_FILE) -> Pin:
    for candidate in load_pins(pins_file):
        if candidate.binary == binary:
            return candidate
    raise KeyError(f"{pins_file}: no pin for {binary}")


def required(env: Mapping[str, str] = os.environ) -> bool:
    """Whether a missing tool is a failure (CI) rather than a fallback."""
    return env.get("REQUIRE_GO_TOOLS", "") not in ("", "0") or env.get("CI", "").lower() == "true"


def _stamp(bin_dir: Path, binary: str) -> Path:
    return bin_dir / f".{binary}.pin"


def tool(binary: str, *, bin_dir: Path = BIN_DIR, pins_file: Path = PINS_FILE) -> Path | None:
    """var/tools/bin/<binary> when it was built at its current pin; None otherwise."""
    path = bin_dir / binary
    try:
        up_to_date = _stamp(bin_dir, binary).read_text().strip() == pin(binary, pins_file).line
    except (OSError, KeyError):
        return None
    return path if up_to_date and os.access(path, os.X_OK) else None


def find_go(env: Mapping[str, str] = os.environ) -> str:
    """$GO when set, else `go` on PATH or the official tarball's /usr/local/go/bin/go;
    GoToolsUnavailable saying how to get Go when there is none."""
    if env.get("GO"):
        if not os.access(env["GO"], os.X_OK):
            raise GoToolsUnavailable(f"GO={env['GO']} is not an executable")
        return env["GO"]
    found = shutil.which("go", path=env.get("PATH")) or next(
        (path for path in ("/usr/local/go/bin/go",) if os.access(path, os.X_OK)), None)
    if found is None:
        raise GoToolsUnavailable("Go not found (put `go` on PATH, set GO, or install it in /usr/local/go: "
                                 "https://go.dev/dl/)")
    return found


def go_env(tools_dir: Path = TOOLS_DIR, base: Mapping[str, str] = os.environ) -> dict[str, str]:
    """Go's caches under `tools_dir`/go; -modcacherw so `rm -rf var` can delete the module cache."""
    go_dir = tools_dir / "go"
    flags = " ".join(flag for flag in (base.get("GOFLAGS", ""), "-modcacherw", "-buildvcs=false") if flag)
    return {**base, "GOPATH": str(go_dir / "path"), "GOMODCACHE": str(go_dir / "mod"),
            "GOCACHE": str(go_dir / "cache"), "GOFLAGS": flags, "GOTOOLCHAIN": "local", "CGO_ENABLED": "0",
            "GO111MODULE": "on"}


class _Go:
    """Runs go commands with the project's caches, streaming progress lines to `say`."""

    def __init__(self, go: str, tools_dir: Path, say: Callable[[str], None]):
        self.go, self.env, self.say = go, go_env(tools_dir), say

    def run(self, args: list[str], cwd: Path, what: str) -> str:
        """stdout of `go args`; GoToolsUnavailable with the output's tail when it fails."""
        started = last_note = time.monotonic()
        downloads, tail, out = 0, deque(maxlen=25), []
        process = subprocess.Popen([self.go, *args], cwd=cwd, env=self.env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        selector = selectors.DefaultSelector()
        selector.register(process.stdout, selectors.EVENT_READ, out)
        selector.register(process.stderr, selectors.EVENT_READ, tail)
        open_streams = 2
        while open_streams:
            for key, _ in selector.select(timeout=5):
                line = key.fileobj.readline()
                if not line:
                    selector.unregister(key.fileobj)
                    open_streams -= 1
                    continue
                key.data.append(line)
                downloads += key.data is tail and line.startswith("go: downloading")
            if time.monotonic() - last_note >= 30:
                last_note = time.monotonic()
                self.say(f"  ... {what}: {time.monotonic() - started:.0f}s"
                         + (f", {downloads} modules downloaded" if downloads else ""))
        code = process.wait()
        if code != 0:
            said = "".join(tail).rstrip() or _json_error("".join(out)) or "".join(out[-25:]).rstrip()
            raise GoToolsUnavailable(f"`go {' '.join(args)}` failed ({what}, exit {code}):\n{said}")
        return "".join(out)


def _json_error(text: str) -> str | None:
    """The "Error" of a -json command's output (go mod download -json reports failures there)."""
    try:
        return json.loads(text).get("Error")
    except (ValueError, AttributeError):
        return None


def _wrapper_go_mod(go: _Go, module: str, version: str, directory: Path) -> None:
    """`directory`/go.mod requiring module@version with the module's own replace and exclude lines."""
    info = json.loads(go.run(["mod", "download", "-json", f"{module}@{version}"], directory, f"downloading {module}@{version}"))
    if info.get("Error"):
        raise GoToolsUnavailable(f"{module}@{version}: {info['Error']}")
    own = json.loads(go.run(["mod", "edit", "-json", info["GoMod"]], directory, "reading its go.mod"))
    (directory / "go.mod").write_text(
        f"// Generated by common/go_tools.py: requires {module}@{version} with the replace and exclude\n"
        f"// directives of that module's own go.mod, which `go install pkg@version` would refuse.\n"
        f"module gotools.local/wrapper\n\ngo {own.get('Go') or '1.21'}\n\nrequire {module} {version}\n")
    (directory / "go.sum").unlink(missing_ok=True)
    edits = []
    for replace in own.get("Replace") or []:
        old, new = replace["Old"], replace["New"]
        edits.append("-replace=" + _at(old) + "=" + _at(new))
    edits += [f"-exclude={exclude['Path']}@{exclude['Version']}" for exclude in own.get("Exclude") or []]
    if edits:
        go.run(["mod", "edit", *edits], directory, "writing the wrapper go.mod")


def _at(module: Mapping[str, str]) -> str:
    return f"{module['Path']}@{module['Version']}" if module.get("Version") else module["Path"]


def _version_output(binary: Path) -> str:
    result = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30)
    return result.stdout + result.stderr


def build(*, tools_dir: Path = TOOLS_DIR, pins_file: Path = PINS_FILE, say: Callable[[str], None] = print,
          go: str | None = None) -> list[Path]:
    """Every pinned tool in `tools_dir`/bin, building only those whose pin changed; their paths."""
    bin_dir = tools_dir / "bin"
    pins = load_pins(pins_file)
    stale = [p for p in pins if tool(p.binary, bin_dir=bin_dir, pins_file=pins_file) is None]
    if not stale:
        return [bin_dir / p.binary for p in pins]
    go = go or find_go()
    runner = _Go(go, tools_dir, say)
    bin_dir.mkdir(parents=True, exist_ok=True)
    groups: dict[tuple[str, str], list[Pin]] = {}
    for p in stale:
        groups.setdefault((p.module, p.version), []).append(p)
    for (module, version), group in groups.items():
        started = time.monotonic()
        names = " and ".join(p.binary for p in group)
        say(f"go-tools: building {names} from {module}@{version} into {bin_dir} "
            f"(first time: downloads and compiles, a few minutes)")
        directory = _wrapper_dir(tools_dir, module, version)
        directory.mkdir(parents=True, exist_ok=True)
        _wrapper_go_mod(runner, module, version, directory)
        packages = [f"{module}/{p.package}@{version}" for p in group]
        runner.run(["get", *packages], directory, f"resolving {names}")
        for p in group:
            target, partial = bin_dir / p.binary, bin_dir / f".{p.binary}.partial"
            runner.run(["build", "-trimpath", "-ldflags", f"-s -w -X {VERSION_LDFLAG}={p.reports}",
                        "-o", str(partial), f"{module}/{p.package}"], directory, f"compiling {p.binary}")
            reported = _version_output(partial)
            if f"version {p.reports}" not in reported:
                raise GoToolsUnavailable(f"{p.binary} built from {module}@{version} reports {reported.strip()[:200]!r}, "
                                         f"not version {p.reports}")
            partial.replace(target)
            _stamp(bin_dir, p.binary).write_text(p.line + "\n")
        say(f"go-tools: {names} {group[0].reports} built in {time.monotonic() - started:.0f}s")
    _trim_caches(tools_dir)
    wrappers = {_wrapper_dir(tools_dir, p.module, p.version) for p in pins}
    for old in (tools_dir / "src").iterdir():
        if old not in wrappers:
            shutil.rmtree(old, ignore_errors=True)
    return [bin_dir / p.binary for p in pins]


def _wrapper_dir(tools_dir: Path, module: str, version: str) -> Path:
    return tools_dir / "src" / f"{module.rsplit('/', 1)[-1]}@{version}"


def _trim_caches(tools_dir: Path) -> None:
    """Drop Go's build cache and the unpacked module sources (~3 GB for these three tools); the
    module zips stay (~0.3 GB), so a changed pin re-downloads only what changed. The binaries and
    their stamps are what makes a re-run a no-op."""
    go_dir = tools_dir / "go"
    shutil.rmtree(go_dir / "cache", ignore_errors=True)
    modules = go_dir / "mod"
    for entry in modules.iterdir() if modules.is_dir() else ():
        if entry.name != "cache":
            shutil.rmtree(entry, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m common.go_tools", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build_cmd = sub.add_parser("build", help="build the pinned tools into var/tools/bin (idempotent)")
    build_cmd.add_argument("--if-possible", action="store_true",
                           help="a tool that cannot be built is a note, not an error (unless REQUIRE_GO_TOOLS=1 or CI=true)")
    status = sub.add_parser("status", help="each pinned tool: built at its pin, or missing")
    for command in (build_cmd, status):
        command.add_argument("--pins", type=Path, default=PINS_FILE, help=argparse.SUPPRESS)
        command.add_argument("--tools-dir", type=Path, default=TOOLS_DIR, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.command == "status":
        for p in load_pins(args.pins):
            path = tool(p.binary, bin_dir=args.tools_dir / "bin", pins_file=args.pins)
            print(f"{p.binary:14} {p.reports:8} {path or 'not built (make go-tools)'}")
        return 0
    try:
        build(tools_dir=args.tools_dir, pins_file=args.pins)
    except GoToolsUnavailable as exc:
        if args.if_possible and not required():
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            reason = lines[0] if len(lines) == 1 else f"{lines[0].split(' failed')[0]} failed: {lines[-1]}"
            print(f"note: the Prometheus tools at compose's versions cannot be built here ({reason}); "
                  f"{FALLBACK_LOSS}.", flush=True)
            return 0
        print(f"go-tools: {exc}" + ("\n(required: REQUIRE_GO_TOOLS=1 or CI=true)" if required() else ""),
              file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
