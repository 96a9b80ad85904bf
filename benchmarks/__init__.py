"""Benchmarks: `make bench` (all) or `make bench ARGS=serving`. Each prints a table; figures go to docs/benchmarks.md."""
