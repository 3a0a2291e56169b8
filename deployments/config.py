"""The one typed config: every setting of the app, validated once when the app is built.

Values come from `build_app` args (Serve YAML `args:` or `serve run graph:build_app key=value`, dotted
keys for nesting), then from `GRAPHRAG_*` environment variables (nested with `__`, e.g.
`GRAPHRAG_VECTOR__QDRANT_URL`), then from the defaults below. Secrets are `SecretStr`: never logged.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
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

from deployments.auth_config import AuthConfig
from deployments.breaker import CircuitBreaker
from deployments.graph.extraction.ontology import ENTITY_TYPES
from deployments.models import MAX_HOPS, MAX_TOP_K, RetrievalMode
from deployments.net import require_loopback
from deployments.serve_options import DeploymentsConfig

log = logging.getLogger("graphrag.config")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BreakerConfig(_Section):
    """The circuit breaker in front of a backend server (deployments/breaker.py); one per backend per replica."""

    enabled: bool = True
    failure_threshold: int = Field(
        5, ge=1, le=1000, description="Calls in a row that found the server unreachable before it is skipped."
    )
    open_s: float = Field(
        5.0, gt=0, le=3600, description="Seconds the server is skipped before one probe call goes through."
    )

    def make(self, stage: str, backend: str, probe: Callable[[], Awaitable[Any]] | None = None) -> CircuitBreaker:
        return CircuitBreaker(stage, backend, self.failure_threshold, self.open_s, self.enabled, probe=probe)


class EmbedderConfig(_Section):
    model_name: str = "all-MiniLM-L6-v2"
    # In-process runtime of the local weights: ONNX Runtime (exported from the weights at first start, cached in
    # `cache_dir`; 2-3x the questions/s of torch at the same vectors, README "Performance") or torch itself.
    backend: Literal["onnx", "torch"] = "onnx"
    cache_dir: str | None = None  # default: <data_dir>/models
    onnx_allow_spinning: bool = Field(
        False, description="ONNX Runtime threads spin while idle (a core each, even when other processes need it)."
    )
    # An OpenAI-compatible /v1/embeddings endpoint replaces the in-process model when set.
    openai_base_url: str | None = None
    openai_api_key: SecretStr | None = None
    openai_model: str = "text-embedding-3-small"
    max_batch_size: int = Field(
        64, ge=1, le=4096, description="Texts per model call (the embedder batches concurrent calls up to this)."
    )
    batch_wait_timeout_s: float = Field(0.005, ge=0, le=5)
    num_threads: int | None = Field(
        None, ge=1, le=64, description="torch / ONNX Runtime intra-op threads; default: the CPUs this process may use."
    )
    timeout_s: float = Field(30.0, gt=0, description="Per-request timeout of the OpenAI-compatible endpoint.")
    max_retries: int = Field(
        2, ge=0, le=10, description="Retries of a failed request to the OpenAI-compatible endpoint."
    )
    breaker: BreakerConfig = BreakerConfig()  # the OpenAI-compatible endpoint's


class VectorConfig(_Section):
    # Qdrant server URL; when unset the embedded engine (qdrant-edge-py) stores under `path`.
    qdrant_url: str | None = None
    qdrant_api_key: SecretStr | None = None
    path: str | None = None  # default: <data_dir>/qdrant
    timeout_s: float = Field(10.0, gt=0)
    embed_batch_size: int = Field(256, ge=1, description="Chunk texts per embed call when upserting.")
    hit_vectors: bool | None = Field(
        None,
        description="Searches return their hits' stored vectors (for the embedded reranker); default: on when no reranker.url is set.",
    )
    optimize_every_points: int = Field(
        1024, ge=1, description="Embedded store: run the optimizer (HNSW build, vacuum) after this many written points."
    )
    # Qdrant Edge writes through memory-mapped files: a write that finds the disk full kills the process (SIGBUS)
    # instead of failing. So ingests are refused (507) while the data folder has less room than this; make it
    # larger than the largest ingest request's growth.
    min_free_disk_mb: int = Field(
        256, ge=0, description="Ingests answer 507 while the data folder's disk has less free space (MB)."
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


# Entity types the LLM may use: the offline extractors' (graph/extraction/ontology.py, the graph schema); anything
# else is normalized to one of them (or to the last, OTHER).
DEFAULT_ENTITY_TYPES = list(ENTITY_TYPES)


class ExtractionConfig(_Section):
    """LLM extraction: the providers race per chunk, the first valid result wins. No provider: offline extraction."""

    providers: list[ExtractionProvider] = Field(default_factory=list)
    # The default stays `patterns` until the spaCy extractor is measured on SciFact, ingest speed and latency, and
    # gives the sample corpus' entities relations (on technical text en_core_web_sm finds few typed relations).
    offline: Literal["spacy", "patterns"] = Field(
        "patterns",
        description="The extractor without an LLM (and the LLM race's fallback): the capitalization patterns (no "
        "model; CO_OCCURS only) or spaCy en_core_web_sm (typed entities, relations from the parse).",
    )
    max_concurrent_providers: int = Field(3, ge=1, le=16, description="Providers in flight at once for one chunk.")
    max_concurrent_chunks: int = Field(4, ge=1, le=64, description="Chunks extracted at once by one graph replica.")
    min_entities: int = Field(1, ge=0, description="A result with fewer entities (after normalization) is a failure.")
    min_relations: int = Field(0, ge=0)
    entity_types: list[str] = Field(default_factory=lambda: list(DEFAULT_ENTITY_TYPES), min_length=1)
    max_entities: int = Field(40, ge=1, le=500, description="Per chunk; the rest are dropped.")
    max_relations: int = Field(80, ge=0, le=2000)
    temperature: float = Field(0.0, ge=0, le=2)
    max_tokens: int = Field(2048, ge=64)
    fallback_offline: bool = Field(
        True, description="When every provider fails: offline extraction (else the ingest fails)."
    )

    @field_validator("entity_types")
    @classmethod
    def _types(cls, v: list[str]) -> list[str]:
        for t in v:
            if not re.fullmatch(r"[A-Z][A-Z0-9_]{0,31}", t):
                raise ValueError(f"entity type {t!r} must match [A-Z][A-Z0-9_]{{0,31}}")
        return v


class GraphIndexConfig(_Section):
    """The Graph replicas' in-memory passage–entity index (deployments/graph/index/collection.py) and its walk.

    Walk settings chosen on HotpotQA-100 questions 0–49 and SciFact train only (benchmarks/graph_tune.py)."""

    enabled: bool = Field(True, description="Search the in-memory index; false: the Cypher search in the store.")
    check_interval_ms: float = Field(
        200.0, ge=0, le=60_000, description="A replica checks the store's version at most this often."
    )
    build_timeout_s: float = Field(
        300.0, gt=0, description="Bound on reading a whole collection from the store (an index's first build)."
    )
    warm_on_start: bool = Field(
        True,
        description="A Graph replica builds the index of every stored collection when it starts, in the background.",
    )
    passage_seeds: int = Field(
        1, ge=0, le=100, description="Passages most similar to the query that start the walk (0: entities only)."
    )
    entity_seed_weight: float = Field(
        0.3,
        ge=0,
        description="Restart mass on the names the query writes (linked entities), vs 1 on the seed passages.",
    )
    lead_weight: float = Field(
        10.0, ge=0, description="Entity -> passage: a passage naming the entity in its first sentence weighs 1 + this."
    )
    idf_power: float = Field(1.0, ge=0, description="Passage -> entity: an entity weighs idf ** this.")
    seed_temperature: float = Field(0.05, gt=0)
    damping: float = Field(0.5, gt=0, le=1, description="Weight of each further hop's mass (max_hops > 1).")
    restart_weight: float = Field(
        0.0, ge=0, description="A seed passage's restart mass kept in its score (PPR's teleport term)."
    )
    relation_weight: float = Field(
        0.5, ge=0, description="Share of an entity's mass that also flows along its typed relations and aliases."
    )
    query_vectors: bool = Field(
        True, description="Seed the walk with the passages most like the query (its vector comes with the request)."
    )
    max_entity_passages: int = Field(
        2000,
        ge=0,
        description="Entity -> passage: a hub entity passes mass to at most this many of its passages (0: no cap).",
    )
    snapshot_dir: str | None = Field(
        None, description="Index snapshots for fast replica starts (default: <data_dir>/graph-index; '' turns off)."
    )
    snapshot_interval_s: float = Field(
        300.0, ge=0, description="After a change, a collection's snapshot older than this is written again."
    )

    def params(self) -> PPRParamsLike:
        from deployments.graph.index.collection import PPRParams

        return PPRParams(
            damping=self.damping, entity_seed_weight=self.entity_seed_weight, passage_seeds=self.passage_seeds,
            seed_temperature=self.seed_temperature, lead_weight=self.lead_weight, idf_power=self.idf_power,
            restart_weight=self.restart_weight, relation_weight=self.relation_weight,
            max_entity_passages=self.max_entity_passages,
        )  # fmt: skip


PPRParamsLike = Any


class GraphConfig(_Section):
    # Neo4j-protocol Bolt URI; when unset the app starts ArcadeDB's Bolt server itself.
    bolt_uri: str | None = None
    user: str = "root"
    # Credentials of an external server (`bolt_uri`). The embedded server has none here: its passwords are random,
    # made per data folder at its first start (deployments/graph/store/credentials.py).
    password: SecretStr | None = None
    # POST /v1/graph/query runs as this user on an external server, in READ sessions: on Neo4j, a user with the
    # built-in `reader` role only. Unset: user queries are refused on an external server.
    reader_user: str | None = None
    reader_password: SecretStr | None = None
    database: str | None = None
    embedded_host: str = "127.0.0.1"
    embedded_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="0: the BoltServer deployment picks a free port (kept across its restarts) and reports it.",
    )
    path: str | None = None  # default: <data_dir>/arcadedb
    max_hops: int = Field(2, ge=0, le=MAX_HOPS)
    max_nodes: int = Field(50, ge=1, le=1000)
    max_edges: int = Field(200, ge=1, le=5000)
    max_chunks: int = Field(30, ge=1, le=500)
    query_timeout_s: float = Field(5.0, gt=0)
    write_timeout_s: float = Field(120.0, gt=0, description="Bound on one upsert/delete transaction.")
    connect_attempts: int = Field(3, ge=1, le=20, description="Attempts at a transaction after a dropped connection.")
    conflict_attempts: int = Field(
        12, ge=1, le=100, description="Attempts at a write after a concurrent-write conflict."
    )
    breaker: BreakerConfig = BreakerConfig()  # the Bolt server's (embedded or external)
    extraction: ExtractionConfig = ExtractionConfig()
    index: GraphIndexConfig = GraphIndexConfig()
    # POST /v1/graph/query: user Cypher, run in a read transaction under these bounds.
    user_query_timeout_s: float = Field(5.0, gt=0, le=300)
    user_query_max_rows: int = Field(1000, ge=1, le=100_000)
    user_query_max_concurrent: int = Field(
        2,
        ge=1,
        le=256,
        description="User queries one graph replica runs at once; more get 503 (retrieval keeps the store).",
    )
    user_query_max_bytes: int = Field(
        4 * 1024 * 1024,
        ge=1024,
        le=256 * 1024 * 1024,
        description="Bound on the rows' JSON size; the rest is cut (`truncated`).",
    )
    entity_neighbours: int = Field(50, ge=1, le=1000, description="GET /v1/graph/entities/{name}: neighbours returned.")

    @property
    def embedded(self) -> bool:
        return not self.bolt_uri

    @model_validator(mode="after")
    def _embedded_credentials(self) -> GraphConfig:
        if self.embedded and (self.password is not None or self.reader_user or self.reader_password is not None):
            raise ValueError(
                "graph.password, graph.reader_user and graph.reader_password are for an external server (graph.bolt_uri); "
                "the embedded server's passwords are random, kept in its data folder"
            )
        if (self.reader_user is None) != (self.reader_password is None):
            raise ValueError("set graph.reader_user and graph.reader_password together")
        return self


class RerankerConfig(_Section):
    # TEI / Cohere / Jina-style POST {url} with {query, texts}; when unset, the embedded scorer.
    url: str | None = None
    api_key: SecretStr | None = None
    model: str | None = None  # sent as "model" for Cohere/Jina-style APIs
    timeout_s: float = Field(10.0, gt=0)
    max_connections: int = Field(32, ge=1)
    breaker: BreakerConfig = BreakerConfig()  # the HTTP reranker's
    dense_weight: float = Field(0.7, ge=0, le=1, description="Embedded scorer: dense share; the rest is lexical.")
    # The graph stage's walk score (graph/index/: a passage's share of the walk's mass) lifts a candidate by up to
    # graph_weight × that share, never past the graph_keep best dense + lexical candidates. Chosen on HotpotQA-100
    # questions 0–49 and SciFact train only (benchmarks/graph_tune.py); hybrid and dense/lexical never see it.
    graph_weight: float = Field(2.0, ge=0, description="Embedded scorer: lift per unit of graph mass (hybrid+graph).")
    graph_keep: int = Field(
        2, ge=0, le=100, description="Embedded scorer: the graph never lifts a candidate past this many best ones."
    )


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
    breaker: BreakerConfig = BreakerConfig()  # each provider's (the primary and every fallback has its own)
    fallback_extractive: bool = Field(
        True,
        description="When every provider fails: the extractive answer (listed in `degraded`), else 503 naming chat.",
    )

    @model_validator(mode="after")
    def _fallbacks_need_primary(self) -> ChatConfig:
        if self.fallbacks and not self.base_url:
            raise ValueError("chat.fallbacks needs chat.base_url (the first provider)")
        return self


class FusionWeights(_Section):
    """Weight of each retrieval source in the pipeline's fusion (the embedded reranker has its own weights:
    reranker.dense_weight, reranker.graph_weight)."""

    vector: float = Field(1.0, ge=0, description="Dense (embedding) hits.")
    lexical: float = Field(1.0, ge=0, description="BM25 hits.")
    graph: float = Field(0.2, ge=0, description="Graph-reached chunks.")


class RetrievalConfig(_Section):
    top_k: int = Field(8, ge=1, le=MAX_TOP_K)
    candidates: int = Field(30, ge=1, le=500, description="Hits per stage fed to fusion and the reranker.")
    # hybrid (dense + BM25, reranked by the embedded scorer) measured best on SciFact's train queries (README).
    # hybrid+graph: chosen on HotpotQA-100 questions 0-49 and SciFact train; on the held-back halves it keeps SciFact
    # test nDCG@10 (0.7400 vs 0.7402) and lifts HotpotQA test R@5 by 0.05 (benchmarks/README.md, graph section).
    mode: RetrievalMode = Field("hybrid+graph", description="Default of a request's `mode`.")
    fusion: Literal["rrf", "weighted"] = Field(
        "rrf", description="rrf: weighted reciprocal rank fusion; weighted: weighted sum of min-max normalized scores."
    )
    weights: FusionWeights = FusionWeights()
    rrf_k: int = Field(60, ge=1)
    # 0 by default: the graph stage's walk from the best passage to the passages about what it mentions does this
    # job in the same call (graph/index/); the boost measured in-sample only and costs a sequential store call.
    link_weight: float = Field(
        0.0,
        ge=0,
        le=5,
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
    def _overlap(self) -> ChunkingConfig:
        if self.overlap_words >= self.max_words:
            raise ValueError("chunking.overlap_words must be smaller than chunking.max_words")
        return self


class LimitsConfig(_Section):
    # 64 MiB admits the largest valid ingest (256 documents of 200,000 characters).
    max_body_bytes: int = Field(64 * 1024 * 1024, ge=1024, description="Larger request bodies get 413.")
    request_timeout_s: float = Field(
        120.0, gt=0, description="Whole-request bound; the graph is cancelled and 504 returned."
    )
    ingest_request_timeout_s: float = Field(660.0, gt=0, description="The same bound for POST /v1/ingest.")
    retry_after_s: int = Field(1, ge=0, description="Retry-After sent with 503s of an unavailable or overloaded stage.")


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
        if self.graph.index.snapshot_dir is None:
            self.graph.index.snapshot_dir = str(Path(self.data_dir) / "graph-index")
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
