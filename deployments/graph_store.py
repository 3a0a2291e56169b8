"""The knowledge-graph stage: chunks, extracted entities and co-occurrence relations in a Neo4j-protocol
store (the embedded ArcadeDB Bolt server or Neo4j), searched by entity linking plus multi-hop expansion."""
from __future__ import annotations

import asyncio
import base64
import inspect
import json
import logging
import math
import random
import re
from collections import Counter
from typing import Any, Awaitable, Callable

from neo4j import AsyncDriver, AsyncGraphDatabase, AsyncManagedTransaction, unit_of_work
from neo4j.graph import Node, Path, Relationship
from neo4j.exceptions import (
    AuthError,
    DriverError,
    Neo4jError,
    ServiceUnavailable,
    SessionExpired,
    TransientError,
)
from ray import serve
from ray.serve.handle import DeploymentHandle

from deployments.config import GraphConfig, redact_url
from deployments.cypher_guard import UnsafeQuery, check_read_only
from deployments.errors import BadRequest, NotFound, StageError, StageUnavailable
from deployments.extraction import normalize_name, query_keys
from deployments.llm_extraction import make_extractor
from deployments.models import (
    MAX_HOPS,
    Chunk,
    EntityResponse,
    Extraction,
    GraphEdge,
    GraphNode,
    GraphQueryResponse,
    GraphResult,
    RelationProvenance,
    ScoredChunk,
    Subgraph,
)
from deployments.observability import configure_logging

log = logging.getLogger("graphrag.graph")

_REL_TYPE = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
_LABEL = re.compile(r"^[A-Z][A-Za-z0-9_]{0,63}$")


def _checked(name: str, pattern: re.Pattern) -> str:
    """A label or relationship type for query text: only this module's constants, and checked anyway."""
    if not pattern.fullmatch(name):
        raise ValueError(f"invalid label or relationship type {name!r}")
    return name


CHUNK = _checked("Chunk", _LABEL)
ENTITY = _checked("Entity", _LABEL)
MENTIONS = _checked("MENTIONS", _REL_TYPE)
RELATED = _checked("RELATED", _REL_TYPE)  # the relation's own type (e.g. CO_OCCURS) is a property: data

# Uniqueness of (key, collection) and (id, collection) is what makes concurrent MERGEs safe: without it two
# transactions each create the same entity (seen with ArcadeDB's optimistic MVCC); with it the later commit
# fails and is retried. ArcadeDB seeks these composite indexes for `key IN $keys AND collection = $c`.
# Applied by the embedded server at start, and lazily by GraphService against an external server.
SCHEMA = (
    f"CREATE CONSTRAINT entity_key IF NOT EXISTS FOR (e:{ENTITY}) REQUIRE (e.key, e.collection) IS UNIQUE",
    f"CREATE CONSTRAINT chunk_id IF NOT EXISTS FOR (c:{CHUNK}) REQUIRE (c.id, c.collection) IS UNIQUE",
    f"CREATE INDEX chunk_doc_id IF NOT EXISTS FOR (c:{CHUNK}) ON (c.doc_id)",
)

# Attempts at one transaction after a dropped connection, and after a write conflict.
_CONNECT_ATTEMPTS = 3
_CONFLICT_ATTEMPTS = 12


def _is_conflict(exc: Neo4jError) -> bool:
    # ArcadeDB reports optimistic-concurrency conflicts as generic errors naming the Java exception, and a
    # concurrent MERGE of the same entity as a uniqueness violation: both succeed when run again.
    text = f"{exc.code} {exc.message}"
    return any(s in text for s in ("ConcurrentModification", "NeedRetry", "ConstraintValidationFailed", "DuplicatedKey"))


class GraphService:
    """Writes chunks and their entity graph; searches it by linked entities and multi-hop expansion."""

    def __init__(
        self,
        config: GraphConfig,
        uri: str | Callable[[], Awaitable[str]],
        extractor: Callable[[Chunk], Extraction | Awaitable[Extraction]] | None = None,
    ):
        self.config = config
        self._uri = uri
        # Offline by default; the LLM provider race when graph.extraction.providers is set.
        self._extract = extractor if extractor is not None else make_extractor(config.extraction)
        self._driver: AsyncDriver | None = None
        self._resolved_uri: str | None = None
        self._lock = asyncio.Lock()
        self._schema_done = False

    # ---- connection -----------------------------------------------------------------------------

    async def _get_driver(self) -> AsyncDriver:
        if self._driver is not None:
            return self._driver
        async with self._lock:
            if self._driver is None:
                try:
                    uri = self._uri if isinstance(self._uri, str) else await self._uri()
                except Exception as exc:
                    raise StageUnavailable("graph", f"could not get the Bolt server's URI: {type(exc).__name__}: {exc}") from exc
                self._resolved_uri = uri
                self._driver = AsyncGraphDatabase.driver(
                    uri,
                    auth=(self.config.user, self.config.password.get_secret_value()),
                    connection_timeout=min(5.0, self.config.query_timeout_s),
                    connection_acquisition_timeout=self.config.query_timeout_s,
                    # Retries are ours (_run): a refused connection should fail fast, not for 30 s.
                    max_transaction_retry_time=0,
                )
        return self._driver

    async def aclose(self) -> None:
        driver, self._driver = self._driver, None
        if driver is not None:
            await driver.close()
        close = getattr(self._extract, "aclose", None)
        if close is not None:
            await close()

    async def _extract_all(self, chunks: list[Chunk]) -> list[Extraction]:
        """Extractions in chunk order; an async extractor (the LLM race) bounds its own concurrency."""
        results = [self._extract(chunk) for chunk in chunks]
        if any(inspect.isawaitable(r) for r in results):
            results = await asyncio.gather(*(_awaited(r) for r in results))
        return list(results)

    def _where(self) -> str:
        return redact_url(self._resolved_uri) or "the Bolt server"

    async def _run(self, write: bool, work: Callable[[AsyncManagedTransaction], Awaitable[Any]], timeout: float) -> Any:
        """Runs `work` in one managed transaction with a deadline; driver errors become stage errors."""

        async def attempt_all() -> Any:
            driver = await self._get_driver()
            await self._ensure_schema(driver)
            tx_work = unit_of_work(timeout=timeout)(work)
            attempt = 0
            while True:
                attempt += 1
                try:
                    async with driver.session(database=self.config.database) as session:
                        if write:
                            return await session.execute_write(tx_work)
                        return await session.execute_read(tx_work)
                except Neo4jError as exc:
                    # Concurrent writers: each round one of them commits, so retry (jittered) up to the deadline.
                    if attempt < _CONFLICT_ATTEMPTS and (isinstance(exc, TransientError) or _is_conflict(exc)):
                        log.debug("graph transaction conflict, retrying (attempt %d): %s", attempt, exc.code)
                        await asyncio.sleep(min(1.0, 0.02 * 2**attempt) * (0.5 + random.random()))
                        continue
                    raise
                except (ServiceUnavailable, SessionExpired):
                    # A pooled connection the server dropped (restart) is replaced on the next attempt.
                    if attempt < _CONNECT_ATTEMPTS:
                        await asyncio.sleep(0.1 * attempt)
                        continue
                    raise

        try:
            return await asyncio.wait_for(attempt_all(), timeout)
        except (asyncio.TimeoutError, TimeoutError) as exc:
            raise StageUnavailable("graph", f"{self._where()} did not answer within {timeout:g}s") from exc
        except AuthError as exc:
            raise StageUnavailable("graph", f"{self._where()} refused the credentials: {exc.message}") from exc
        except (ServiceUnavailable, SessionExpired) as exc:
            raise StageUnavailable("graph", f"cannot reach {self._where()}: {exc}") from exc
        except TransientError as exc:
            raise StageUnavailable("graph", f"{self._where()} kept failing transiently: {exc.code}: {exc.message}") from exc
        except Neo4jError as exc:
            raise StageError("graph", f"{exc.code}: {exc.message}") from exc
        except (DriverError, OSError) as exc:
            raise StageUnavailable("graph", f"cannot reach {self._where()}: {type(exc).__name__}: {exc}") from exc

    async def _ensure_schema(self, driver: AsyncDriver) -> None:
        # The embedded server created the schema at start; an external one gets it on first use.
        if self._schema_done:
            return
        if not self.config.embedded:
            for statement in SCHEMA:
                await driver.execute_query(statement, database_=self.config.database)
        self._schema_done = True

    async def ping(self) -> str:
        async def work(tx: AsyncManagedTransaction) -> str:
            summary = await (await tx.run("RETURN 1 AS ok")).consume()
            return summary.server.agent

        agent = await self._run(False, work, self.config.query_timeout_s)
        return f"bolt {agent} at {self._where()}"

    # ---- writes ---------------------------------------------------------------------------------

    async def upsert(self, collection: str, chunks: list[Chunk]) -> dict:
        """Replaces the chunks of these chunks' documents and their graph, in one transaction.

        Returns what this batch holds: {"chunks", "entities" (distinct), "relations" (distinct pairs)}.
        """
        if not chunks:
            return {"chunks": 0, "entities": 0, "relations": 0}
        chunks = list({c.chunk_id: c for c in chunks}.values())  # a repeated chunk id: the last one wins
        doc_ids = sorted({c.doc_id for c in chunks})
        entities: dict[str, dict] = {}
        chunk_rows = []
        added: Counter[tuple[str, str, str]] = Counter()
        extractions = await self._extract_all(chunks)
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
            rels = _chunk_relations(ex, set(keys))
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
                }
            )
        entity_rows = list(entities.values())

        async def work(tx: AsyncManagedTransaction) -> None:
            removed, old_keys = await _remove_chunks(tx, collection, doc_ids)
            await tx.run(
                f"UNWIND $rows AS row MERGE (e:{ENTITY} {{collection: $collection, key: row.key}}) "
                "ON CREATE SET e.name = row.name, e.type = row.type",
                rows=entity_rows, collection=collection,
            )  # fmt: skip
            await tx.run(
                f"UNWIND $rows AS row CREATE (c:{CHUNK} {{id: row.id, doc_id: row.doc_id, collection: $collection, "
                "idx: row.idx, text: row.text, metadata: row.metadata, keys: row.keys, lead: row.lead, rel_src: row.rel_src, "
                "rel_tgt: row.rel_tgt, rel_type: row.rel_type, rel_w: row.rel_w}) "
                f"WITH c, row UNWIND row.keys AS key MATCH (e:{ENTITY} {{collection: $collection, key: key}}) "
                f"CREATE (c)-[:{MENTIONS}]->(e)",
                rows=chunk_rows, collection=collection,
            )  # fmt: skip
            await _apply_weights(tx, collection, added, removed)
            await _drop_orphans(tx, collection, sorted(old_keys - entities.keys()))

        await self._run(True, work, self.config.write_timeout_s)
        return {
            "chunks": len(chunk_rows),
            "entities": len(entity_rows),
            "relations": len({(s, t) for s, t, _ in added}),
            "extractors": dict(Counter(ex.extractor for ex in extractions)),
            "dropped_relations": sum(ex.dropped_relations for ex in extractions),
        }

    async def delete_documents(self, collection: str, doc_ids: list[str]) -> int:
        """Removes these documents' chunks, their mentions and what they added to the graph; returns chunks removed."""
        if not doc_ids:
            return 0

        async def work(tx: AsyncManagedTransaction) -> int:
            removed, old_keys = await _remove_chunks(tx, collection, sorted(set(doc_ids)))
            await _apply_weights(tx, collection, Counter(), removed)
            await _drop_orphans(tx, collection, sorted(old_keys))
            return removed.total_chunks

        return await self._run(True, work, self.config.write_timeout_s)

    # ---- reads ----------------------------------------------------------------------------------

    async def counts(self, collection: str) -> dict:
        async def work(tx: AsyncManagedTransaction) -> dict:
            out = {}
            for name, query in (
                ("chunks", f"MATCH (c:{CHUNK}) WHERE c.collection = $collection RETURN count(c) AS n"),
                ("entities", f"MATCH (e:{ENTITY}) WHERE e.collection = $collection RETURN count(e) AS n"),
                ("relations", f"MATCH (a:{ENTITY})-[r:{RELATED}]->(:{ENTITY}) WHERE a.collection = $collection RETURN count(r) AS n"),
            ):
                out[name] = (await (await tx.run(query, collection=collection)).single())["n"]
            return out

        return await self._run(False, work, self.config.query_timeout_s)

    async def search(self, collection: str, query: str, max_hops: int, limit: int) -> GraphResult:
        """Chunks mentioning entities linked from the query or reached from them within `max_hops` RELATED hops.

        A chunk scores the sum of its mentioned entities' weights: a linked entity weighs its specificity (fewer
        chunks mentioning it, more weight), a reached one its tie to the linked ones, specificity and depth.
        No linked entity is a legitimate empty result.
        """
        hops = int(max_hops)
        if not 0 <= hops <= MAX_HOPS:
            raise ValueError(f"max_hops must be within 0..{MAX_HOPS}, not {max_hops}")
        limit = max(1, min(int(limit), self.config.max_chunks))
        keys = query_keys(query)
        if not keys:
            return GraphResult(chunks=[], subgraph=Subgraph(), linked=[])
        cfg = self.config

        async def work(tx: AsyncManagedTransaction) -> GraphResult:
            # Entity linking: an index seek on Entity.key (never a CONTAINS scan).
            linked = await (
                await tx.run(
                    f"MATCH (e:{ENTITY}) WHERE e.key IN $keys AND e.collection = $collection "
                    "RETURN e.key AS key, e.name AS name, e.type AS type ORDER BY key LIMIT $max_nodes",
                    keys=keys, collection=collection, max_nodes=cfg.max_nodes,
                )  # fmt: skip
            ).data()
            if not linked:
                return GraphResult(chunks=[], subgraph=Subgraph(), linked=[])
            kept = set(longest_matches([row["key"] for row in linked]))
            linked = [row for row in linked if row["key"] in kept]
            nodes = {row["key"]: GraphNode(id=row["key"], name=row["name"], type=row["type"], hops=0) for row in linked}
            # A linked entity weighs by its specificity: "film" (in hundreds of chunks) adds little, a name a lot.
            mentions = await _mention_counts(tx, collection, list(nodes))
            weights = await _expand(
                tx, collection, nodes, hops, cfg.max_nodes, {k: specificity(mentions.get(k, 1)) for k in nodes}
            )
            node_keys = list(nodes)
            edges = await _edges_among(tx, collection, node_keys, cfg.max_edges)
            # Scored in the store (a parameter map looked up per mention), so only the top chunks' text travels.
            rows = await (
                await tx.run(
                    f"MATCH (e:{ENTITY})<-[:{MENTIONS}]-(c:{CHUNK}) WHERE e.key IN $keys AND e.collection = $collection "
                    "WITH c, sum($weights[e.key]) AS score ORDER BY score DESC, c.id LIMIT $limit "
                    "RETURN c.id AS id, c.doc_id AS doc_id, c.text AS text, c.metadata AS metadata, score",
                    keys=node_keys, weights=weights,
                    collection=collection, limit=limit,
                )  # fmt: skip
            ).data()
            chunks = [
                ScoredChunk(
                    chunk_id=row["id"], doc_id=row["doc_id"], text=row["text"], score=float(row["score"]),
                    metadata=_metadata(row["metadata"]),
                )  # fmt: skip
                for row in sorted(rows, key=lambda r: (-r["score"], r["id"]))
            ]
            ordered = sorted(nodes.values(), key=lambda n: (n.hops, n.id))
            return GraphResult(chunks=chunks, subgraph=Subgraph(nodes=ordered, edges=edges), linked=[r["key"] for r in linked])

        return await self._run(False, work, self.config.query_timeout_s)

    async def links(self, collection: str, query: str, seed_ids: list[str], chunk_ids: list[str]) -> dict[str, float]:
        """How strongly each of `chunk_ids` is tied to the seed chunks: the summed specificity of the entities
        one is about (names in its first sentence) and the other mentions, leaving out entities the query
        names (those tie every candidate to the topic, not to the seeds). A passage about what the best
        passage mentions scores high: the second hop of a multi-hop question. Chunks with no tie are absent."""
        seeds = sorted(set(seed_ids))
        candidates = sorted(set(chunk_ids) - set(seeds))
        if not seeds or not candidates:
            return {}
        exclude = set(query_keys(query))

        async def work(tx: AsyncManagedTransaction) -> dict[str, float]:
            rows = await (
                await tx.run(
                    f"MATCH (s:{CHUNK})-[:{MENTIONS}]->(e:{ENTITY})<-[:{MENTIONS}]-(c:{CHUNK}) "
                    "WHERE s.id IN $seeds AND s.collection = $collection AND c.id IN $candidates "
                    "AND c.collection = $collection "
                    "RETURN c.id AS id, c.lead AS c_lead, s.lead AS s_lead, collect(DISTINCT e.key) AS keys",
                    seeds=seeds, candidates=candidates, collection=collection,
                )  # fmt: skip
            ).data()
            shared: dict[str, set[str]] = {}
            for row in rows:
                about = set(row["c_lead"] or []) | set(row["s_lead"] or [])
                keys = {k for k in row["keys"] if k in about and k not in exclude}
                if keys:
                    shared.setdefault(row["id"], set()).update(keys)
            mentions = await _mention_counts(tx, collection, sorted({k for keys in shared.values() for k in keys}))
            return {cid: sum(specificity(mentions.get(k, 1)) for k in keys) for cid, keys in shared.items()}

        return await self._run(False, work, self.config.query_timeout_s)

    async def query(self, cypher: str, parameters: dict[str, Any] | None = None, max_rows: int | None = None) -> GraphQueryResponse:
        """A user's read-only Cypher: statically checked (the guard ArcadeDB needs), then run in a READ
        transaction (the guard Neo4j enforces) under the user-query timeout; at most the row cap is returned."""
        try:
            check_read_only(cypher)
        except UnsafeQuery as exc:
            raise BadRequest(f"query refused: {exc}") from None
        cap = min(max_rows or self.config.user_query_max_rows, self.config.user_query_max_rows)

        async def work(tx: AsyncManagedTransaction) -> GraphQueryResponse:
            try:
                result = await tx.run(cypher, parameters or {})
                records = await result.fetch(cap + 1)  # one more than the cap tells whether rows were cut
                columns = list(result.keys())
            except Neo4jError as exc:
                if (exc.code or "").startswith("Neo.ClientError.Statement"):
                    raise BadRequest(f"the graph store rejected the query: {exc.message or exc.code}"[:1000]) from None
                raise
            rows = [[_jsonable(value) for value in record.values()] for record in records[:cap]]
            return GraphQueryResponse(columns=columns, rows=rows, truncated=len(records) > cap, row_cap=cap)

        return await self._run(False, work, self.config.user_query_timeout_s)

    async def entity(self, collection: str, name: str, hops: int = 1) -> EntityResponse:
        """An entity (looked up by its normalized name) with its neighbourhood, bounded by `entity_neighbours`
        nodes and `max_edges` edges, and the documents and chunks that support it and its relations."""
        key = normalize_name(name)
        if not key:
            raise BadRequest(f"entity name {name!r} has no letters or digits")
        if not 1 <= int(hops) <= MAX_HOPS:
            raise BadRequest(f"hops must be within 1..{MAX_HOPS}")
        cfg = self.config

        async def work(tx: AsyncManagedTransaction) -> EntityResponse | None:
            row = await (
                await tx.run(
                    f"MATCH (e:{ENTITY}) WHERE e.key = $key AND e.collection = $collection "
                    "RETURN e.key AS key, e.name AS name, e.type AS type",
                    key=key, collection=collection,
                )  # fmt: skip
            ).single()
            if row is None:
                return None
            center = GraphNode(id=row["key"], name=row["name"], type=row["type"], hops=0)
            nodes = {center.id: center}
            await _expand(tx, collection, nodes, int(hops), cfg.entity_neighbours + 1)
            edges = await _edges_among(tx, collection, list(nodes), cfg.max_edges)
            # Provenance: the chunks mentioning the entity hold what each added to its relations.
            mentions = await (
                await tx.run(
                    f"MATCH (e:{ENTITY})<-[:{MENTIONS}]-(c:{CHUNK}) WHERE e.key = $key AND e.collection = $collection "
                    "RETURN c.id AS id, c.doc_id AS doc_id, c.rel_src AS s, c.rel_tgt AS t, c.rel_type AS type "
                    "ORDER BY c.doc_id, c.id LIMIT $limit",
                    key=key, collection=collection, limit=cfg.max_chunks,
                )  # fmt: skip
            ).data()
            support: dict[tuple[str, str, str], list[tuple[str, str]]] = {}
            for m in mentions:
                for s, t, typ in zip(m["s"] or [], m["t"] or [], m["type"] or []):
                    if key in (s, t):
                        support.setdefault((s, t, typ), []).append((m["doc_id"], m["id"]))
            relations = [
                RelationProvenance(
                    source=e.source, target=e.target, type=e.type, weight=e.weight,
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

        found = await self._run(False, work, self.config.query_timeout_s)
        if found is None:
            raise NotFound(f"no entity {name!r} (key {key!r}) in collection {collection!r}")
        return found


# ---- transaction pieces -------------------------------------------------------------------------


class _Removed:
    def __init__(self) -> None:
        self.weights: Counter[tuple[str, str, str]] = Counter()
        self.total_chunks = 0


def _chunk_relations(ex: Extraction, keys: set[str]) -> Counter[tuple[str, str, str]]:
    """Relations of one chunk as (source, target, type) -> weight, undirected pairs stored source < target."""
    out: Counter[tuple[str, str, str]] = Counter()
    for r in ex.relations:
        if r.source == r.target or r.source not in keys or r.target not in keys or r.weight <= 0:
            continue
        s, t = sorted((r.source, r.target))
        out[(s, t, r.type)] += r.weight
    return out


async def _remove_chunks(tx: AsyncManagedTransaction, collection: str, doc_ids: list[str]) -> tuple[_Removed, set[str]]:
    """Deletes the chunks of `doc_ids` (and their MENTIONS); returns what they added to the graph."""
    removed = _Removed()
    old_keys: set[str] = set()
    rows = await (
        await tx.run(
            f"MATCH (c:{CHUNK}) WHERE c.doc_id IN $doc_ids AND c.collection = $collection "
            "RETURN c.keys AS keys, c.rel_src AS s, c.rel_tgt AS t, c.rel_type AS type, c.rel_w AS w",
            doc_ids=doc_ids, collection=collection,
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


async def _apply_weights(
    tx: AsyncManagedTransaction, collection: str, added: Counter[tuple[str, str, str]], removed: _Removed
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


async def _expand(
    tx: AsyncManagedTransaction, collection: str, nodes: dict[str, GraphNode], hops: int, max_nodes: int,
    weights: dict[str, float] | None = None,
) -> dict[str, float]:
    """Adds to `nodes` (the seeds, hops 0) the entities reached within `hops` RELATED hops, at most `max_nodes`
    in all; returns every node's weight (seeds: `weights`, default 1).

    Breadth-first, one single-hop query per level: ArcadeDB runs a variable-length pattern
    (-[:RELATED*1..n]-) as a depth-first enumeration of every path, which took 2.4 s at 3 hops
    on a 2k-entity test graph (180k paths) where three index-seek + expand levels take milliseconds.
    Each level keeps the neighbours most strongly tied to the frontier, each tie counted with the weight of
    the frontier entity; a kept neighbour weighs its tie (relative to the level's strongest) times its own
    specificity, over 1 + its depth, so a hub reached from a generic seed adds little.
    """
    weights = dict(weights or {key: 1.0 for key in nodes})
    frontier = list(nodes)
    for depth in range(1, hops + 1):
        room = max_nodes - len(nodes)
        if room <= 0 or not frontier:
            break
        level = await (
            await tx.run(
                f"MATCH (s:{ENTITY})-[r:{RELATED}]-(x:{ENTITY}) "
                "WHERE s.key IN $frontier AND s.collection = $collection AND NOT x.key IN $seen "
                "RETURN x.key AS key, x.name AS name, x.type AS type, sum(r.weight * $w[s.key]) AS strength "
                "ORDER BY strength DESC, key LIMIT $room",
                frontier=frontier, seen=list(nodes), collection=collection, room=room,
                w={k: weights[k] for k in frontier},
            )  # fmt: skip
        ).data()
        level = [row for row in level if row["key"] not in nodes and row["strength"] > 0]
        if not level:
            break
        mentions = await _mention_counts(tx, collection, [row["key"] for row in level])
        strongest = max(row["strength"] for row in level)
        frontier = []
        for row in level:
            nodes[row["key"]] = GraphNode(id=row["key"], name=row["name"], type=row["type"], hops=depth)
            weights[row["key"]] = specificity(mentions.get(row["key"], 1)) * row["strength"] / strongest / (1 + depth)
            frontier.append(row["key"])
    return weights


def specificity(mentions: int) -> float:
    """An entity's weight from how many chunks mention it: 1 for a single chunk, falling slowly for hubs."""
    return 1.0 / (1.0 + math.log(max(1, mentions)))


def longest_matches(keys: list[str]) -> list[str]:
    """Linked keys without those inside a longer linked key ("nolan" goes when "christopher nolan" links)."""
    padded = [f" {k} " for k in keys]
    return [k for k, p in zip(keys, padded) if not any(p in other and p != other for other in padded)]


async def _mention_counts(tx: AsyncManagedTransaction, collection: str, keys: list[str]) -> dict[str, int]:
    rows = await (
        await tx.run(
            f"MATCH (e:{ENTITY})<-[m:{MENTIONS}]-() WHERE e.key IN $keys AND e.collection = $collection "
            "RETURN e.key AS key, count(m) AS n",
            keys=keys, collection=collection,
        )  # fmt: skip
    ).data()
    return {row["key"]: int(row["n"]) for row in rows}


async def _edges_among(tx: AsyncManagedTransaction, collection: str, keys: list[str], max_edges: int) -> list[GraphEdge]:
    rows = await (
        await tx.run(
            f"MATCH (a:{ENTITY})-[r:{RELATED}]->(b:{ENTITY}) "
            "WHERE a.key IN $keys AND a.collection = $collection AND b.key IN $keys "
            "RETURN a.key AS s, b.key AS t, r.type AS type, r.weight AS w "
            "ORDER BY w DESC, s, t LIMIT $max_edges",
            keys=keys, collection=collection, max_edges=max_edges,
        )  # fmt: skip
    ).data()
    return [GraphEdge(source=row["s"], target=row["t"], type=row["type"], weight=row["w"]) for row in rows]


async def _drop_orphans(tx: AsyncManagedTransaction, collection: str, keys: list[str]) -> None:
    """Entities no chunk mentions any more are gone with their last chunk."""
    if keys:
        await tx.run(
            f"MATCH (e:{ENTITY}) WHERE e.key IN $keys AND e.collection = $collection "
            f"AND NOT (e)<-[:{MENTIONS}]-() DETACH DELETE e",
            keys=keys, collection=collection,
        )  # fmt: skip


async def _awaited(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def _jsonable(value: Any) -> Any:
    """A Bolt value as JSON: nodes, relationships and paths as maps; temporal and spatial values as text."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Node):
        return {"id": value.element_id, "labels": sorted(value.labels), "properties": {k: _jsonable(v) for k, v in value.items()}}
    if isinstance(value, Relationship):
        return {
            "id": value.element_id, "type": value.type,
            "start": value.start_node.element_id if value.start_node is not None else None,
            "end": value.end_node.element_id if value.end_node is not None else None,
            "properties": {k: _jsonable(v) for k, v in value.items()},
        }  # fmt: skip
    if isinstance(value, Path):
        return {"nodes": [_jsonable(n) for n in value.nodes], "relationships": [_jsonable(r) for r in value.relationships]}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode()
    iso = getattr(value, "iso_format", None)
    return iso() if callable(iso) else str(value)


def _metadata(raw: Any) -> dict:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


# ---- the Serve deployment ----------------------------------------------------------------------


@serve.deployment
class Graph(GraphService):
    """The graph stage. `uri` is the Bolt URI (AppConfig.bolt_uri); without it, `bolt` (the BoltServer
    deployment) is asked once, lazily, for the URI of the server it runs."""

    def __init__(self, config: GraphConfig, uri: str | None = None, bolt: DeploymentHandle | None = None):
        configure_logging()
        if uri is None and config.bolt_uri:
            uri = config.bolt_uri
        if uri is None:
            if bolt is None:
                raise ValueError("Graph needs a Bolt URI or the BoltServer deployment handle")

            async def ask_bolt() -> str:
                return (await bolt.info.remote())["uri"]

            super().__init__(config, ask_bolt)
        else:
            super().__init__(config, uri)

    async def __del__(self) -> None:  # Serve awaits an async __del__ on replica shutdown
        await self.aclose()
