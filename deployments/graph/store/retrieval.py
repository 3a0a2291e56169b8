"""The graph stage's retrieval: entity linking plus multi-hop expansion (`search`), and the entity ties between
passages that the pipeline's link boost asks for (`links`)."""

from __future__ import annotations

from neo4j import AsyncManagedTransaction

from deployments.config import GraphConfig
from deployments.graph.store.schema import CHUNK, ENTITY, MENTIONS
from deployments.graph.store.session import Work
from deployments.graph.store.transactions import (
    edges_among,
    expand,
    longest_matches,
    mention_counts,
    metadata,
    specificity,
)
from deployments.models import GraphNode, GraphResult, ScoredChunk, Subgraph


def search_work(collection: str, keys: list[str], hops: int, limit: int, cfg: GraphConfig) -> Work:
    """Chunks mentioning the entities linked from the query keys, or reached from them within `hops` hops."""

    async def work(tx: AsyncManagedTransaction) -> GraphResult:
        # Entity linking: an index seek on Entity.key (never a CONTAINS scan).
        linked = await (
            await tx.run(
                f"MATCH (e:{ENTITY}) WHERE e.key IN $keys AND e.collection = $collection "
                "RETURN e.key AS key, e.name AS name, e.type AS type ORDER BY key LIMIT $max_nodes",
                keys=keys,
                collection=collection,
                max_nodes=cfg.max_nodes,
            )  # fmt: skip
        ).data()
        if not linked:
            return GraphResult(chunks=[], subgraph=Subgraph(), linked=[])
        kept = set(longest_matches([row["key"] for row in linked]))
        linked = [row for row in linked if row["key"] in kept]
        nodes = {row["key"]: GraphNode(id=row["key"], name=row["name"], type=row["type"], hops=0) for row in linked}
        # A linked entity weighs by its specificity: "film" (in hundreds of chunks) adds little, a name a lot.
        mentions = await mention_counts(tx, collection, list(nodes))
        weights = await expand(
            tx, collection, nodes, hops, cfg.max_nodes, {k: specificity(mentions.get(k, 1)) for k in nodes}
        )
        node_keys = list(nodes)
        edges = await edges_among(tx, collection, node_keys, cfg.max_edges)
        # Scored in the store (a parameter map looked up per mention), so only the top chunks' text travels.
        rows = await (
            await tx.run(
                f"MATCH (e:{ENTITY})<-[:{MENTIONS}]-(c:{CHUNK}) WHERE e.key IN $keys AND e.collection = $collection "
                "WITH c, sum($weights[e.key]) AS score ORDER BY score DESC, c.id LIMIT $limit "
                "RETURN c.id AS id, c.doc_id AS doc_id, c.text AS text, c.metadata AS metadata, score",
                keys=node_keys,
                weights=weights,
                collection=collection,
                limit=limit,
            )  # fmt: skip
        ).data()
        chunks = [
            ScoredChunk(
                chunk_id=row["id"],
                doc_id=row["doc_id"],
                text=row["text"],
                score=float(row["score"]),
                metadata=metadata(row["metadata"]),
            )  # fmt: skip
            for row in sorted(rows, key=lambda r: (-r["score"], r["id"]))
        ]
        ordered = sorted(nodes.values(), key=lambda n: (n.hops, n.id))
        return GraphResult(
            chunks=chunks, subgraph=Subgraph(nodes=ordered, edges=edges), linked=[r["key"] for r in linked]
        )

    return work


def links_work(collection: str, seeds: list[str], candidates: list[str], exclude: set[str]) -> Work:
    """The candidates' ties to the seed chunks: summed specificity of the entities one is about and the other
    mentions, `exclude` (the query's own keys) left out."""

    async def work(tx: AsyncManagedTransaction) -> dict[str, float]:
        rows = await (
            await tx.run(
                f"MATCH (s:{CHUNK})-[:{MENTIONS}]->(e:{ENTITY})<-[:{MENTIONS}]-(c:{CHUNK}) "
                "WHERE s.id IN $seeds AND s.collection = $collection AND c.id IN $candidates "
                "AND c.collection = $collection "
                "RETURN c.id AS id, c.lead AS c_lead, s.lead AS s_lead, collect(DISTINCT e.key) AS keys",
                seeds=seeds,
                candidates=candidates,
                collection=collection,
            )  # fmt: skip
        ).data()
        shared: dict[str, set[str]] = {}
        for row in rows:
            about = set(row["c_lead"] or []) | set(row["s_lead"] or [])
            keys = {k for k in row["keys"] if k in about and k not in exclude}
            if keys:
                shared.setdefault(row["id"], set()).update(keys)
        mentions = await mention_counts(tx, collection, sorted({k for keys in shared.values() for k in keys}))
        return {cid: sum(specificity(mentions.get(k, 1)) for k in keys) for cid, keys in shared.items()}

    return work


def chunks_work(collection: str, chunk_ids: list[str]) -> Work:
    """The text, document and metadata of these chunks, by id (the few an index search returns)."""

    async def work(tx: AsyncManagedTransaction) -> dict[str, dict]:
        rows = await (
            await tx.run(
                f"MATCH (c:{CHUNK}) WHERE c.id IN $ids AND c.collection = $collection "
                "RETURN c.id AS id, c.doc_id AS doc_id, c.text AS text, c.metadata AS metadata",
                ids=chunk_ids,
                collection=collection,
            )  # fmt: skip
        ).data()
        return {row["id"]: row for row in rows}

    return work
