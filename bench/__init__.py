"""Benchmark: this service against `boto3 upload_file` and the seed design (PD-013).

Run it with `python -m bench` (or `scripts/bench`); `docs/benchmarks.md` explains the output.
"""
