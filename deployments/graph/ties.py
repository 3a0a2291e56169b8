"""Link-boost ties: how strongly a candidate chunk is tied to the seed chunks, from each chunk's entities. The
Graph replica's index computes them (GraphService.links), and the ingress from a mention table it asked for while
the reranker ran (one hop fewer after the rerank)."""

from __future__ import annotations

from collections.abc import Sequence

# chunk id -> {entity key: (the chunk is about it, the entity's specificity)}; the query's own keys left out
MentionTable = dict[str, dict[str, tuple[bool, float]]]


def ties(table: MentionTable, seed_ids: Sequence[str], chunk_ids: Sequence[str]) -> dict[str, float]:
    """The summed specificity of the entities a chunk shares with a seed where one of the two is about it; chunks
    with no tie are absent."""
    seeds = [table.get(s, {}) for s in seed_ids]
    out: dict[str, float] = {}
    for chunk_id in chunk_ids:
        mine = table.get(chunk_id, {})
        shared = {k for seed in seeds for k, (lead, _) in mine.items() if k in seed and (lead or seed[k][0])}
        if shared:
            out[chunk_id] = sum(mine[k][1] for k in shared)
    return out
