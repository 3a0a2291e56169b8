"""The knowledge-graph stage: chunks, extracted entities and co-occurrence relations in a Neo4j-protocol
store (the embedded ArcadeDB Bolt server or Neo4j), searched by entity linking plus multi-hop expansion."""
from __future__ import annotations

import asyncio
import json
import logging
import random
import re
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
from ray import serve
from ray.serve.handle import DeploymentHandle

from deployments.config import GraphConfig, redact_url
from deployments.errors import StageError, StageUnavailable
from deployments.extraction import extract, query_keys
from deployments.models import MAX_HOPS, Chunk, Extraction, GraphEdge, GraphNode, GraphResult, ScoredChunk, Subgraph

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
        extractor: Callable[[Chunk], Extraction] = extract,
    ):
        self.config = config
        self._uri = uri
        self._extract = extractor
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
        extractions = [self._extract(chunk) for chunk in chunks]
        for chunk, ex in zip(chunks, extractions):
            keys = []
            for e in ex.entities:
                if not e.key:
                    continue
                entities.setdefault(e.key, {"key": e.key, "name": e.name, "type": e.type})
                keys.append(e.key)
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
                "idx: row.idx, text: row.text, metadata: row.metadata, keys: row.keys, rel_src: row.rel_src, "
                "rel_tgt: row.rel_tgt, rel_type: row.rel_type, rel_w: row.rel_w}) "
                f"WITH c, row UNWIND row.keys AS key MATCH (e:{ENTITY} {{collection: $collection, key: key}}) "
                f"CREATE (c)-[:{MENTIONS}]->(e)",
                rows=chunk_rows, collection=collection,
            )  # fmt: skip
            await _apply_weights(tx, collection, added, removed)
            await _drop_orphans(tx, collection, sorted(old_keys - entities.keys()))

        await self._run(True, work, self.config.write_timeout_s)
        return {"chunks": len(chunk_rows), "entities": len(entity_rows), "relations": len({(s, t) for s, t, _ in added})}

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

        A chunk scores the sum of 1/(1+hops) over the entities it mentions (linked entities count 1).
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
            nodes = {row["key"]: GraphNode(id=row["key"], name=row["name"], type=row["type"], hops=0) for row in linked}
            # Breadth-first, one single-hop query per level: ArcadeDB runs a variable-length pattern
            # (-[:RELATED*1..n]-) as a depth-first enumeration of every path, which took 2.4 s at 3 hops
            # on a 2k-entity test graph (180k paths) where three index-seek + expand levels take milliseconds.
            # Each level keeps the neighbours most strongly tied to the frontier, within max_nodes.
            frontier = list(nodes)
            for depth in range(1, hops + 1):
                room = cfg.max_nodes - len(nodes)
                if room <= 0 or not frontier:
                    break
                level = await (
                    await tx.run(
                        f"MATCH (s:{ENTITY})-[r:{RELATED}]-(x:{ENTITY}) "
                        "WHERE s.key IN $frontier AND s.collection = $collection AND NOT x.key IN $seen "
                        "RETURN x.key AS key, x.name AS name, x.type AS type, sum(r.weight) AS strength "
                        "ORDER BY strength DESC, key LIMIT $room",
                        frontier=frontier, seen=list(nodes), collection=collection, room=room,
                    )  # fmt: skip
                ).data()
                frontier = []
                for row in level:
                    if row["key"] not in nodes:
                        nodes[row["key"]] = GraphNode(id=row["key"], name=row["name"], type=row["type"], hops=depth)
                        frontier.append(row["key"])
            node_keys = list(nodes)
            edges = [
                GraphEdge(source=row["s"], target=row["t"], type=row["type"], weight=row["w"])
                for row in await (
                    await tx.run(
                        f"MATCH (a:{ENTITY})-[r:{RELATED}]->(b:{ENTITY}) "
                        "WHERE a.key IN $keys AND a.collection = $collection AND b.key IN $keys "
                        "RETURN a.key AS s, b.key AS t, r.type AS type, r.weight AS w "
                        "ORDER BY w DESC, s, t LIMIT $max_edges",
                        keys=node_keys, collection=collection, max_edges=cfg.max_edges,
                    )  # fmt: skip
                ).data()
            ]
            # Scored in the store (a parameter map looked up per mention), so only the top chunks' text travels.
            rows = await (
                await tx.run(
                    f"MATCH (e:{ENTITY})<-[:{MENTIONS}]-(c:{CHUNK}) WHERE e.key IN $keys AND e.collection = $collection "
                    "WITH c, sum($weights[e.key]) AS score ORDER BY score DESC, c.id LIMIT $limit "
                    "RETURN c.id AS id, c.doc_id AS doc_id, c.text AS text, c.metadata AS metadata, score",
                    keys=node_keys, weights={k: 1.0 / (1 + n.hops) for k, n in nodes.items()},
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


async def _drop_orphans(tx: AsyncManagedTransaction, collection: str, keys: list[str]) -> None:
    """Entities no chunk mentions any more are gone with their last chunk."""
    if keys:
        await tx.run(
            f"MATCH (e:{ENTITY}) WHERE e.key IN $keys AND e.collection = $collection "
            f"AND NOT (e)<-[:{MENTIONS}]-() DETACH DELETE e",
            keys=keys, collection=collection,
        )  # fmt: skip


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
