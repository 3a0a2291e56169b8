"""The knowledge-graph stage's logic: chunks, extracted entities and co-occurrence relations in a Neo4j-protocol
store (the embedded ArcadeDB Bolt server or Neo4j), searched by entity linking plus multi-hop expansion."""
from __future__ import annotations

import asyncio
import inspect
import json
import logging
import random
from collections import Counter
from typing import Any, Awaitable, Callable

from neo4j import AsyncDriver, AsyncGraphDatabase, AsyncManagedTransaction, unit_of_work
from neo4j.exceptions import (
    AuthError,
    DriverError,
    Neo4jError,
    ServiceUnavailable,
    SessionExpired,
    TransientError,
)

from deployments.config import GraphConfig, redact_url
from deployments.errors import BadRequest, NotFound, StageError, StageUnavailable
from deployments.graph.cypher_guard import UnsafeQuery, check_read_only
from deployments.graph.extraction import normalize_name, query_keys
from deployments.graph.llm_extraction import make_extractor
from deployments.graph.schema import (
    _CONFLICT_ATTEMPTS,
    _CONNECT_ATTEMPTS,
    CHUNK,
    ENTITY,
    MENTIONS,
    RELATED,
    SCHEMA,
    _is_conflict,
)
from deployments.graph.transactions import (
    _apply_weights,
    _awaited,
    _chunk_relations,
    _drop_orphans,
    _edges_among,
    _expand,
    _jsonable,
    _mention_counts,
    _metadata,
    _remove_chunks,
    longest_matches,
    specificity,
)
from deployments.models import (
    MAX_HOPS,
    Chunk,
    EntityResponse,
    Extraction,
    GraphNode,
    GraphQueryResponse,
    GraphResult,
    RelationProvenance,
    ScoredChunk,
    Subgraph,
)

log = logging.getLogger("graphrag.graph")



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


