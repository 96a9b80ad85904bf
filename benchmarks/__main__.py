"""Run the benchmark suites named on the command line (default: all) and print their tables."""
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
    "target_drift": "benchmarks.target_drift",       # also part of drift_calibration
    "regression_target_drift": "benchmarks.regression_target_drift",
    "estimation": "benchmarks.estimation",
    "tasks": "benchmarks.tasks",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("suites", nargs="*", help="suites to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    args = parser.parse_args(argv)
    for name in args.suites or list(SUITES):
        print(f"\n== benchmark: {name} ==", flush=True)
        module = importlib.import_module(SUITES[name])
        module.main(quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
