"""The real app over HTTP for integration tests: Ray, Serve and the whole deployment graph on loopback."""
import os
from collections.abc import Iterator
from contextlib import contextmanager

import ray
from ray import serve

from benchmarks.ray_nodes import free_port as quiet_port
from deployments.net import free_port
from graph import start_local


@contextmanager
def local_app(args: dict, name: str) -> Iterator[str]:
    """Starts the app on a free loopback port and yields its base URL; stops Serve and Ray afterwards, also when
    the block fails."""
    # HAProxy's stats and metrics listeners default to 8404 and 9101, which another Serve on this machine may hold
    # (its HAProxy then fails to start); Ray reads these when it starts, below.
    if not ray.is_initialized():
        os.environ["RAY_SERVE_HAPROXY_STATS_PORT"] = str(quiet_port())
        os.environ["RAY_SERVE_HAPROXY_METRICS_PORT"] = str(quiet_port())
    base = start_local(args, port=free_port(), name=name)
    try:
        yield base
    finally:
        serve.shutdown()
        ray.shutdown()
