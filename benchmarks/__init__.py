"""Benchmarks of `tune` against stock Ray Tune and plain Optuna; not part of the test suite."""
