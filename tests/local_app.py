"""The real app over HTTP for integration tests: Ray, Serve and the whole deployment graph on loopback."""
from collections.abc import Iterator
from contextlib import contextmanager

import ray
from ray import serve

from deployments.config import free_port
from graph import start_local


@contextmanager
def local_app(args: dict, name: str) -> Iterator[str]:
    """Starts the app on a free loopback port and yields its base URL; stops Serve and Ray afterwards, also when
    the block fails."""
    base = start_local(args, port=free_port(), name=name)
    try:
        yield base
    finally:
        serve.shutdown()
        ray.shutdown()
