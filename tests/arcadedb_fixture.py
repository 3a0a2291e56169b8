"""A real ArcadeDB Bolt server for tests: one per session, on a free loopback port in a temporary folder.

Registered in tests/conftest.py, so any test can ask for `arcadedb_server`, `bolt_uri` or `graph_config`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from deployments.config import GraphConfig
from deployments.graph.embedded.server import EmbeddedBoltServer
from deployments.net import free_port

# The session server's user-query timeout (its reaper's limit): short, so timeout tests stay short.
USER_QUERY_TIMEOUT_S = 3.0


def make_graph_config(path, **overrides) -> GraphConfig:
    """A GraphConfig for an embedded server under `path` on a free port."""
    values = {"path": str(path), "embedded_port": free_port()}
    values.update(overrides)
    return GraphConfig(**values)


@pytest.fixture(scope="session")
def arcadedb_server(tmp_path_factory) -> Iterator[EmbeddedBoltServer]:
    server = EmbeddedBoltServer(
        make_graph_config(tmp_path_factory.mktemp("arcadedb"), user_query_timeout_s=USER_QUERY_TIMEOUT_S)
    )
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
    """The server's config as a GraphService sees it: the URI set (so not `embedded`)."""
    return external_config(arcadedb_server)


def external_config(server: EmbeddedBoltServer) -> GraphConfig:
    """`server`'s config as an external server's: its URI, and the data folder's credentials (root for the app,
    the read-only user for user queries)."""
    creds = server.credentials
    return server.config.model_copy(update={
        "bolt_uri": server.uri, "password": SecretStr(creds.root_password),
        "reader_user": creds.reader[0], "reader_password": SecretStr(creds.reader_password),
    })  # fmt: skip
