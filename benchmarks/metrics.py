"""IR metrics with the definitions BEIR uses (pytrec_eval / trec_eval), over one ranked list per query.

`qrels`: {query_id: {doc_id: relevance}}; only relevance > 0 counts as relevant. `run`: {query_id: [doc_id, ...]}
best first, without repeats. Queries absent from `qrels` are not scored; a query of `qrels` with no run scores 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

Qrels = Mapping[str, Mapping[str, int]]
Run = Mapping[str, Sequence[str]]


def ndcg_at_k(ranked: Sequence[str], relevance: Mapping[str, int], k: int) -> float:
    """Linear gain (trec_eval's ndcg_cut): DCG = sum rel_i / log2(i + 1) over the first k, over the ideal DCG."""
    dcg = sum(relevance.get(doc, 0) / math.log2(i + 2) for i, doc in enumerate(ranked[:k]) if relevance.get(doc, 0) > 0)
    ideal = sorted((r for r in relevance.values() if r > 0), reverse=True)[:k]
    idcg = sum(r / math.log2(i + 2) for i, r in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at_k(ranked: Sequence[str], relevance: Mapping[str, int], k: int) -> float:
    relevant = {doc for doc, r in relevance.items() if r > 0}
    return len(relevant.intersection(ranked[:k])) / len(relevant) if relevant else 0.0


def mrr_at_k(ranked: Sequence[str], relevance: Mapping[str, int], k: int) -> float:
    for i, doc in enumerate(ranked[:k]):
        if relevance.get(doc, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


def evaluate(qrels: Qrels, run: Run) -> dict[str, float]:
    """Means over the queries of `qrels` that have a relevant document: nDCG@10, Recall@100, MRR@10."""
    scored = [q for q, rel in qrels.items() if any(r > 0 for r in rel.values())]
    if not scored:
        raise ValueError("no query in qrels has a relevant document")
    totals = {"ndcg@10": 0.0, "recall@100": 0.0, "mrr@10": 0.0}
    for q in scored:
        ranked, rel = list(run.get(q, [])), qrels[q]
        totals["ndcg@10"] += ndcg_at_k(ranked, rel, 10)
        totals["recall@100"] += recall_at_k(ranked, rel, 100)
        totals["mrr@10"] += mrr_at_k(ranked, rel, 10)
    return {name: total / len(scored) for name, total in totals.items()}


def docs_by_max_score(hits: Sequence[tuple[str, float]]) -> list[str]:
    """Chunk hits (doc_id, score) → doc ids ranked by their best chunk's score (BEIR scores documents)."""
    best: dict[str, float] = {}
    for doc, score in hits:
        if doc not in best or score > best[doc]:
            best[doc] = score
    return sorted(best, key=lambda d: -best[d])
