"""The `retrieval` section: the default mode, fusion of the stages' hits, and each stage's time bound."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from deployments.config.section import Section
from deployments.models import MAX_TOP_K, RetrievalMode


class FusionWeights(Section):
    """Weight of each retrieval source in the pipeline's fusion (the embedded reranker has its own weights:
    reranker.dense_weight, reranker.graph_weight)."""

    vector: float = Field(1.0, ge=0, description="Dense (embedding) hits.")
    lexical: float = Field(1.0, ge=0, description="BM25 hits.")
    graph: float = Field(0.2, ge=0, description="Graph-reached chunks.")


class RetrievalConfig(Section):
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
    graph_seeds: Literal["auto", "vector_hits", "lookup"] = Field(
        "auto",
        description="Where the graph's walk gets its seed passages. vector_hits: the vector stage's dense hits, the "
        "graph stage called once they are in (one vector request fewer); lookup: the graph stage asks the vector "
        "stage itself, beside the ingress's search. auto: vector_hits with the embedded store (one Vector replica "
        "would serve the lookup after the search it runs beside), lookup with a Qdrant server.",
    )
    rerank: bool = Field(True, description="Rerank the fused candidates (reranker.url, else the embedded scorer).")
    vector_timeout_s: float = Field(5.0, gt=0)
    graph_timeout_s: float = Field(5.0, gt=0)
    rerank_timeout_s: float = Field(10.0, gt=0)
    chat_timeout_s: float = Field(90.0, gt=0)
    ingest_timeout_s: float = Field(600.0, gt=0)
