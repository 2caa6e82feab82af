"""Benchmarks of the workbench, each runnable as `python -m workbench.bench.NAME`; they print figures."""
