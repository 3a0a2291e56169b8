"""`AppConfig`: the whole app's settings, its sections put together and checked against each other."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pydantic import BaseModel, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from deployments.auth_config import AuthConfig
from deployments.config.chat import ChatConfig
from deployments.config.chunking import ChunkingConfig
from deployments.config.embedder import EmbedderConfig
from deployments.config.graph import GraphConfig
from deployments.config.limits import LimitsConfig
from deployments.config.reranker import RerankerConfig
from deployments.config.retrieval import RetrievalConfig
from deployments.config.vector import VectorConfig
from deployments.net import require_loopback
from deployments.serve_options import DeploymentsConfig

log = logging.getLogger("graphrag.config")


# Old top-level key -> (section, key) it moved to.
MOVED_KEYS = {"chat_fallback_extractive": ("chat", "fallback_extractive")}


class AppConfig(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GRAPHRAG_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    data_dir: str = "data"
    embedder: EmbedderConfig = EmbedderConfig()
    vector: VectorConfig = VectorConfig()
    graph: GraphConfig = GraphConfig()
    reranker: RerankerConfig = RerankerConfig()
    chat: ChatConfig = ChatConfig()
    retrieval: RetrievalConfig = RetrievalConfig()
    chunking: ChunkingConfig = ChunkingConfig()
    deployments: DeploymentsConfig = DeploymentsConfig()
    auth: AuthConfig = AuthConfig()
    limits: LimitsConfig = LimitsConfig()

    @model_validator(mode="before")
    @classmethod
    def _moved_keys(cls, data: Any) -> Any:
        """Keys that moved into a stage's section, still accepted (with a warning) under their old name."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for old, (section, key) in MOVED_KEYS.items():
            if old not in data:
                continue
            log.warning("config key %r is deprecated: use %s.%s", old, section, key)
            value = data.pop(old)
            current = data.get(section) or {}
            if isinstance(current, BaseModel):
                current = current.model_dump()
            data[section] = {key: value, **current}  # the new key wins when both are set
        return data

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, v: str) -> str:
        # Replicas may run in another working directory: resolve once, here.
        return str(Path(v).expanduser().resolve())

    @model_validator(mode="after")
    def _resolve(self) -> AppConfig:
        self.embedder.cache_dir = self.embedder.cache_dir or str(Path(self.data_dir) / "models")
        if self.vector.hit_vectors is None:  # only the embedded scorer uses them
            self.vector.hit_vectors = not self.reranker.url
        if self.vector.embedded:
            self.vector.path = self.vector.path or str(Path(self.data_dir) / "qdrant")
            if self.deployments.vector.max_replicas() > 1:
                raise ValueError(
                    "the embedded Qdrant store has exactly one owner process: deployments.vector must keep "
                    "one replica; set vector.qdrant_url to a Qdrant server to scale it"
                )
        if self.graph.embedded:
            self.graph.path = self.graph.path or str(Path(self.data_dir) / "arcadedb")
            require_loopback(self.graph.embedded_host)
            if self.deployments.bolt_server.max_replicas() > 1:
                raise ValueError(
                    "the embedded Bolt server owns its data folder: deployments.bolt_server keeps one replica"
                )
        return self

    @model_validator(mode="after")
    def _timeouts_nest(self) -> AppConfig:
        """Each bound ends before the one around it: a stage's own budget, then the pipeline's bound on that
        stage, then the whole request's. The inner one decides (a degraded stage, the fallback answer); the
        outer one only backs it up."""
        r, limits = self.retrieval, self.limits
        nested = [
            ("chat.timeout_s", self.chat.timeout_s, "retrieval.chat_timeout_s", r.chat_timeout_s),
            ("retrieval.chat_timeout_s", r.chat_timeout_s, "limits.request_timeout_s", limits.request_timeout_s),
            ("retrieval.vector_timeout_s", r.vector_timeout_s, "limits.request_timeout_s", limits.request_timeout_s),
            ("retrieval.graph_timeout_s", r.graph_timeout_s, "limits.request_timeout_s", limits.request_timeout_s),
            ("retrieval.rerank_timeout_s", r.rerank_timeout_s, "limits.request_timeout_s", limits.request_timeout_s),
            ("graph.write_timeout_s", self.graph.write_timeout_s, "retrieval.ingest_timeout_s", r.ingest_timeout_s),
            (
                "retrieval.ingest_timeout_s",
                r.ingest_timeout_s,
                "limits.ingest_request_timeout_s",
                limits.ingest_request_timeout_s,
            ),
        ]
        wrong = [
            f"{inner} ({a:g}s) must be shorter than {outer} ({b:g}s)" for inner, a, outer, b in nested if not a < b
        ]
        if wrong:
            raise ValueError("timeouts must nest: " + "; ".join(wrong))
        return self

    @classmethod
    def from_args(cls, args: dict[str, Any] | None = None) -> AppConfig:
        """Build from `build_app` args; `a.b=c` dotted keys become nested sections."""
        return cls(**nest_dotted(args or {}))


def nest_dotted(flat: dict[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        parts = key.split(".")
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"config key {key!r} conflicts with a value set for {part!r}")
        if isinstance(value, dict) and isinstance(node.get(parts[-1]), dict):
            node[parts[-1]].update(value)
        else:
            node[parts[-1]] = value
    return nested
