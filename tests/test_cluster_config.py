"""The multi-node config as `serve deploy` reads it, without Ray running: the deployments that own or reach the
embedded stores are pinned to the `graphrag_store` node, the stateless stages are not, every node gets a proxy.
The cluster itself is exercised by `python -m benchmarks.cluster.two_nodes` (configs/README.md, "Running on a Ray cluster")."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from benchmarks.cluster.two_nodes import cluster_config
from deployments.config import AppConfig

ROOT = Path(__file__).resolve().parent.parent
EMBEDDED = ROOT / "configs" / "cluster-embedded.yaml"
STORE = "graphrag_store"


def app_config(path: Path, data_dir: Path) -> AppConfig:
    args = dict(yaml.safe_load(path.read_text())["applications"][0]["args"], data_dir=str(data_dir))
    return AppConfig.from_args(args)


@pytest.mark.parametrize("path", [EMBEDDED, ROOT / "configs" / "cluster.yaml"])
def test_cluster_configs_are_valid_serve_deploy_files(path):
    schema = ServeDeploySchema(**yaml.safe_load(path.read_text()))
    assert schema.proxy_location == "EveryNode" and schema.applications[0].import_path == "graph:build_app"


def test_store_owners_are_pinned_and_stateless_stages_are_not(tmp_path):
    d = app_config(EMBEDDED, tmp_path).deployments
    for name in ("vector", "bolt_server", "graph"):
        options = getattr(d, name).serve_options()["ray_actor_options"]
        assert options["resources"][STORE] > 0 and "num_cpus" in options, name
    # Together they fit on the one node that has the resource (1 unit), at their maximum replica counts.
    assert (
        sum(
            getattr(d, n).ray_actor_options["resources"][STORE] * getattr(d, n).max_replicas()
            for n in ("vector", "bolt_server", "graph")
        )
        <= 1
    )
    for name in ("ingress", "embedder", "reranker", "chat"):
        options = getattr(d, name)
        assert STORE not in options.ray_actor_options.get("resources", {}), name
        assert "num_cpus" in options.ray_actor_options, name  # an override replaces the default {num_cpus: 0}
        assert options.autoscaling_config["min_replicas"] >= 2, name  # one per node of a two-node cluster


def test_external_engines_config_pins_nothing():
    serve_config = yaml.safe_load((ROOT / "configs" / "cluster.yaml").read_text())
    for name, options in serve_config["applications"][0]["args"]["deployments"].items():
        assert STORE not in options.get("ray_actor_options", {}).get("resources", {}), name


def test_benchmark_copy_is_on_loopback_with_tracing(tmp_path):
    out = cluster_config(EMBEDDED, tmp_path / "c.yaml", tmp_path / "data", 18123, tmp_path / "spans")
    schema = ServeDeploySchema(**yaml.safe_load(out.read_text()))
    assert schema.http_options.host == "127.0.0.1" and schema.http_options.port == 18123
    assert (
        schema.tracing_config.enabled
        and schema.tracing_config.exporter_import_path == "deployments.tracing:span_processors"
    )
    assert schema.applications[0].runtime_env["env_vars"]["GRAPHRAG_TRACE_DIR"] == str(tmp_path / "spans")
    config = app_config(out, tmp_path / "data")
    assert config.data_dir == str(tmp_path / "data")
