"""The one typed config: every setting of the app, validated once when the app is built.

Values come from `build_app` args (Serve YAML `args:` or `serve run graph:build_app key=value`, dotted
keys for nesting), then from `GRAPHRAG_*` environment variables (nested with `__`, e.g.
`GRAPHRAG_VECTOR__QDRANT_URL`), then from the defaults below. Secrets are `SecretStr`: never logged.
"""
from __future__ import annotations

import ipaddress
import re
import socket
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from deployments.models import MAX_HOPS, MAX_TOP_K, RetrievalMode


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EmbedderConfig(_Section):
    model_name: str = "all-MiniLM-L6-v2"
    # An OpenAI-compatible /v1/embeddings endpoint replaces the in-process model when set.
    openai_base_url: str | None = None
    openai_api_key: SecretStr | None = None
    openai_model: str = "text-embedding-3-small"
    max_batch_size: int = Field(64, ge=1, le=4096, description="Texts per model call (@serve.batch).")
    batch_wait_timeout_s: float = Field(0.005, ge=0, le=5)
    request_chunk_size: int = Field(256, ge=1, description="Texts per handle call when embedding many.")
    num_threads: int | None = Field(None, ge=1, le=64, description="torch intra-op threads; default: the CPUs this process may use.")
    timeout_s: float = Field(30.0, gt=0, description="Per-request timeout of the OpenAI-compatible endpoint.")


class VectorConfig(_Section):
    # Qdrant server URL; when unset the embedded engine (qdrant-edge-py) stores under `path`.
    qdrant_url: str | None = None
    qdrant_api_key: SecretStr | None = None
    path: str | None = None  # default: <data_dir>/qdrant
    timeout_s: float = Field(10.0, gt=0)
    embed_batch_size: int = Field(256, ge=1, description="Chunk texts per embed call when upserting.")
    optimize_every_points: int = Field(
        1024, ge=1, description="Embedded store: run the optimizer (HNSW build, vacuum) after this many written points."
    )
    # BM25 document weights, written at ingest (changing them affects documents ingested afterwards only).
    bm25_k1: float = Field(1.2, gt=0)
    bm25_b: float = Field(0.75, ge=0, le=1)
    bm25_avg_len: float = Field(256.0, gt=0, description="Expected document length in terms (after stop words).")

    @property
    def embedded(self) -> bool:
        return not self.qdrant_url


class ExtractionProvider(_Section):
    """One OpenAI-compatible chat endpoint that extracts entities and relations as JSON."""

    name: str | None = Field(None, description="Shown in results and logs; default: model@host.")
    base_url: str  # ".../v1"
    api_key: SecretStr | None = None
    model: str
    timeout_s: float = Field(60.0, gt=0, description="Bound on one provider's attempt (repair included).")
    json_mode: bool = Field(True, description='Send response_format={"type": "json_object"}.')

    @property
    def label(self) -> str:
        return self.name or f"{self.model}@{urlparse(self.base_url).netloc or self.base_url}"


# Entity types the LLM may use; anything else is normalized to one of them (or to the last, OTHER).
DEFAULT_ENTITY_TYPES = ["PERSON", "ORGANIZATION", "LOCATION", "EVENT", "WORK", "PRODUCT", "DATE", "CONCEPT", "OTHER"]


class ExtractionConfig(_Section):
    """LLM extraction: the providers race per chunk, the first valid result wins. No provider: offline extraction."""

    providers: list[ExtractionProvider] = Field(default_factory=list)
    max_concurrent_providers: int = Field(3, ge=1, le=16, description="Providers in flight at once for one chunk.")
    max_concurrent_chunks: int = Field(4, ge=1, le=64, description="Chunks extracted at once by one graph replica.")
    min_entities: int = Field(1, ge=0, description="A result with fewer entities (after normalization) is a failure.")
    min_relations: int = Field(0, ge=0)
    entity_types: list[str] = Field(default_factory=lambda: list(DEFAULT_ENTITY_TYPES), min_length=1)
    max_entities: int = Field(40, ge=1, le=500, description="Per chunk; the rest are dropped.")
    max_relations: int = Field(80, ge=0, le=2000)
    temperature: float = Field(0.0, ge=0, le=2)
    max_tokens: int = Field(2048, ge=64)
    fallback_offline: bool = Field(True, description="When every provider fails: offline extraction (else the ingest fails).")

    @field_validator("entity_types")
    @classmethod
    def _types(cls, v: list[str]) -> list[str]:
        for t in v:
            if not re.fullmatch(r"[A-Z][A-Z0-9_]{0,31}", t):
                raise ValueError(f"entity type {t!r} must match [A-Z][A-Z0-9_]{{0,31}}")
        return v


class GraphConfig(_Section):
    # Neo4j-protocol Bolt URI; when unset the app starts ArcadeDB's Bolt server itself.
    bolt_uri: str | None = None
    user: str = "root"
    password: SecretStr = SecretStr("graphrag-embedded")
    database: str | None = None
    embedded_host: str = "127.0.0.1"
    embedded_port: int = Field(0, ge=0, le=65535, description="0 picks a free port when the app is built.")
    path: str | None = None  # default: <data_dir>/arcadedb
    max_hops: int = Field(2, ge=0, le=MAX_HOPS)
    max_nodes: int = Field(50, ge=1, le=1000)
    max_edges: int = Field(200, ge=1, le=5000)
    max_chunks: int = Field(30, ge=1, le=500)
    query_timeout_s: float = Field(5.0, gt=0)
    write_timeout_s: float = Field(120.0, gt=0, description="Bound on one upsert/delete transaction.")
    extraction: ExtractionConfig = ExtractionConfig()
    # POST /v1/graph/query: user Cypher, run in a read transaction under these bounds.
    user_query_timeout_s: float = Field(5.0, gt=0, le=300)
    user_query_max_rows: int = Field(1000, ge=1, le=100_000)
    entity_neighbours: int = Field(50, ge=1, le=1000, description="GET /v1/graph/entities/{name}: neighbours returned.")

    @property
    def embedded(self) -> bool:
        return not self.bolt_uri


class RerankerConfig(_Section):
    # TEI / Cohere / Jina-style POST {url} with {query, texts}; when unset, the embedded scorer.
    url: str | None = None
    api_key: SecretStr | None = None
    model: str | None = None  # sent as "model" for Cohere/Jina-style APIs
    timeout_s: float = Field(10.0, gt=0)
    max_connections: int = Field(32, ge=1)
    dense_weight: float = Field(0.7, ge=0, le=1, description="Embedded scorer: dense share; the rest is lexical.")
    # 0 by default: on HotpotQA-100 (benchmarks/hotpotqa_recall.py) the graph-search score as a rerank signal
    # lowered Recall@2 (0.75 -> 0.72); the graph helps through its candidates and retrieval.link_weight instead.
    graph_weight: float = Field(0.0, ge=0, description="Embedded scorer: weight added for the graph score (hybrid+graph).")


class ChatProvider(_Section):
    """A further OpenAI-compatible chat provider, tried when the ones before it fail."""

    base_url: str
    api_key: SecretStr | None = None
    model: str


class ChatConfig(_Section):
    # OpenAI-compatible base URL (".../v1"); when unset, extractive answers.
    base_url: str | None = None
    api_key: SecretStr | None = None
    model: str = "gpt-4o-mini"
    # Tried in order after `base_url` fails (each with its own retries); needs `base_url`.
    fallbacks: list[ChatProvider] = Field(default_factory=list)
    temperature: float = Field(0.0, ge=0, le=2)
    max_tokens: int = Field(512, ge=1)
    max_attempts: int = Field(4, ge=1, le=10)
    backoff_base_s: float = Field(0.5, gt=0)
    backoff_max_s: float = Field(8.0, gt=0)
    timeout_s: float = Field(60.0, gt=0, description="Bound on all attempts together.")
    max_passages: int = Field(6, ge=1, le=50)

    @model_validator(mode="after")
    def _fallbacks_need_primary(self) -> "ChatConfig":
        if self.fallbacks and not self.base_url:
            raise ValueError("chat.fallbacks needs chat.base_url (the first provider)")
        return self


class FusionWeights(_Section):
    """Weight of each retrieval source in fusion (and in the embedded reranker's blend)."""

    vector: float = Field(1.0, ge=0, description="Dense (embedding) hits.")
    lexical: float = Field(1.0, ge=0, description="BM25 hits.")
    graph: float = Field(0.2, ge=0, description="Graph-reached chunks.")


class RetrievalConfig(_Section):
    top_k: int = Field(8, ge=1, le=MAX_TOP_K)
    candidates: int = Field(30, ge=1, le=500, description="Hits per stage fed to fusion and the reranker.")
    # hybrid (dense + BM25, reranked by the embedded scorer) measured best on SciFact's train queries (README).
    mode: RetrievalMode = Field("hybrid", description="Default of a request's `mode`.")
    fusion: Literal["rrf", "weighted"] = Field(
        "rrf", description="rrf: weighted reciprocal rank fusion; weighted: weighted sum of min-max normalized scores."
    )
    weights: FusionWeights = FusionWeights()
    rrf_k: int = Field(60, ge=1)
    link_weight: float = Field(
        0.3, ge=0, le=5,
        description="After reranking, candidates tied to the top `link_seeds` hits by a specific entity (not named in "
        "the query) that one of them is about gain up to this share of the score range: the second hop of a "
        "multi-hop question. 0 = off.",
    )
    link_seeds: int = Field(1, ge=1, le=10)
    rerank: bool = Field(True, description="Rerank the fused candidates (reranker.url, else the embedded scorer).")
    vector_timeout_s: float = Field(5.0, gt=0)
    graph_timeout_s: float = Field(5.0, gt=0)
    rerank_timeout_s: float = Field(10.0, gt=0)
    chat_timeout_s: float = Field(90.0, gt=0)
    ingest_timeout_s: float = Field(600.0, gt=0)


class ChunkingConfig(_Section):
    max_words: int = Field(160, ge=16, le=2000)
    overlap_words: int = Field(30, ge=0)

    @model_validator(mode="after")
    def _overlap(self) -> "ChunkingConfig":
        if self.overlap_words >= self.max_words:
            raise ValueError("chunking.overlap_words must be smaller than chunking.max_words")
        return self


class DeploymentOptions(_Section):
    """Ray Serve options of one deployment (see `serve.deployment`)."""

    num_replicas: int | None = Field(None, ge=1)
    autoscaling_config: dict[str, Any] | None = None
    max_ongoing_requests: int = Field(100, ge=1)
    max_queued_requests: int = Field(-1, ge=-1)
    # What callers get when the queue is full: {status_code: 503|429, retry_after_s: seconds} (Serve's BackpressureConfig).
    backpressure_config: dict[str, Any] | None = None
    # No CPU reserved by default, so the whole graph fits one small node; set num_cpus on clusters.
    ray_actor_options: dict[str, Any] = Field(default_factory=lambda: {"num_cpus": 0})
    health_check_period_s: float | None = None
    # Serve's LoggingConfig, e.g. {enable_access_log: false}; unset: see DeploymentsConfig._access_logs.
    logging_config: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_of(self) -> "DeploymentOptions":
        if self.num_replicas is not None and self.autoscaling_config is not None:
            raise ValueError("set num_replicas or autoscaling_config, not both")
        return self

    def max_replicas(self) -> int:
        if self.autoscaling_config is not None:
            return int(self.autoscaling_config.get("max_replicas", 1))
        return self.num_replicas or 1

    def serve_options(self) -> dict[str, Any]:
        opts = self.model_dump(exclude_none=True)
        if self.num_replicas is None and self.autoscaling_config is None:
            opts["num_replicas"] = 1
        return opts


class DeploymentsConfig(_Section):
    ingress: DeploymentOptions = DeploymentOptions(max_ongoing_requests=200)
    embedder: DeploymentOptions = DeploymentOptions(max_ongoing_requests=64)
    vector: DeploymentOptions = DeploymentOptions(max_ongoing_requests=100)
    graph: DeploymentOptions = DeploymentOptions(max_ongoing_requests=100)
    bolt_server: DeploymentOptions = DeploymentOptions(max_ongoing_requests=100, health_check_period_s=2.0)
    reranker: DeploymentOptions = DeploymentOptions(max_ongoing_requests=100)
    chat: DeploymentOptions = DeploymentOptions(max_ongoing_requests=100)

    @model_validator(mode="after")
    def _access_logs(self) -> "DeploymentsConfig":
        """Serve writes an access-log line per call in every replica; the ingress's lines are the HTTP requests,
        the stages' only repeat them per hop (about 5% of a stage call's CPU), so stages default to none."""
        for name in type(self).model_fields:
            options: DeploymentOptions = getattr(self, name)
            if options.logging_config is None:
                options.logging_config = {"enable_access_log": name == "ingress"}
        return self


class AuthConfig(_Section):
    """API keys, stored as SHA-256 hex digests only (`python -m deployments.ingress.auth hash` prints one)."""

    api_key_hashes: list[str] = Field(default_factory=list, description="Empty: no key required.")

    @field_validator("api_key_hashes")
    @classmethod
    def _hex_digests(cls, v: list[str]) -> list[str]:
        for h in v:
            if len(h) != 64 or any(c not in "0123456789abcdef" for c in h.lower()):
                raise ValueError("auth.api_key_hashes holds SHA-256 hex digests (64 hex characters), never the keys")
        return [h.lower() for h in v]


class LimitsConfig(_Section):
    # 64 MiB admits the largest valid ingest (256 documents of 200,000 characters).
    max_body_bytes: int = Field(64 * 1024 * 1024, ge=1024, description="Larger request bodies get 413.")
    request_timeout_s: float = Field(120.0, gt=0, description="Whole-request bound; the graph is cancelled and 504 returned.")
    ingest_request_timeout_s: float = Field(660.0, gt=0, description="The same bound for POST /v1/ingest.")
    retry_after_s: int = Field(1, ge=0, description="Retry-After sent with 503s of an unavailable or overloaded stage.")


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
    # When chat fails: answer extractively (and report `degraded`), or 503 naming the stage.
    chat_fallback_extractive: bool = True
    auth: AuthConfig = AuthConfig()
    limits: LimitsConfig = LimitsConfig()

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, v: str) -> str:
        # Replicas may run in another working directory: resolve once, here.
        return str(Path(v).expanduser().resolve())

    @model_validator(mode="after")
    def _resolve(self) -> "AppConfig":
        if self.vector.embedded:
            self.vector.path = self.vector.path or str(Path(self.data_dir) / "qdrant")
            if self.deployments.vector.max_replicas() > 1:
                raise ValueError(
                    "the embedded Qdrant store has exactly one owner process: deployments.vector must keep "
                    "one replica; set vector.qdrant_url to a Qdrant server to scale it"
                )
        if self.graph.embedded:
            self.graph.path = self.graph.path or str(Path(self.data_dir) / "arcadedb")
            _require_loopback(self.graph.embedded_host)
            if self.graph.embedded_port == 0:
                self.graph.embedded_port = free_port(self.graph.embedded_host)
            if self.deployments.bolt_server.max_replicas() > 1:
                raise ValueError("the embedded Bolt server owns its data folder: deployments.bolt_server keeps one replica")
        return self

    @property
    def bolt_uri(self) -> str:
        if self.graph.bolt_uri:
            return self.graph.bolt_uri
        return f"bolt://{self.graph.embedded_host}:{self.graph.embedded_port}"

    @classmethod
    def from_args(cls, args: dict[str, Any] | None = None) -> "AppConfig":
        """Build from `build_app` args; `a.b=c` dotted keys become nested sections."""
        return cls(**nest_dotted(args or {}))

    def describe(self) -> dict[str, Any]:
        """The config without secrets, for logs and /readyz."""
        return self.model_dump(mode="json")


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


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _require_loopback(host: str) -> None:
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise ValueError(f"embedded services bind to loopback only, not {host!r}")


def redact_url(url: str | None) -> str | None:
    """A URL safe to log: credentials stripped."""
    if not url:
        return url
    parts = urlparse(url)
    if parts.username or parts.password:
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        return parts._replace(netloc=netloc).geturl()
    return url
