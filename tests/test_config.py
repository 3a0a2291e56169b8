import pytest
from pydantic import ValidationError

from deployments.config import AppConfig
from deployments.net import redact_url


def test_dotted_args_nest_and_coerce():
    cfg = AppConfig.from_args({"retrieval.top_k": "5", "graph.max_hops": "1", "data_dir": "/tmp/x"})
    assert cfg.retrieval.top_k == 5 and cfg.graph.max_hops == 1
    assert cfg.vector.path == "/tmp/x/qdrant" and cfg.graph.path == "/tmp/x/arcadedb"
    assert cfg.graph.embedded_port == 0  # validation binds no socket: the BoltServer deployment picks the port


def test_embedded_vector_store_keeps_one_replica():
    with pytest.raises(ValidationError, match="one owner process"):
        AppConfig.from_args({"deployments": {"vector": {"autoscaling_config": {"min_replicas": 1, "max_replicas": 3}}}})
    cfg = AppConfig.from_args(
        {
            "vector.qdrant_url": "http://qdrant:6333",
            "deployments": {"vector": {"autoscaling_config": {"max_replicas": 3}}},
        }
    )
    assert cfg.deployments.vector.serve_options()["autoscaling_config"]["max_replicas"] == 3


def test_stateless_stages_surge_in_a_rolling_update_and_the_embedded_stores_cannot():
    cfg = AppConfig.from_args(
        {"deployments": {"ingress": {"max_ongoing_requests": 50}, "chat": {"max_surge_percent": 0}}}
    )
    surge = {
        n: getattr(cfg.deployments, n).serve_options().get("max_surge_percent") for n in ("ingress", "graph", "chat")
    }
    assert surge == {"ingress": 100, "graph": 100, "chat": 0}  # also when the section is given; unless set
    assert "max_surge_percent" not in cfg.deployments.vector.serve_options()
    assert "max_surge_percent" not in cfg.deployments.bolt_server.serve_options()
    for store in ("vector", "bolt_server"):  # two processes on one folder during the update
        with pytest.raises(ValidationError, match="no max_surge_percent"):
            AppConfig.from_args({"deployments": {store: {"max_surge_percent": 100}}})
    cfg = AppConfig.from_args({"vector.qdrant_url": "http://qdrant:6333", "deployments.vector.max_surge_percent": 50})
    assert cfg.deployments.vector.serve_options()["max_surge_percent"] == 50  # a Qdrant server: no folder to own


def test_embedded_services_bind_loopback_only():
    with pytest.raises(ValidationError, match="loopback"):
        AppConfig.from_args({"graph.embedded_host": "0.0.0.0"})


def test_secrets_stay_out_of_descriptions_and_env_is_read(monkeypatch):
    monkeypatch.setenv("GRAPHRAG_CHAT__API_KEY", "sk-very-secret")
    monkeypatch.setenv("GRAPHRAG_CHAT__BASE_URL", "http://llm:8080/v1")
    cfg = AppConfig.from_args({})
    assert cfg.chat.base_url == "http://llm:8080/v1"
    assert cfg.chat.api_key.get_secret_value() == "sk-very-secret"
    assert "sk-very-secret" not in repr(cfg) and "sk-very-secret" not in str(cfg.model_dump(mode="json"))


def test_unknown_keys_are_refused():
    with pytest.raises(ValidationError, match="retrival"):
        AppConfig.from_args({"retrival.top_k": 3})


def test_redact_url():
    assert redact_url("http://user:pw@host:6333/x") == "http://host:6333/x"
    assert redact_url("http://host/x") == "http://host/x"


def test_moved_key_is_accepted_with_a_warning(caplog):
    with caplog.at_level("WARNING", logger="graphrag.config"):
        cfg = AppConfig.from_args({"chat_fallback_extractive": False, "chat.model": "m"})
    assert cfg.chat.fallback_extractive is False and cfg.chat.model == "m"
    assert "chat.fallback_extractive" in caplog.text
    both = AppConfig.from_args({"chat_fallback_extractive": False, "chat.fallback_extractive": True})
    assert both.chat.fallback_extractive is True  # the new key wins
    assert AppConfig.from_args({}).chat.fallback_extractive is True


def test_inner_timeouts_must_end_before_the_outer_ones():
    AppConfig.from_args({})  # the defaults nest: chat 60 s < retrieval.chat_timeout_s 90 s < request 120 s
    with pytest.raises(
        ValidationError, match=r"chat.timeout_s \(100s\) must be shorter than retrieval.chat_timeout_s \(90s\)"
    ):
        AppConfig.from_args({"chat.timeout_s": 100})
    with pytest.raises(ValidationError, match="retrieval.chat_timeout_s .* limits.request_timeout_s"):
        AppConfig.from_args({"limits.request_timeout_s": 15})
    with pytest.raises(ValidationError, match="graph.write_timeout_s"):
        AppConfig.from_args({"retrieval.ingest_timeout_s": 60})


def test_graph_credentials_are_for_an_external_server_only():
    """Issue 10, finding 4: no store password ships in the config; the embedded server's are per data folder."""
    cfg = AppConfig.from_args({})
    assert cfg.graph.password is None and cfg.graph.reader_user is None
    with pytest.raises(ValidationError, match="external server"):
        AppConfig.from_args({"graph.password": "something"})
    with pytest.raises(ValidationError, match="together"):
        AppConfig.from_args(
            {"graph.bolt_uri": "bolt://neo4j:7687", "graph.password": "p", "graph.reader_user": "reader"}
        )
    external = AppConfig.from_args({
        "graph.bolt_uri": "bolt://neo4j:7687", "graph.user": "neo4j", "graph.password": "p",
        "graph.reader_user": "reader", "graph.reader_password": "r",
    })  # fmt: skip
    assert external.graph.reader_password.get_secret_value() == "r" and "r" not in str(external.graph.reader_password)
