"""The app builder (graph.py): the deployment graph and each deployment's options, read from the built
Application without starting Ray."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from ray.serve import Application

from deployments.config import AppConfig
from graph import build_app


def deployments_of(app: Application) -> dict:
    """Every deployment of the graph by name, with the bound init arguments (stages appear as Applications)."""
    found, todo = {}, [app]
    while todo:
        deployment = todo.pop()._bound_deployment
        found[deployment.name] = deployment
        todo += [a for a in (*deployment.init_args, *deployment.init_kwargs.values()) if isinstance(a, Application)]
    return found


def test_embedded_default_graph_and_options(tmp_path):
    found = deployments_of(build_app({"data_dir": str(tmp_path), "deployments.graph.num_replicas": 2}))
    assert set(found) == {"Ingress", "Embedder", "Vector", "Graph", "BoltServer", "Reranker", "Chat"}
    ingress = found["Ingress"]
    config = ingress.init_args[0]
    assert isinstance(config, AppConfig) and config.graph.embedded_port == 0  # the BoltServer picks it
    assert ingress.max_ongoing_requests == config.deployments.ingress.max_ongoing_requests == 200
    assert found["Graph"].num_replicas == 2 and found["Vector"].num_replicas == 1
    # Graph replicas ask the BoltServer for its URI (bound to it, not to a port chosen at build time); their index
    # loads the passages' vectors from Vector. The query's vector comes from the ingress: no Embedder handle.
    assert [a._bound_deployment.name for a in found["Graph"].init_args if isinstance(a, Application)] == [
        "BoltServer",
        "Vector",
    ]
    assert found["BoltServer"].init_args[0].path == str(tmp_path / "arcadedb")
    assert found["Embedder"].logging_config["enable_access_log"] is False  # stages log no access lines


def test_external_graph_store_deploys_no_bolt_server(tmp_path):
    found = deployments_of(build_app({"data_dir": str(tmp_path), "graph.bolt_uri": "bolt://neo4j:7687"}))
    assert "BoltServer" not in found and found["Graph"].init_args[0].bolt_uri == "bolt://neo4j:7687"


def test_bad_config_fails_when_the_app_is_built(tmp_path):
    with pytest.raises(ValidationError, match="must be shorter than"):
        build_app({"data_dir": str(tmp_path), "chat.timeout_s": 100})
