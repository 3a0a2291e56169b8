"""The environment of a Ray this project starts on one machine: loopback only, no auth prompt or usage stats, no
model-hub downloads, and (unless opted out) Ray Serve's fast data plane. Set it before Ray or transformers is
imported: Ray and its workers read it at start."""

import os

from deployments.throughput import use_throughput_env

LOCAL_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # else Ray binds a non-loopback address
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def use_local_env(fast_path: bool = True) -> None:
    """Sets what is not set yet; `fast_path`: also Ray Serve's fast data plane (deployments/throughput.py)."""
    for key, value in LOCAL_ENV.items():
        os.environ.setdefault(key, value)
    if fast_path:
        use_throughput_env()
