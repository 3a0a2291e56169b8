"""A collection's graph as a file, and back: every node of the collection (chunks, entities, its version and
change log) with its properties, and every relationship between them, read in one transaction.

A logical backup through the Bolt protocol: the same for the embedded ArcadeDB and an external Neo4j (ArcadeDB's
own BACKUP DATABASE is not reachable over Bolt, and covers every collection at once). Nodes are told apart by
their key within the collection: a chunk's `id`, an entity's `key`.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from neo4j import AsyncManagedTransaction

from deployments.graph.store.schema import CHANGE, CHUNK, ENTITY, MENTIONS, RELATED, VERSION

# The property that names a node within its collection, per label that relationships connect.
NODE_KEY = {CHUNK: "id", ENTITY: "key"}
LABELS = (CHUNK, ENTITY, VERSION, CHANGE)
RELATIONSHIPS = ((MENTIONS, CHUNK, ENTITY), (RELATED, ENTITY, ENTITY))
_BATCH = 1000


def export_work(collection: str):
    async def work(tx: AsyncManagedTransaction) -> dict[str, Any]:
        nodes: dict[str, list[dict]] = {}
        for label in LABELS:
            result = await tx.run(f"MATCH (n:{label}) WHERE n.collection = $c RETURN properties(n) AS p", c=collection)
            nodes[label] = [row["p"] for row in await result.data()]
        relationships: dict[str, list[dict]] = {}
        for rel, start, end in RELATIONSHIPS:
            a, b = NODE_KEY[start], NODE_KEY[end]
            result = await tx.run(
                f"MATCH (x:{start})-[r:{rel}]->(y:{end}) WHERE x.collection = $c AND y.collection = $c "
                f"RETURN x.{a} AS a, y.{b} AS b, properties(r) AS p",
                c=collection,
            )
            relationships[rel] = await result.data()
        return {"collection": collection, "nodes": nodes, "relationships": relationships}

    return work


def import_work(collection: str, dump: dict[str, Any]):
    """Creates the dumped nodes and relationships in `collection` (which must hold none: the caller checks)."""

    async def work(tx: AsyncManagedTransaction) -> int:
        created = 0
        for label in LABELS:
            rows = [{**p, "collection": collection} for p in dump["nodes"].get(label, [])]
            for i in range(0, len(rows), _BATCH):
                await tx.run(f"UNWIND $rows AS p CREATE (n:{label}) SET n = p", rows=rows[i : i + _BATCH])
            created += len(rows)
        for rel, start, end in RELATIONSHIPS:
            a, b = NODE_KEY[start], NODE_KEY[end]
            rows = dump["relationships"].get(rel, [])
            for i in range(0, len(rows), _BATCH):
                await tx.run(
                    f"UNWIND $rows AS row MATCH (x:{start} {{collection: $c, {a}: row.a}}) "
                    f"MATCH (y:{end} {{collection: $c, {b}: row.b}}) CREATE (x)-[r:{rel}]->(y) SET r = row.p",
                    rows=rows[i : i + _BATCH], c=collection,
                )  # fmt: skip
            created += len(rows)
        return created

    return work


def write_dump(dump: dict[str, Any], path: Path) -> int:
    """Writes the dump (gzipped JSON) through a temporary file; returns its size in bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with gzip.open(tmp, "wt", encoding="utf-8") as f:
        json.dump(dump, f)
    tmp.replace(path)
    return path.stat().st_size


def read_dump(path: Path) -> dict[str, Any]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return json.load(f)


def dump_counts(dump: dict[str, Any]) -> dict[str, int]:
    return {
        "chunks": len(dump["nodes"].get(CHUNK, [])), "entities": len(dump["nodes"].get(ENTITY, [])),
        "relations": len(dump["relationships"].get(RELATED, [])), "mentions": len(dump["relationships"].get(MENTIONS, [])),
    }  # fmt: skip
