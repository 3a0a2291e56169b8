"""A real ArcadeDB Bolt server for tests: one per session, on a free loopback port in a temporary folder.

Registered in tests/conftest.py, so any test can ask for `arcadedb_server`, `bolt_uri` or `graph_config`.
"""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from deployments.graph.bolt_server import EmbeddedBoltServer
from deployments.config import GraphConfig, free_port

TEST_PASSWORD = "test-graph-password"


def make_graph_config(path, **overrides) -> GraphConfig:
    """A GraphConfig for an embedded server under `path` on a free port."""
    values = {"path": str(path), "embedded_port": free_port(), "password": SecretStr(TEST_PASSWORD)}
    values.update(overrides)
    return GraphConfig(**values)


@pytest.fixture(scope="session")
def arcadedb_server(tmp_path_factory) -> Iterator[EmbeddedBoltServer]:
    server = EmbeddedBoltServer(make_graph_config(tmp_path_factory.mktemp("arcadedb")))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def bolt_uri(arcadedb_server: EmbeddedBoltServer) -> str:
    return arcadedb_server.uri


@pytest.fixture(scope="session")
def graph_config(arcadedb_server: EmbeddedBoltServer) -> GraphConfig:
    """The server's config as a GraphService sees it: the URI set (so not `embedded`), same credentials."""
    return arcadedb_server.config.model_copy(update={"bolt_uri": arcadedb_server.uri})
