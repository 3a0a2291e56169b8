"""The vector stage's logic: embeds (via the embedder stage) and BM25-encodes chunks, stores and searches them."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from pathlib import Path
from typing import Any

from deployments.config import VectorConfig
from deployments.errors import BadRequest, CollectionNotFound, StageError
from deployments.models import (
    MAX_DOCUMENT_PAGE,
    Chunk,
    CollectionSummary,
    DocumentPage,
    DocumentSummary,
    PackedVectors,
    RetrievalMode,
    Scalar,
    ScoredChunk,
    Span,
    VectorResult,
)
from deployments.stages import EmbedderStage
from deployments.vector.edge import EdgeVectorStore
from deployments.vector.lexical import LexicalEncoder, SparseTerms
from deployments.vector.server import ServerVectorStore
from deployments.vector.store import (
    STAGE,
    StoredPoint,
    VectorStore,
    check_collection,
    chunk_payload,
    no_lexical_index,
    point_id,
)

log = logging.getLogger(__name__)


def make_vector_store(config: VectorConfig) -> VectorStore:
    if config.embedded:
        if not config.path:
            raise ValueError("vector.path is required for the embedded store (AppConfig sets <data_dir>/qdrant)")
        return EdgeVectorStore(
            config.path,
            optimize_every_points=config.optimize_every_points,
            min_free_mb=config.min_free_disk_mb,
            segments=config.segments,
        )
    api_key = config.qdrant_api_key.get_secret_value() if config.qdrant_api_key else None
    return ServerVectorStore(config.qdrant_url or "", api_key=api_key, timeout=config.timeout_s)


# ---- the stage ----------------------------------------------------------------------------------


class VectorService:
    """Embeds (via the embedder stage) and BM25-encodes chunks, stores and searches them in one VectorStore."""

    def __init__(
        self,
        config: VectorConfig,
        embedder: EmbedderStage,
        store: VectorStore | None = None,
    ):
        self.config = config
        self.embedder = embedder
        self._store = store
        self.lexical = LexicalEncoder(config.bm25_k1, config.bm25_b, config.bm25_avg_len)

    @property
    def store(self) -> VectorStore:
        if self._store is None:
            self._store = make_vector_store(self.config)
        return self._store

    async def search(
        self,
        collection: str,
        query: str,
        top_k: int,
        filter: dict[str, Scalar] | None = None,
        mode: RetrievalMode = "dense",
        query_vector: list[float] | None = None,
    ) -> VectorResult:
        """Dense hits (query embedding) and/or lexical hits (BM25), as `mode` asks, searched concurrently.

        A collection without the sparse vector cannot answer lexically: `lexical_error` says so (never an empty
        list that would pass for "no match"); asked for lexical hits alone, that is an error.
        """
        check_collection(collection)
        if not await self.store.exists(collection):  # 404 before spending an embedding on it
            raise CollectionNotFound(collection)
        filter = filter or {}
        dense_wanted, lexical_wanted = mode != "lexical", mode != "dense"
        lexical_error = None
        if lexical_wanted and not await self.store.has_lexical(collection):
            lexical_wanted, lexical_error = False, no_lexical_index(collection)
            if not dense_wanted:
                raise StageError("lexical", lexical_error)

        # The hits' stored vectors come with them (the embedded reranker scores with them instead of calling back).
        stored: dict[str, Any] | None = {} if self.config.hit_vectors else None

        async def dense() -> tuple[list[ScoredChunk], Span | None, list[float] | None]:
            if not dense_wanted:
                return [], None, None
            if query_vector is not None:  # embedded by the caller (the ingress embeds once for vector and graph)
                return await self.store.search(collection, query_vector, top_k, filter, stored), None, None
            start = time.time()
            vectors = await self.embedder.embed([query])
            span = Span(start=start, end=time.time())
            return await self.store.search(collection, vectors[0], top_k, filter, stored), span, vectors[0]

        async def lexical() -> list[ScoredChunk] | None:
            if not lexical_wanted:
                return None
            return await self.store.search_lexical(collection, self.lexical.query(query), top_k, filter, stored)

        # `embedded`: the vector this stage made itself (None when the caller sent `query_vector`).
        (hits, embed_span, embedded), lexical_hits = await asyncio.gather(dense(), lexical())
        hit_vectors = PackedVectors.pack(stored) if stored is not None else None
        return VectorResult(
            hits=hits,
            lexical_hits=lexical_hits,
            lexical_error=lexical_error,
            embed=embed_span,
            query_vector=embedded,
            hit_vectors=hit_vectors,
        )

    async def _embed_all(self, texts: list[str]) -> list[list[float]]:
        size = self.config.embed_batch_size
        # Two slices in flight: the embedder batches one while the next is on its way.
        gate = asyncio.Semaphore(2)

        async def one(part: list[str]) -> list[list[float]]:
            async with gate:
                return await self.embedder.embed(part)

        parts = await asyncio.gather(*(one(texts[i : i + size]) for i in range(0, len(texts), size)))
        vectors = [v for part in parts for v in part]
        if len(vectors) != len(texts):
            raise StageError(STAGE, f"the embedder returned {len(vectors)} vectors for {len(texts)} texts")
        return vectors

    async def dimension(self, collection: str) -> int:
        """The size of the vectors the collection holds: its own, or the embedder's when it does not exist yet
        (what an ingest would create it with)."""
        check_collection(collection)
        size = await self.store.dimension(collection)
        return size if size is not None else await self.embedder.dimension()

    async def upsert(self, collection: str, chunks: list[Chunk], given: PackedVectors | None = None) -> int:
        """Replace the documents of `chunks` by these chunks (a document that shrank leaves no stale chunks).
        `given`: vectors the caller brought, by chunk id (bulk import); only the other chunks are embedded."""
        check_collection(collection)
        if not chunks:
            return 0
        brought = given.unpack() if given is not None else {}
        missing = [c.text for c in chunks if c.chunk_id not in brought]
        embedded = iter(await self._embed_all(missing) if missing else [])
        vectors = [brought[c.chunk_id].tolist() if c.chunk_id in brought else next(embedded) for c in chunks]
        if not await self.store.exists(collection):
            await self.store.create(collection, await self.embedder.dimension())
        sparse: list[SparseTerms | None] = [None] * len(chunks)
        if await self.store.has_lexical(collection):
            sparse = await asyncio.to_thread(lambda: [self.lexical.document(c.text) for c in chunks])
        else:  # still searchable densely; every lexical or hybrid search of it reports why it is not lexical
            log.warning("%s", no_lexical_index(collection))
        points = [
            StoredPoint(point_id(collection, c.chunk_id), v, chunk_payload(collection, c), s)
            for c, v, s in zip(chunks, vectors, sparse)
        ]
        doc_ids = sorted({c.doc_id for c in chunks})
        return await self.store.replace_documents(collection, doc_ids, points)

    async def delete_documents(self, collection: str, doc_ids: list[str]) -> int:
        """Points removed; 0 when the collection does not exist."""
        check_collection(collection)
        return await self.store.delete_documents(collection, list(doc_ids))

    async def drop_collection(self, collection: str) -> int | None:
        """Removes the collection; the points it held, None when it did not exist."""
        check_collection(collection)
        points = await self.store.count(collection) if await self.store.exists(collection) else None
        return points if await self.store.drop(collection) else None

    async def count(self, collection: str) -> int:
        check_collection(collection)
        return await self.store.count(collection)

    async def chunk_ids(self, collection: str) -> dict[str, str]:
        """Every stored chunk id with its document id (the consistency check); {} for a missing collection."""
        check_collection(collection)
        return await self.store.chunk_ids(collection)

    async def collections(self, only: list[str] | None = None) -> list[CollectionSummary]:
        """The store's collections (those named in `only`, when given), with their point and document counts."""
        names = await self.store.collections()
        if only is not None:
            allowed = set(only)
            names = [n for n in names if n in allowed]
        gate = asyncio.Semaphore(8)  # a Qdrant server may hold many collections: a few counts at a time

        async def summary(name: str) -> CollectionSummary | None:
            async with gate:
                try:
                    points, documents = await asyncio.gather(self.store.count(name), self.store.document_count(name))
                except CollectionNotFound:  # deleted (on the Qdrant server) since it was listed
                    return None
            return CollectionSummary(collection=name, points=points, documents=documents)

        return [s for s in await asyncio.gather(*(summary(n) for n in names)) if s is not None]

    async def documents(self, collection: str, limit: int = 100, cursor: str | None = None) -> DocumentPage:
        """One page of the collection's documents with their chunk counts; `cursor` is the previous page's
        `next_cursor`. Raises CollectionNotFound for a missing collection."""
        check_collection(collection)
        if not 1 <= limit <= MAX_DOCUMENT_PAGE:
            raise BadRequest(f"limit must be between 1 and {MAX_DOCUMENT_PAGE}, got {limit}")
        if cursor is not None:
            try:
                cursor = str(uuid.UUID(cursor))
            except ValueError:
                raise BadRequest("invalid cursor: pass the next_cursor of the previous page") from None
        doc_ids, next_cursor = await self.store.documents(collection, limit, cursor)
        counts = await self.store.chunk_counts(collection, doc_ids)
        return DocumentPage(
            collection=collection,
            documents=[DocumentSummary(doc_id=d, chunks=counts.get(d, 0)) for d in doc_ids],
            next_cursor=next_cursor,
        )

    async def nearest(self, collection: str, vector: list[float], k: int) -> list[tuple[str, float]]:
        """(chunk id, cosine) of the k stored passages nearest `vector`: the graph stage's seed passages, sent as ids
        and scores alone (no texts, no vectors: the walk needs neither)."""
        check_collection(collection)
        return [(hit.chunk_id, hit.score) for hit in await self.store.search(collection, vector, k, {}, None)]

    async def vectors(self, collection: str, chunk_ids: list[str]) -> dict[str, list[float]]:
        """The stored vectors of these chunks (the embedded reranker reuses them instead of re-embedding)."""
        check_collection(collection)
        return await self.store.vectors(collection, list(chunk_ids))

    async def chunks(self, collection: str, chunk_ids: list[str]) -> VectorResult:
        """These chunks as stored (score 0; ids not stored are absent), their vectors as `hit_vectors`: the texts
        of the chunks the graph stage alone found (a Graph replica holds ids, not texts)."""
        check_collection(collection)
        found = await self.store.chunks(collection, list(chunk_ids))
        return VectorResult(
            hits=[c for c, _ in found.values()],
            hit_vectors=PackedVectors.pack({cid: vector for cid, (_, vector) in found.items()}),
        )

    async def snapshot(self, collection: str, dest: str) -> int:
        """The collection's shard copied to `dest` (a folder on this machine); bytes copied."""
        check_collection(collection)
        return await self._snapshots().snapshot(collection, Path(dest))

    async def restore(self, collection: str, src: str) -> None:
        check_collection(collection)
        await self._snapshots().restore(collection, Path(src))

    def _snapshots(self) -> EdgeVectorStore:
        if not isinstance(self.store, EdgeVectorStore):
            raise BadRequest(
                "snapshots here cover the embedded engine (vector.path); back up a Qdrant server with its own snapshot API"
            )
        return self.store

    async def ping(self) -> str:
        return await self.store.ping()

    async def aclose(self) -> None:
        if self._store is not None:
            await self._store.aclose()
