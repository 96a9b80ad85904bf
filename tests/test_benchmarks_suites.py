"""The benchmark suite table: every suite imports on its own and has main(quick=...), no module of
benchmarks/ imports a suite (so no suite runs another, and a full `make bench` runs each once), and
every module with a suite's main is in the table."""
from __future__ import annotations

import ast
import json
import subprocess
import sys

import pytest

from benchmarks.__main__ import SUITES
from benchmarks.__main__ import main as bench_main
from tests.conftest import REPO_ROOT

BENCHMARKS = REPO_ROOT / "benchmarks"
SUITE_MODULES = set(SUITES.values())

# Each suite imported in a process where no other benchmarks module was imported before it (the
# import cycle of drift_calibration showed only in that order), then its main's parameters.
IMPORT_EACH_ALONE = """
import importlib, inspect, json, sys
found = {}
for module in sys.argv[1:]:
    for name in [n for n in sys.modules if n == "benchmarks" or n.startswith("benchmarks.")]:
        del sys.modules[name]
    try:
        main = importlib.import_module(module).main
    except Exception as exc:
        found[module] = f"import failed: {type(exc).__name__}: {exc}"
        continue
    found[module] = {name: str(p.kind) for name, p in inspect.signature(main).parameters.items()}
print(json.dumps(found))
"""


def imported_modules(path) -> set[str]:
    """Every module a file imports, at any depth (function-level imports too), as dotted names;
    `from benchmarks import x` counts as benchmarks.x."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module if node.level == 0 else f"benchmarks.{node.module}"
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def test_the_table_names_each_suite_once_and_each_exists():
    assert len(SUITE_MODULES) == len(SUITES)
    for module in SUITE_MODULES:
        assert (BENCHMARKS / f"{module.removeprefix('benchmarks.')}.py").is_file(), module


def test_every_suite_imports_alone_and_has_main_with_quick():
    result = subprocess.run([sys.executable, "-c", IMPORT_EACH_ALONE, *SUITES.values()], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    failed = {module: detail for module, detail in found.items() if isinstance(detail, str)}
    assert not failed, failed
    for module, parameters in found.items():
        assert list(parameters) == ["quick"], f"{module}.main{tuple(parameters)}: expected main(quick)"
        assert parameters["quick"] in ("POSITIONAL_OR_KEYWORD", "KEYWORD_ONLY"), module


@pytest.mark.parametrize("path", sorted(BENCHMARKS.glob("*.py")), ids=lambda p: p.name)
def test_no_module_of_benchmarks_imports_a_suite(path):
    own = f"benchmarks.{path.stem}"
    suites = sorted((imported_modules(path) & SUITE_MODULES) - {own})
    assert not suites, (f"{path.name} imports the suite(s) {', '.join(suites)}: move what they share into a "
                        "module that is not a suite (stats, workload, synthetic, backends)")


def test_every_module_with_a_suite_main_is_in_the_table():
    """A module with a top-level main(quick...) that the table left out would never run in `make bench`."""
    for path in BENCHMARKS.glob("*.py"):
        if path.stem == "__main__":
            continue
        tree = ast.parse(path.read_text(), str(path))
        has_main = any(isinstance(node, ast.FunctionDef) and node.name == "main"
                       and [a.arg for a in node.args.args + node.args.kwonlyargs] == ["quick"] for node in tree.body)
        assert has_main == (f"benchmarks.{path.stem}" in SUITE_MODULES), path.name


def test_an_unknown_suite_is_refused_with_the_known_ones(capsys):
    with pytest.raises(SystemExit) as exit_:
        bench_main(["drift_calibraton", "--quick"])
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    assert "no suite named drift_calibraton" in error and "drift_calibration" in error and "tasks" in error
