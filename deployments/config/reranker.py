"""The `reranker` section: an HTTP reranker, or the embedded scorer's weights."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from deployments.config.section import BreakerConfig, Section
from deployments.graph.extraction.ontology import ENTITY_TYPES


class RerankerConfig(Section):
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
    # An entity-centric question (it names a person or a work: "When did X's mother die?") gets a stronger lift that
    # may pass all but the best candidate: its second hop rarely resembles the question. Chosen on the same tuning
    # splits (benchmarks/README.md, "Entity-centric questions"); other questions keep graph_weight / graph_keep.
    entity_types: list[str] = Field(
        ["PERSON", "WORK"], description="A question linking an entity of one of these types is entity-centric."
    )
    entity_graph_weight: float = Field(4.0, ge=0, description="Embedded scorer: graph_weight for those questions.")
    entity_graph_keep: int = Field(1, ge=0, le=100, description="Embedded scorer: graph_keep for those questions.")

    @field_validator("entity_types")
    @classmethod
    def _known_types(cls, types: list[str]) -> list[str]:
        unknown = sorted(set(types) - set(ENTITY_TYPES))
        if unknown:
            raise ValueError(f"unknown entity types {unknown}: the graph's types are {list(ENTITY_TYPES)}")
        return types
