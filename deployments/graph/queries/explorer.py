"""The graph explorer's endpoints: a user's read-only Cypher (POST /v1/graph/query) and an entity with its
neighbourhood and provenance (GET /v1/graph/entities/{name})."""

from __future__ import annotations

import base64
import math
from typing import Any

from neo4j import AsyncManagedTransaction
from neo4j.graph import Node, Path, Relationship

from deployments.config import GraphConfig
from deployments.graph.store.schema import CHUNK, ENTITY, MENTIONS
from deployments.graph.store.session import Work
from deployments.graph.store.transactions import edges_among, expand
from deployments.models import EntityResponse, GraphNode, RelationProvenance


def entity_work(collection: str, key: str, hops: int, cfg: GraphConfig) -> Work:
    """The entity `key` (None when absent) with its neighbourhood and the chunks that support its relations."""

    async def work(tx: AsyncManagedTransaction) -> EntityResponse | None:
        row = await (
            await tx.run(
                f"MATCH (e:{ENTITY}) WHERE e.key = $key AND e.collection = $collection "
                "RETURN e.key AS key, e.name AS name, e.type AS type",
                key=key,
                collection=collection,
            )  # fmt: skip
        ).single()
        if row is None:
            return None
        center = GraphNode(id=row["key"], name=row["name"], type=row["type"], hops=0)
        nodes = {center.id: center}
        await expand(tx, collection, nodes, int(hops), cfg.entity_neighbours + 1)
        edges = await edges_among(tx, collection, list(nodes), cfg.max_edges)
        # Provenance: the chunks mentioning the entity hold what each added to its relations.
        mentions = await (
            await tx.run(
                f"MATCH (e:{ENTITY})<-[:{MENTIONS}]-(c:{CHUNK}) WHERE e.key = $key AND e.collection = $collection "
                "RETURN c.id AS id, c.doc_id AS doc_id, c.rel_src AS s, c.rel_tgt AS t, c.rel_type AS type, "
                "c.alias_src AS alias_src, c.alias_tgt AS alias_tgt "
                "ORDER BY c.doc_id, c.id LIMIT $limit",
                key=key,
                collection=collection,
                limit=cfg.max_chunks,
            )  # fmt: skip
        ).data()
        support: dict[tuple[str, str, str], list[tuple[str, str]]] = {}
        for m in mentions:
            for alias, of in zip(m["alias_src"] or [], m["alias_tgt"] or []):
                if of == key and alias not in center.aliases:
                    center.aliases.append(alias)
            for s, t, typ in zip(m["s"] or [], m["t"] or [], m["type"] or []):
                if key in (s, t):
                    support.setdefault((s, t, typ), []).append((m["doc_id"], m["id"]))
        relations = [
            RelationProvenance(
                source=e.source,
                target=e.target,
                type=e.type,
                weight=e.weight,
                doc_ids=sorted({d for d, _ in support.get((e.source, e.target, e.type), [])}),
                chunk_ids=sorted({c for _, c in support.get((e.source, e.target, e.type), [])}),
            )  # fmt: skip
            for e in edges
            if key in (e.source, e.target)
        ]
        return EntityResponse(
            collection=collection,
            entity=center,
            doc_ids=sorted({m["doc_id"] for m in mentions}),
            chunk_ids=[m["id"] for m in mentions],
            neighbours=sorted((n for n in nodes.values() if n.id != key), key=lambda n: (n.hops, n.id)),
            edges=edges,
            relations=relations,
        )

    return work


def jsonable(value: Any) -> Any:
    """A Bolt value as JSON: nodes, relationships and paths as maps; temporal and spatial values as text."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Node):
        return {
            "id": value.element_id,
            "labels": sorted(value.labels),
            "properties": {k: jsonable(v) for k, v in value.items()},
        }
    if isinstance(value, Relationship):
        return {
            "id": value.element_id, "type": value.type,
            "start": value.start_node.element_id if value.start_node is not None else None,
            "end": value.end_node.element_id if value.end_node is not None else None,
            "properties": {k: jsonable(v) for k, v in value.items()},
        }  # fmt: skip
    if isinstance(value, Path):
        return {
            "nodes": [jsonable(n) for n in value.nodes],
            "relationships": [jsonable(r) for r in value.relationships],
        }
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode()
    iso = getattr(value, "iso_format", None)
    return iso() if callable(iso) else str(value)
