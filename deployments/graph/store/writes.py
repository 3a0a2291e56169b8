"""The graph stage's writes: the rows an ingest stores (chunks, entities, what each chunk adds to RELATED
weights), and the transactions that replace, delete and count them."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass

from neo4j import AsyncManagedTransaction

from deployments.graph.extraction.ontology import UNTYPED
from deployments.graph.store.schema import CHANGE, CHUNK, ENTITY, MENTIONS, RELATED, VERSION
from deployments.graph.store.session import Work
from deployments.models import Chunk, Extraction


@dataclass
class IngestRows:
    """What one upsert writes: entity rows (key, name, type), chunk rows, and the RELATED weights the chunks add."""

    entities: list[dict]
    chunks: list[dict]
    added: Counter[tuple[str, str, str]]


def ingest_rows(chunks: list[Chunk], extractions: list[Extraction]) -> IngestRows:
    """The rows of `chunks` (distinct chunk ids) and their extractions, in chunk order."""
    entities: dict[str, dict] = {}
    chunk_rows = []
    added: Counter[tuple[str, str, str]] = Counter()
    for chunk, ex in zip(chunks, extractions):
        keys = []
        lead = set()
        for e in ex.entities:
            if not e.key:
                continue
            entities.setdefault(e.key, {"key": e.key, "name": e.name, "type": e.type})
            keys.append(e.key)
            if e.lead:
                lead.add(e.key)
        keys = sorted(set(keys))
        rels = chunk_relations(ex, set(keys))
        for (s, t, typ), w in rels.items():
            added[(s, t, typ)] += w
        chunk_rows.append(
            {
                "id": chunk.chunk_id,
                "doc_id": chunk.doc_id,
                "idx": chunk.index,
                "text": chunk.text,
                # Property values must be primitives: the metadata map travels as JSON.
                "metadata": json.dumps(chunk.metadata, sort_keys=True, default=str),
                "keys": keys,
                "lead": sorted(lead),  # the entities the chunk is about (its first sentence names them)
                # What this chunk added to RELATED weights, so replacing or deleting it can take it back.
                "rel_src": [s for s, _, _ in rels],
                "rel_tgt": [t for _, t, _ in rels],
                "rel_type": [typ for _, _, typ in rels],
                "rel_w": [float(w) for w in rels.values()],
                # The short forms this chunk uses for its entities ("giuliani" for "rudolph giuliani").
                "alias_src": [a for e in ex.entities if e.key in keys for a in e.aliases],
                "alias_tgt": [e.key for e in ex.entities if e.key in keys for _ in e.aliases],
            }
        )
    return IngestRows(entities=list(entities.values()), chunks=chunk_rows, added=added)


def upsert_work(collection: str, doc_ids: list[str], rows: IngestRows) -> Work:
    """Replaces the chunks of `doc_ids` by `rows`, in one transaction."""
    entity_rows, chunk_rows, added = rows.entities, rows.chunks, rows.added

    async def work(tx: AsyncManagedTransaction) -> None:
        await bump_version(tx, collection, doc_ids)  # first: concurrent writers of a collection conflict here and retry
        removed, old_keys = await remove_chunks(tx, collection, doc_ids)
        await tx.run(
            f"UNWIND $rows AS row MERGE (e:{ENTITY} {{collection: $collection, key: row.key}}) "
            "ON CREATE SET e.name = row.name, e.type = row.type",
            rows=entity_rows, collection=collection,
        )  # fmt: skip
        await tx.run(
            f"UNWIND $rows AS row CREATE (c:{CHUNK} {{id: row.id, doc_id: row.doc_id, collection: $collection, "
            "idx: row.idx, text: row.text, metadata: row.metadata, keys: row.keys, lead: row.lead, rel_src: row.rel_src, "
            "rel_tgt: row.rel_tgt, rel_type: row.rel_type, rel_w: row.rel_w, alias_src: row.alias_src, alias_tgt: row.alias_tgt}) "
            f"WITH c, row UNWIND row.keys AS key MATCH (e:{ENTITY} {{collection: $collection, key: key}}) "
            f"CREATE (c)-[:{MENTIONS}]->(e)",
            rows=chunk_rows, collection=collection,
        )  # fmt: skip
        await apply_weights(tx, collection, added, removed)
        await drop_orphans(tx, collection, sorted(old_keys - {row["key"] for row in entity_rows}))

    return work


def delete_work(collection: str, doc_ids: list[str]) -> Work:
    """Removes these documents' chunks, their mentions and what they added to the graph; returns chunks removed."""

    async def work(tx: AsyncManagedTransaction) -> int:
        removed, old_keys = await remove_chunks(tx, collection, sorted(set(doc_ids)))
        if removed.total_chunks:
            await bump_version(tx, collection, doc_ids)
        await apply_weights(tx, collection, Counter(), removed)
        await drop_orphans(tx, collection, sorted(old_keys))
        return removed.total_chunks

    return work


def drop_work(collection: str) -> Work:
    """Removes the whole collection (chunks, entities, their relations) in one transaction; the chunks removed,
    None when the store held no chunk or entity of it. Its version node and change log stay: the version goes on
    counting, with one more change naming every dropped document, so each Graph replica's in-memory index (however
    far behind) drops them at its next check, and a re-created collection never reuses a version number."""

    async def work(tx: AsyncManagedTransaction) -> int | None:
        rows = await (
            await tx.run(
                f"MATCH (c:{CHUNK}) WHERE c.collection = $collection RETURN c.doc_id AS doc_id",
                collection=collection,
            )
        ).data()
        counted = await (
            await tx.run(
                f"MATCH (e:{ENTITY}) WHERE e.collection = $collection RETURN count(e) AS n", collection=collection
            )
        ).single()
        entities = counted["n"] if counted is not None else 0
        if not rows and not entities:
            return None
        await tx.run(f"MATCH (n:{CHUNK}) WHERE n.collection = $collection DETACH DELETE n", collection=collection)
        await tx.run(f"MATCH (n:{ENTITY}) WHERE n.collection = $collection DETACH DELETE n", collection=collection)
        await bump_version(tx, collection, [row["doc_id"] for row in rows])
        return len(rows)

    return work


def counts_work(collection: str) -> Work:
    async def work(tx: AsyncManagedTransaction) -> dict:
        out = {}
        for name, query in (
            ("chunks", f"MATCH (c:{CHUNK}) WHERE c.collection = $collection RETURN count(c) AS n"),
            ("entities", f"MATCH (e:{ENTITY}) WHERE e.collection = $collection RETURN count(e) AS n"),
            (
                "relations",
                f"MATCH (a:{ENTITY})-[r:{RELATED}]->(:{ENTITY}) WHERE a.collection = $collection RETURN count(r) AS n",
            ),
        ):
            out[name] = (await (await tx.run(query, collection=collection)).single(strict=True))["n"]
        return out

    return work


# ---- transaction pieces -------------------------------------------------------------------------


class Removed:
    def __init__(self) -> None:
        self.weights: Counter[tuple[str, str, str]] = Counter()
        self.total_chunks = 0


async def bump_version(tx: AsyncManagedTransaction, collection: str, doc_ids: list[str]) -> int:
    """Inside a write transaction: the collection's next version, and the documents this write touches (what the
    replicas' in-memory indexes read to catch up, index/live.py)."""
    row = await (
        await tx.run(
            f"MERGE (v:{VERSION} {{collection: $collection}}) ON CREATE SET v.version = 1 "
            "ON MATCH SET v.version = v.version + 1 RETURN v.version AS version",
            collection=collection,
        )  # fmt: skip
    ).single(strict=True)
    version = int(row["version"])
    await tx.run(
        f"CREATE (:{CHANGE} {{collection: $collection, version: $version, doc_ids: $doc_ids}})",
        collection=collection, version=version, doc_ids=sorted(set(doc_ids)),
    )  # fmt: skip
    return version


def chunk_relations(ex: Extraction, keys: set[str]) -> Counter[tuple[str, str, str]]:
    """Relations of one chunk as (source, target, type) -> weight. A typed relation keeps its direction
    (Helen -MOTHER_OF-> Giuliani); a co-occurrence is undirected, stored source < target."""
    out: Counter[tuple[str, str, str]] = Counter()
    for r in ex.relations:
        if r.source == r.target or r.source not in keys or r.target not in keys or r.weight <= 0:
            continue
        s, t = sorted((r.source, r.target)) if r.type in UNTYPED else (r.source, r.target)
        out[(s, t, r.type)] += r.weight  # type: ignore[assignment]  # float weights (typeshed's Counter: int)
    return out


async def remove_chunks(tx: AsyncManagedTransaction, collection: str, doc_ids: list[str]) -> tuple[Removed, set[str]]:
    """Deletes the chunks of `doc_ids` (and their MENTIONS); returns what they added to the graph."""
    removed = Removed()
    old_keys: set[str] = set()
    rows = await (
        await tx.run(
            f"MATCH (c:{CHUNK}) WHERE c.doc_id IN $doc_ids AND c.collection = $collection "
            "RETURN c.keys AS keys, c.rel_src AS s, c.rel_tgt AS t, c.rel_type AS type, c.rel_w AS w",
            doc_ids=doc_ids,
            collection=collection,
        )  # fmt: skip
    ).data()
    for row in rows:
        removed.total_chunks += 1
        old_keys.update(row["keys"] or [])
        for s, t, typ, w in zip(row["s"] or [], row["t"] or [], row["type"] or [], row["w"] or []):
            removed.weights[(s, t, typ)] += w
    if rows:
        await tx.run(
            f"MATCH (c:{CHUNK}) WHERE c.doc_id IN $doc_ids AND c.collection = $collection DETACH DELETE c",
            doc_ids=doc_ids, collection=collection,
        )  # fmt: skip
    return removed, old_keys


async def apply_weights(
    tx: AsyncManagedTransaction, collection: str, added: Counter[tuple[str, str, str]], removed: Removed
) -> None:
    """RELATED weights are sums over chunks: apply this write's net change; an edge at zero is deleted."""
    delta: dict[tuple[str, str, str], float] = {}
    for key in set(added) | set(removed.weights):
        change = added.get(key, 0.0) - removed.weights.get(key, 0.0)
        if abs(change) > 1e-9:
            delta[key] = change
    ups = [{"s": s, "t": t, "type": typ, "w": w} for (s, t, typ), w in sorted(delta.items()) if w > 0]
    downs = [{"s": s, "t": t, "type": typ, "w": -w} for (s, t, typ), w in sorted(delta.items()) if w < 0]
    if ups:
        await tx.run(
            f"UNWIND $rows AS row MATCH (a:{ENTITY} {{collection: $collection, key: row.s}}) "
            f"MATCH (b:{ENTITY} {{collection: $collection, key: row.t}}) "
            f"MERGE (a)-[r:{RELATED} {{type: row.type}}]->(b) "
            "ON CREATE SET r.weight = row.w ON MATCH SET r.weight = r.weight + row.w",
            rows=ups, collection=collection,
        )  # fmt: skip
    if downs:
        await tx.run(
            f"UNWIND $rows AS row MATCH (a:{ENTITY} {{collection: $collection, key: row.s}})"
            f"-[r:{RELATED} {{type: row.type}}]->(b:{ENTITY} {{collection: $collection, key: row.t}}) "
            "SET r.weight = r.weight - row.w WITH r WHERE r.weight <= 1e-9 DELETE r",
            rows=downs, collection=collection,
        )  # fmt: skip


async def drop_orphans(tx: AsyncManagedTransaction, collection: str, keys: list[str]) -> None:
    """Entities no chunk mentions any more are gone with their last chunk."""
    if keys:
        await tx.run(
            f"MATCH (e:{ENTITY}) WHERE e.key IN $keys AND e.collection = $collection "
            f"AND NOT (e)<-[:{MENTIONS}]-() DETACH DELETE e",
            keys=keys, collection=collection,
        )  # fmt: skip
