"""The vector stage's logic: embeds (via the embedder stage) and BM25-encodes chunks, stores and searches them."""
from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Awaitable, Callable

from deployments.config import VectorConfig
from deployments.errors import CollectionNotFound, StageError
from deployments.models import (
    COLLECTION_PATTERN,
    Chunk,
    RetrievalMode,
    Scalar,
    ScoredChunk,
    Span,
    VectorResult,
)
from deployments.vector.edge import EdgeVectorStore
from deployments.vector.lexical import LexicalEncoder, SparseTerms
from deployments.vector.server import ServerVectorStore
from deployments.vector.store import (
    StoredPoint,
    VectorStore,
    _check_collection,
    chunk_payload,
    no_lexical_index,
    point_id,
)

log = logging.getLogger(__name__)

STAGE = "vector"
_COLLECTION = re.compile(COLLECTION_PATTERN)
_UPSERT_BATCH = 256  # points per request to a Qdrant server


def make_vector_store(config: VectorConfig) -> VectorStore:
    if config.embedded:
        if not config.path:
            raise ValueError("vector.path is required for the embedded store (AppConfig sets <data_dir>/qdrant)")
        return EdgeVectorStore(config.path, optimize_every_points=config.optimize_every_points)
    api_key = config.qdrant_api_key.get_secret_value() if config.qdrant_api_key else None
    return ServerVectorStore(config.qdrant_url or "", api_key=api_key, timeout=config.timeout_s)


# ---- the stage ----------------------------------------------------------------------------------


class VectorService:
    """Embeds (via the embedder stage) and BM25-encodes chunks, stores and searches them in one VectorStore."""

    def __init__(
        self,
        config: VectorConfig,
        embed: Callable[[list[str]], Awaitable[list[list[float]]]],
        dimension: Callable[[], Awaitable[int]],
        store: VectorStore | None = None,
    ):
        self.config = config
        self._embed = embed
        self._dimension = dimension
        self._store = store
        self.lexical = LexicalEncoder(config.bm25_k1, config.bm25_b, config.bm25_avg_len)

    @property
    def store(self) -> VectorStore:
        if self._store is None:
            self._store = make_vector_store(self.config)
        return self._store

    async def search(
        self, collection: str, query: str, top_k: int, filter: dict[str, Scalar] | None = None, mode: RetrievalMode = "dense"
    ) -> VectorResult:
        """Dense hits (query embedding) and/or lexical hits (BM25), as `mode` asks, searched concurrently.

        A collection without the sparse vector cannot answer lexically: `lexical_error` says so (never an empty
        list that would pass for "no match"); asked for lexical hits alone, that is an error.
        """
        _check_collection(collection)
        if not await self.store.exists(collection):  # 404 before spending an embedding on it
            raise CollectionNotFound(collection)
        filter = filter or {}
        dense_wanted, lexical_wanted = mode != "lexical", mode != "dense"
        lexical_error = None
        if lexical_wanted and not await self.store.has_lexical(collection):
            lexical_wanted, lexical_error = False, no_lexical_index(collection)
            if not dense_wanted:
                raise StageError("lexical", lexical_error)

        async def dense() -> tuple[list[ScoredChunk], Span | None, list[float] | None]:
            if not dense_wanted:
                return [], None, None
            start = time.time()
            vectors = await self._embed([query])
            span = Span(start=start, end=time.time())
            return await self.store.search(collection, vectors[0], top_k, filter), span, vectors[0]

        async def lexical() -> list[ScoredChunk] | None:
            if not lexical_wanted:
                return None
            return await self.store.search_lexical(collection, self.lexical.query(query), top_k, filter)

        (hits, embed_span, query_vector), lexical_hits = await asyncio.gather(dense(), lexical())
        return VectorResult(
            hits=hits, lexical_hits=lexical_hits, lexical_error=lexical_error, embed=embed_span, query_vector=query_vector
        )

    async def _embed_all(self, texts: list[str]) -> list[list[float]]:
        size = self.config.embed_batch_size
        # Two slices in flight: the embedder batches one while the next is on its way.
        gate = asyncio.Semaphore(2)

        async def one(part: list[str]) -> list[list[float]]:
            async with gate:
                return await self._embed(part)

        parts = await asyncio.gather(*(one(texts[i : i + size]) for i in range(0, len(texts), size)))
        vectors = [v for part in parts for v in part]
        if len(vectors) != len(texts):
            raise StageError(STAGE, f"the embedder returned {len(vectors)} vectors for {len(texts)} texts")
        return vectors

    async def upsert(self, collection: str, chunks: list[Chunk]) -> int:
        """Replace the documents of `chunks` by these chunks (a document that shrank leaves no stale chunks)."""
        _check_collection(collection)
        if not chunks:
            return 0
        vectors = await self._embed_all([c.text for c in chunks])
        if not await self.store.exists(collection):
            await self.store.create(collection, await self._dimension())
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
        _check_collection(collection)
        return await self.store.delete_documents(collection, list(doc_ids))

    async def count(self, collection: str) -> int:
        _check_collection(collection)
        return await self.store.count(collection)

    async def vectors(self, collection: str, chunk_ids: list[str]) -> dict[str, list[float]]:
        """The stored vectors of these chunks (the embedded reranker reuses them instead of re-embedding)."""
        _check_collection(collection)
        return await self.store.vectors(collection, list(chunk_ids))

    async def ping(self) -> str:
        return await self.store.ping()

    async def aclose(self) -> None:
        if self._store is not None:
            await self._store.aclose()


