"""The real app over HTTP for integration tests: Ray, Serve and the whole deployment graph on loopback.

The same start and stop as the benchmarks' (`benchmarks.harness.local_app`): a free loopback port, HAProxy's
listeners on free ports, Serve and Ray stopped afterwards, also when the block fails."""

from benchmarks.harness import local_app

__all__ = ["local_app"]
