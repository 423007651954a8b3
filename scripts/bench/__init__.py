"""Benchmark internals (see README.md here): `bench` to scripts/benchmark.py (run from scripts/),
`scripts.bench` to the tests (run from the repository root)."""
