"""The knowledge-graph stage: chunks, typed entities and relations in a Neo4j-protocol store (the embedded ArcadeDB
Bolt server or Neo4j), searched by a local walk over each replica's in-memory index (index/). What runs in the store
lives beside it: the connection and its retries (store/session.py), the writes (store/writes.py), retrieval
(store/retrieval.py), the explorer's endpoints (queries/explorer.py); this class checks the requests and wires them."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

from neo4j import AsyncManagedTransaction

from deployments.config import GraphConfig
from deployments.errors import BadRequest, NotFound
from deployments.graph.extraction.llm import make_extractor
from deployments.graph.extraction.offline import query_keys
from deployments.graph.index.collection import CollectionIndex
from deployments.graph.index.live import LiveIndexes
from deployments.graph.passages import Passages
from deployments.graph.queries.explorer import entity_work
from deployments.graph.queries.user_query import UserQueries
from deployments.graph.store.backup import dump_counts, export_work, import_work, read_dump, write_dump
from deployments.graph.store.retrieval import chunks_work, links_work, search_work
from deployments.graph.store.schema import CHUNK, ENTITY, MENTIONS
from deployments.graph.store.session import BoltSession
from deployments.graph.store.transactions import metadata
from deployments.graph.store.writes import counts_work, delete_work, drop_orphans, drop_work, ingest_rows, upsert_work
from deployments.graph.ties import MentionTable
from deployments.models import (
    MAX_HOPS,
    Chunk,
    EntityResponse,
    Extraction,
    GraphEdge,
    GraphNode,
    GraphQueryResponse,
    GraphResult,
    PackedVectors,
    ScoredChunk,
    Subgraph,
)
from deployments.text import normalize_name

log = logging.getLogger("graphrag.graph")

Extractor = Callable[[Chunk], Extraction | Awaitable[Extraction]]


async def _awaited(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class GraphService:
    """Writes chunks and their entity graph; searches it by linked entities and multi-hop expansion."""

    def __init__(
        self,
        config: GraphConfig,
        uri: str,
        extractor: Extractor | None = None,
        embed: Callable[[list[str]], Awaitable[list[list[float]]]] | None = None,
        passages: Passages | None = None,
    ):
        self.config = config
        self.session = BoltSession(config, uri)
        # Searches run on an in-memory index of each collection (graph.index), kept current from the store.
        self._embed = embed if config.index.query_vectors else None
        self._passages = passages
        self._live = (
            LiveIndexes(
                lambda work, timeout: self.session.run(False, work, timeout),
                config.index.params(),
                config.index.check_interval_ms / 1000,
                check_timeout_s=config.query_timeout_s,
                build_timeout_s=config.index.build_timeout_s,
                snapshots=Path(config.index.snapshot_dir) if config.index.snapshot_dir else None,
                snapshot_interval_s=config.index.snapshot_interval_s,
            )  # fmt: skip
            if config.index.enabled
            else None
        )
        # Offline by default; the LLM provider race when graph.extraction.providers is set.
        self._extract = extractor if extractor is not None else make_extractor(config.extraction)
        # User Cypher runs as the store's read-only user, on a driver of its own (queries/user_query.py).
        self._user_queries = UserQueries(config, self._uri)

    @property
    def uri(self) -> str:
        return self.session.uri

    async def _uri(self) -> str:
        return self.session.uri

    def start_warming(self) -> asyncio.Task | None:
        """Builds every stored collection's index in the background (graph.index.warm_on_start): searches that
        arrive meanwhile wait for the same build. A failure is logged; the first search then builds again."""
        live = self._live
        if live is None or not self.config.index.warm_on_start:
            return None

        async def warm() -> None:
            try:
                collections = await live.warm()
                log.info("graph indexes ready: %s", ", ".join(collections) or "no collections yet")
            except Exception as exc:
                log.warning(
                    "warming the graph indexes failed (%s: %s); each builds on its first search",
                    type(exc).__name__,
                    exc,
                )

        self._warming = asyncio.get_running_loop().create_task(warm())
        return self._warming

    async def aclose(self) -> None:
        warming = getattr(self, "_warming", None)
        if warming is not None:
            warming.cancel()
        await self.session.aclose()
        await self._user_queries.aclose()
        close = getattr(self._extract, "aclose", None)
        if close is not None:
            await close()

    async def ping(self) -> str:
        return await self.session.ping()

    # ---- writes ---------------------------------------------------------------------------------

    async def _extract_all(self, chunks: list[Chunk]) -> list[Extraction]:
        """Extractions in chunk order; an async extractor (the LLM race) bounds its own concurrency. A batch
        extractor (spaCy) parses the batch in a worker thread: the event loop serves searches meanwhile, and the
        parse overlaps the vector stage's embedding of the same chunks."""
        many = getattr(self._extract, "extract_many", None)
        if many is not None:
            return await asyncio.to_thread(many, chunks)
        results = [self._extract(chunk) for chunk in chunks]
        if any(inspect.isawaitable(r) for r in results):
            return list(await asyncio.gather(*(_awaited(r) for r in results)))
        return cast(list[Extraction], results)

    async def upsert(self, collection: str, chunks: list[Chunk], given: dict[str, Extraction] | None = None) -> dict:
        """Replaces the chunks of these chunks' documents and their graph, in one transaction. `given`: extractions
        the caller made (by chunk id; the cluster bulk path's workers), stored as they are; the rest are extracted.
        Returns what this batch holds: {"chunks", "entities" (distinct), "relations" (distinct pairs)}."""
        if not chunks:
            return {"chunks": 0, "entities": 0, "relations": 0}
        chunks = list({c.chunk_id: c for c in chunks}.values())  # a repeated chunk id: the last one wins
        doc_ids = sorted({c.doc_id for c in chunks})
        given = given or {}
        missing = [c for c in chunks if c.chunk_id not in given]
        found = dict(zip((c.chunk_id for c in missing), await self._extract_all(missing))) if missing else {}
        extractions = [given.get(c.chunk_id) or found[c.chunk_id] for c in chunks]
        rows = ingest_rows(chunks, extractions)
        await self.session.run(True, upsert_work(collection, doc_ids, rows), self.config.write_timeout_s)
        return {
            "chunks": len(rows.chunks),
            "entities": len(rows.entities),
            "relations": len({(s, t) for s, t, _ in rows.added}),
            "extractors": dict(Counter(ex.extractor for ex in extractions)),
            "dropped_relations": sum(ex.dropped_relations for ex in extractions),
        }

    async def delete_documents(self, collection: str, doc_ids: list[str]) -> int:
        """Removes these documents' chunks, their mentions and what they added to the graph; returns chunks removed."""
        if not doc_ids:
            return 0
        return await self.session.run(True, delete_work(collection, doc_ids), self.config.write_timeout_s)

    async def drop_collection(self, collection: str) -> int | None:
        """Removes the whole collection from the store and this replica's index (the other replicas' indexes follow
        at their next version check); the chunks removed, None when the store held nothing of it."""
        chunks = await self.session.run(True, drop_work(collection), self.config.write_timeout_s)
        if self._live is not None:
            self._live.forget(collection)
        return chunks

    async def counts(self, collection: str) -> dict:
        return await self.session.run(False, counts_work(collection), self.config.query_timeout_s)

    # ---- backup (graph/backup.py) -----------------------------------------------------------------

    async def export_collection(self, collection: str, path: str) -> dict:
        """The collection's graph, read in one transaction, written to `path` (on this machine)."""
        dump = await self.session.run(False, export_work(collection), self.config.write_timeout_s)
        size = await asyncio.to_thread(write_dump, dump, Path(path))
        return {**dump_counts(dump), "bytes": size}

    async def import_collection(self, collection: str, path: str) -> dict:
        """Loads an exported graph into `collection`, which must be empty (a restore never merges)."""
        held = await self.counts(collection)
        if held.get("chunks") or held.get("entities"):
            raise BadRequest(
                f"the graph store already holds collection {collection!r}: restore into an empty data folder"
            )
        dump = await asyncio.to_thread(read_dump, Path(path))
        await self.session.run(True, import_work(collection, dump), self.config.write_timeout_s)
        return dump_counts(dump)

    # ---- retrieval ------------------------------------------------------------------------------

    async def chunk_ids(self, collection: str) -> dict[str, str]:
        """Every chunk id with its document id (the consistency check)."""

        async def work(tx: AsyncManagedTransaction) -> dict[str, str]:
            rows = await (
                await tx.run(
                    f"MATCH (c:{CHUNK}) WHERE c.collection = $collection RETURN c.id AS id, c.doc_id AS doc_id",
                    collection=collection,
                )
            ).data()
            return {row["id"]: row["doc_id"] for row in rows}

        return await self.session.run(False, work, self.config.write_timeout_s)

    async def orphan_entities(self, collection: str, remove: bool = False) -> list[str]:
        """Keys of entities no chunk mentions (a consistent graph has none); with `remove`, they are deleted."""

        async def work(tx: AsyncManagedTransaction) -> list[str]:
            rows = await (
                await tx.run(
                    f"MATCH (e:{ENTITY}) WHERE e.collection = $collection AND NOT (e)<-[:{MENTIONS}]-() RETURN e.key AS key",
                    collection=collection,
                )
            ).data()
            keys = sorted(row["key"] for row in rows)
            if remove:
                await drop_orphans(tx, collection, keys)
            return keys

        return await self.session.run(remove, work, self.config.write_timeout_s)

    async def search(
        self,
        collection: str,
        query: str,
        max_hops: int,
        limit: int,
        query_vector: list[float] | None = None,
        texts: bool = True,
        seeds: list[tuple[str, float]] | None = None,
    ) -> GraphResult:
        """Chunks mentioning entities linked from the query or reached from them within `max_hops` RELATED hops.
        `query_vector` (the query's embedding, from the ingress) seeds the in-memory index's walk with the passages
        nearest it; `seeds` (chunk id, cosine), when the caller has them, are those passages. `texts=False`:
        the in-memory index's chunks come as ids and scores, their texts and vectors left to the caller (the
        ingress reads those it lacks from the vector stage: one hop fewer than this replica reading them).

        A chunk scores the sum of its mentioned entities' weights: a linked entity weighs its specificity (fewer
        chunks mentioning it, more weight), a reached one its tie to the linked ones, specificity and depth.
        No linked entity is a legitimate empty result.
        """
        hops = int(max_hops)
        if not 0 <= hops <= MAX_HOPS:
            raise ValueError(f"max_hops must be within 0..{MAX_HOPS}, not {max_hops}")
        limit = max(1, min(int(limit), self.config.max_chunks))
        if self._live is not None:
            return await self._index_search(collection, query, hops, limit, query_vector, texts, seeds)
        keys = query_keys(query)
        if not keys:
            return GraphResult(chunks=[], subgraph=Subgraph(), linked=[])
        return await self.session.run(
            False, search_work(collection, keys, hops, limit, self.config), self.config.query_timeout_s
        )

    async def _index_search(
        self,
        collection: str,
        query: str,
        hops: int,
        limit: int,
        query_vector: list[float] | None,
        texts: bool,
        seeds: list[tuple[str, float]] | None,
    ) -> GraphResult:
        """The search on this replica's in-memory index: a walk from the passages most similar to the query (the
        vector stage's dense hits for its vector, as given, else from the embedder; looked up concurrently with the
        index's version check) to the passages about the entities they mention (index/collection.py). Without
        a vector: from the entities the query names. The texts of the chunks found are read from the store, their
        vectors from the vector stage, for those chunks only; with `texts` false, neither (the caller's part)."""
        live = self._live
        assert live is not None  # searched only when the in-memory index is on
        cfg = self.config.index
        seeded = hops > 0 and cfg.passage_seeds > 0 and cfg.query_vectors
        if seeded and seeds is not None:  # the caller's (the vector stage's dense hits)
            index, seeds = await live.get(collection), [(str(c), float(s)) for c, s in seeds[: cfg.passage_seeds]]
        else:
            lookup = seeded and self._passages is not None
            index, seeds = await asyncio.gather(
                live.get(collection), self._seeds(collection, query, query_vector) if lookup else _none()
            )
        found = index.search(query, limit, seeds, hops=hops)
        subgraph = _subgraph(found, index, self.config.max_nodes, self.config.max_edges)
        if not texts:
            chunks = [ScoredChunk(chunk_id=c.chunk_id, doc_id=c.doc_id, text="", score=s) for c, s in found.chunks]
            return GraphResult(chunks=chunks, subgraph=subgraph, linked=found.linked, texts=False)
        ids = [c.chunk_id for c, _ in found.chunks]
        rows, vectors = await asyncio.gather(
            self.session.run(False, chunks_work(collection, ids), self.config.query_timeout_s) if ids else _awaited({}),
            self._vectors(collection, ids),
        )
        chunks = [
            ScoredChunk(
                chunk_id=c.chunk_id,
                doc_id=c.doc_id,
                text=rows[c.chunk_id]["text"] or "",
                score=score,
                metadata=metadata(rows[c.chunk_id]["metadata"]),
            )
            for c, score in found.chunks
            if c.chunk_id in rows  # deleted since the index's last check: the store is the truth
        ]
        return GraphResult(
            chunks=chunks,
            subgraph=subgraph,
            linked=found.linked,
            vectors=PackedVectors.pack({c.chunk_id: vectors[c.chunk_id] for c in chunks if c.chunk_id in vectors})
            if vectors is not None
            else None,
        )

    async def _seeds(self, collection: str, query: str, vector: list[float] | None) -> list[tuple[str, float]] | None:
        """The seed passages: the vector stage's nearest passages to the query's vector. Unavailable (no vector, the
        vector stage failing), the walk starts from the entities the query names alone."""
        passages = self._passages
        assert passages is not None
        try:
            if vector is None and self._embed is not None:
                vector = (await self._embed([query]))[0]
            if vector is None:
                return None
            return await passages.nearest(collection, vector, self.config.index.passage_seeds)
        except Exception as exc:  # a failed vector stage is its own stage's report; the graph answers on
            log.warning("graph search: seed passages unavailable (%s: %s); entity seeds only", type(exc).__name__, exc)
            return None

    async def _vectors(self, collection: str, chunk_ids: list[str]) -> dict[str, list[float]] | None:
        """The found chunks' stored vectors (the reranker scores with them); None when unavailable."""
        if self._passages is None or not chunk_ids:
            return None
        try:
            return await self._passages.vectors(collection, chunk_ids)
        except Exception as exc:
            log.warning("graph search: chunk vectors unavailable (%s: %s)", type(exc).__name__, exc)
            return None

    def index_of(self, collection: str) -> CollectionIndex | None:
        """This replica's index of the collection, as last refreshed (tests, stats)."""
        return self._live.cached(collection) if self._live is not None else None

    async def index_stats(self, collection: str) -> dict:
        """The collection's index on this replica, brought up to date: version, sizes (benchmarks, tests)."""
        if self._live is None:
            raise BadRequest("graph.index.enabled is false")
        index = await self._live.get(collection)
        return {"version": index.version, **index.stats()}

    async def links(self, collection: str, query: str, seed_ids: list[str], chunk_ids: list[str]) -> dict[str, float]:
        """How strongly each of `chunk_ids` is tied to the seed chunks (graph/ties.py), leaving out the entities the
        query names (they tie every candidate to the topic, not to the seeds): the second hop of a multi-hop question."""
        seeds = sorted(set(seed_ids))
        candidates = sorted(set(chunk_ids) - set(seeds))
        if not seeds or not candidates:
            return {}
        exclude = set(query_keys(query))
        if self._live is not None:  # from this replica's index: no store round trip
            return (await self._live.get(collection)).links(seeds, candidates, exclude)
        return await self.session.run(
            False, links_work(collection, seeds, candidates, exclude), self.config.query_timeout_s
        )

    async def mention_table(self, collection: str, query: str, chunk_ids: list[str]) -> MentionTable | None:
        """The chunks' entities for the caller's own graph/ties.py (as `links`); None without an in-memory index."""
        if self._live is None:
            return None
        return (await self._live.get(collection)).mention_table(sorted(set(chunk_ids)), set(query_keys(query)))

    # ---- explorer -------------------------------------------------------------------------------

    async def query(
        self, cypher: str, parameters: dict[str, Any] | None = None, max_rows: int | None = None
    ) -> GraphQueryResponse:
        """A user's read-only Cypher, as the store's read-only user under the user-query bounds (queries/)."""
        return await self._user_queries.run(cypher, parameters, max_rows)

    async def entity(self, collection: str, name: str, hops: int = 1) -> EntityResponse:
        """An entity (looked up by its normalized name) with its neighbourhood, bounded by `entity_neighbours`
        nodes and `max_edges` edges, and the documents and chunks that support it and its relations."""
        key = normalize_name(name)
        if not key:
            raise BadRequest(f"entity name {name!r} has no letters or digits")
        if not 1 <= int(hops) <= MAX_HOPS:
            raise BadRequest(f"hops must be within 1..{MAX_HOPS}")
        # An alias or name variant ("giuliani", "rudy giuliani") finds the entity it names, on this replica's index.
        index = await self._live.get(collection) if self._live is not None else None
        key = index.canonical(key) if index is not None else key
        found = await self.session.run(
            False, entity_work(collection, key, int(hops), self.config), self.config.query_timeout_s
        )
        if found is None:
            raise NotFound(f"no entity {name!r} (key {key!r}) in collection {collection!r}")
        if index is not None:
            found.entity.aliases = list(dict.fromkeys([*found.entity.aliases, *index.aliases_of(key)]))
        return found


async def _none() -> None:
    return None


def _subgraph(found, index: CollectionIndex, max_nodes: int, max_edges: int) -> Subgraph:
    """The linked (hops 0) and most reached (hops 1) entities, and the typed relations the found chunks state
    about them ("ArcadeDB -SHIPS-> Bolt plugin"); a relation's other end joins the nodes (hops 1). Co-occurrence
    is no fact: it is left out."""

    def node(key: str, hops: int) -> GraphNode:
        name, type_ = index.entity_info(key)
        return GraphNode(id=key, name=name, type=type_, hops=hops, aliases=index.aliases_of(key)[:8])

    keys = list(dict.fromkeys([*found.linked, *found.reached]))[:max_nodes]
    relations = index.relations_of([c for c, _ in found.chunks], set(keys))  # the chunks the index found
    edges: list[GraphEdge] = []
    for source, type_, target, weight in relations:
        for end in (source, target):
            if end not in keys and len(keys) < max_nodes:
                keys.append(end)
        if source in keys and target in keys and len(edges) < max_edges:
            edges.append(GraphEdge(source=source, target=target, type=type_, weight=weight))
    linked = set(found.linked)
    return Subgraph(nodes=[node(k, 0 if k in linked else 1) for k in keys], edges=edges)
