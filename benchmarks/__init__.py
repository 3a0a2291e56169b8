"""Benchmarks: scripts that print figures and write benchmarks/results/*.json (never timed tests), grouped by the
question they answer (quality/, speed/, reliability/, cluster/) over one shared harness (harness.py).

Each calls `use_local_env()` before Ray or transformers is imported: loopback-only Ray, offline, on the app's
shipped data plane (opt out with GRAPHRAG_SERVE_THROUGHPUT=0), so benchmarks measure what users run."""

from deployments.local_env import use_local_env  # noqa: F401
