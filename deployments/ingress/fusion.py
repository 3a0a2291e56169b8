"""Fusion of the retrieval sources' ranked lists into one candidate list, and the graph facts given to chat."""

from __future__ import annotations

from deployments.graph.extraction.ontology import UNTYPED
from deployments.models import ScoredChunk, Subgraph

Fused = list[tuple[ScoredChunk, float, list[str]]]


def reciprocal_rank_fusion(
    ranked: dict[str, list[ScoredChunk]], k: int, weights: dict[str, float] | None = None
) -> Fused:
    """Fuses ranked lists by RRF: score(d) = sum over lists of weight / (k + rank). Returns (chunk, score, sources)."""
    fused: dict[str, list] = {}
    for source, chunks in ranked.items():
        weight = 1.0 if weights is None else weights.get(source, 1.0)
        for rank, chunk in enumerate(chunks, start=1):
            entry = fused.setdefault(chunk.chunk_id, [chunk, 0.0, []])
            entry[1] += weight / (k + rank)
            entry[2].append(source)
    return sorted((tuple(e) for e in fused.values()), key=lambda e: e[1], reverse=True)


def source_scores(ranked: dict[str, list[ScoredChunk]], chunk_ids: list[str]) -> dict[str, list[float | None]]:
    """Each source's own score of each chunk (None where that source did not find it), for the reranker."""
    out = {}
    for source, chunks in ranked.items():
        by_id = {c.chunk_id: c.score for c in chunks}
        out[source] = [by_id.get(c) for c in chunk_ids]
    return out


def min_max(scores: list[float]) -> list[float]:
    """Scores mapped onto [0, 1] by the list's own range; a list without spread maps to 1 (all equally good)."""
    if not scores:
        return []
    low, high = min(scores), max(scores)
    if high - low < 1e-12:
        return [1.0] * len(scores)
    return [(s - low) / (high - low) for s in scores]


def weighted_score_fusion(ranked: dict[str, list[ScoredChunk]], weights: dict[str, float]) -> Fused:
    """Fuses by scores: each list min-max normalized, then sum of weight × normalized score (a list that misses a
    chunk adds 0: it ranked it below its own last hit). Unlike RRF it keeps how far apart the scores are."""
    fused: dict[str, list] = {}
    for source, chunks in ranked.items():
        weight = weights.get(source, 1.0)
        for chunk, score in zip(chunks, min_max([c.score for c in chunks])):
            entry = fused.setdefault(chunk.chunk_id, [chunk, 0.0, []])
            entry[1] += weight * score
            entry[2].append(source)
    return sorted((tuple(e) for e in fused.values()), key=lambda e: e[1], reverse=True)


def graph_facts(subgraph: Subgraph, limit: int = 20) -> list[str]:
    """The subgraph's typed relations as the facts chat cites ("ArcadeDB —SHIPS→ Bolt plugin"), strongest first;
    a co-occurrence states nothing and is left out."""
    names = {n.id: n.name for n in subgraph.nodes}
    facts: list[str] = []
    for edge in sorted(subgraph.edges, key=lambda e: e.weight, reverse=True):
        if edge.source in names and edge.target in names and edge.type not in UNTYPED and len(facts) < limit:
            facts.append(f"{names[edge.source]} —{edge.type}→ {names[edge.target]}")
    return facts
