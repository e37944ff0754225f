"""Benchmarks: `python -m bench <name>` on synthetic data, printing figures and ratios."""
