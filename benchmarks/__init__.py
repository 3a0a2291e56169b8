"""Benchmarks: scripts that print figures and write benchmarks/results/*.json (never timed tests)."""
import os

# Loopback-only Ray without auth prompts or usage stats, and no hub downloads: the settings every benchmark
# needs before Ray or transformers is imported (tests/conftest.py sets the same for the tests).
LOCAL_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def use_local_env() -> None:
    """The environment above, plus the app's shipped data plane (deployments/throughput.py; opt out with
    GRAPHRAG_SERVE_THROUGHPUT=0): benchmarks measure what users run."""
    for key, value in LOCAL_ENV.items():
        os.environ.setdefault(key, value)
    from deployments.throughput import use_throughput_env

    use_throughput_env()
