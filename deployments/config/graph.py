"""The `graph` section: the Bolt store, the in-memory index and its walk, and the bounds of user queries."""

from __future__ import annotations

from typing import Any

from pydantic import Field, SecretStr, model_validator

from deployments.config.extraction import ExtractionConfig
from deployments.config.section import BreakerConfig, Section
from deployments.models import MAX_HOPS


class GraphIndexConfig(Section):
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
    warm_before_serving: bool = Field(
        True,
        description="With warm_on_start, a Graph replica's constructor waits for that build (Serve routes to a replica "
        "once its constructor returns): a replica the autoscaler adds answers from its index from its first search "
        "instead of making searches wait out graph_timeout_s while a large index loads.",
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
        500,  # 2000 until 2026-12-05: the same HotpotQA recall at 100k chunks, half the search CPU at 1M
        ge=0,
        description="Entity -> passage: a hub entity passes mass to at most this many of its passages (0: no cap).",
    )
    push_budget: int = Field(
        1000,  # added 2026-12-05 (benchmarks/README.md, "Scale"): the same HotpotQA recall at 10k, 100k and 1M chunks
        ge=0,
        description="Entity -> passage: a search moves mass along at most this many mentions, from the entities that "
        "can give one passage the most (0: no budget). The passages returned are scored exactly.",
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
            max_entity_passages=self.max_entity_passages, push_budget=self.push_budget,
        )  # fmt: skip


PPRParamsLike = Any


class GraphConfig(Section):
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
