"""Run the benchmark suites named on the command line (default: all, each once) and print their tables.

A suite is a module with `main(quick: bool)`; what suites share lives in modules that are not suites
(backends, stats, synthetic, workload), so that each suite runs alone and no suite runs another.
"""
from __future__ import annotations

import argparse
import importlib
import sys

SUITES = {
    "serving": "benchmarks.serving",
    "log_processor": "benchmarks.log_processor",
    "shipper": "benchmarks.shipper",
    "incremental": "benchmarks.incremental",
    "shared_read": "benchmarks.shared_read",
    "drift_calibration": "benchmarks.drift_calibration",
    "target_drift": "benchmarks.target_drift",
    "regression_target_drift": "benchmarks.regression_target_drift",
    "estimation": "benchmarks.estimation",
    "tasks": "benchmarks.tasks",
    "scale": "benchmarks.scale",
    "segments": "benchmarks.segments",
    "segments_cost": "benchmarks.segments_cost",
    "evidently_ui": "benchmarks.evidently_ui",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("suites", nargs="*", metavar="suite", help=f"suites to run (default: all): {', '.join(SUITES)}")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    args = parser.parse_args(argv)
    unknown = [name for name in args.suites if name not in SUITES]
    if unknown:
        parser.error(f"no suite named {', '.join(unknown)} (suites: {', '.join(SUITES)})")
    for name in dict.fromkeys(args.suites or SUITES):       # each once, in the order given
        print(f"\n== benchmark: {name} ==", flush=True)
        module = importlib.import_module(SUITES[name])
        module.main(quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
