"""Vector stage: chunk embeddings and BM25 sparse vectors in Qdrant (an embedded qdrant-edge shard per collection,
or a Qdrant server), searched densely (query embedding) and lexically (BM25), with metadata equality filters."""
from __future__ import annotations

import asyncio
import importlib.metadata
import json
import logging
import math
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Protocol, runtime_checkable

import numpy as np
from ray import serve
from ray.serve.handle import DeploymentHandle

from deployments.config import VectorConfig, redact_url
from deployments.errors import CollectionNotFound, StageError, StageUnavailable
from deployments.lexical import LEXICAL_VECTOR, LexicalEncoder, SparseTerms
from deployments.models import COLLECTION_PATTERN, Chunk, RetrievalMode, Scalar, ScoredChunk, Span, VectorResult
from deployments.observability import configure_logging

log = logging.getLogger(__name__)

STAGE = "vector"
_COLLECTION = re.compile(COLLECTION_PATTERN)
_UPSERT_BATCH = 256  # points per request to a Qdrant server


def point_id(collection: str, chunk_id: str) -> str:
    """Deterministic: re-ingesting a chunk overwrites its point instead of adding one."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{collection}/{chunk_id}"))


def chunk_payload(collection: str, chunk: Chunk) -> dict[str, Any]:
    return {
        "chunk_id": chunk.chunk_id,
        "doc_id": chunk.doc_id,
        "text": chunk.text,
        "index": chunk.index,
        "metadata": dict(chunk.metadata),
        "collection": collection,
    }


def _scored(payload: dict[str, Any] | None, score: float) -> ScoredChunk:
    payload = payload or {}
    return ScoredChunk(
        chunk_id=payload["chunk_id"],
        doc_id=payload["doc_id"],
        text=payload["text"],
        score=float(score),
        metadata=payload.get("metadata") or {},
    )


def _check_collection(collection: str) -> None:
    # Collection names become directory names of the embedded store: never let a path through.
    if not _COLLECTION.fullmatch(collection):
        raise ValueError(f"invalid collection name {collection!r}: must match {COLLECTION_PATTERN}")


@dataclass
class StoredPoint:
    id: str
    vector: list[float]
    payload: dict[str, Any]
    sparse: SparseTerms | None = None  # BM25 terms; dropped for a collection created without the lexical vector


def _dense(vector: Any) -> list[float]:
    """The dense vector of a record: a plain list, or the default ("") entry next to the sparse one."""
    return list(vector[""] if isinstance(vector, dict) else vector)


def no_lexical_index(collection: str) -> str:
    return (
        f"collection {collection!r} was created without the lexical (BM25 sparse) vector; lexical and hybrid "
        "retrieval need it: re-ingest its documents into a new collection"
    )


@runtime_checkable
class VectorStore(Protocol):
    async def exists(self, collection: str) -> bool:
        """False only when the store says the collection is missing; raises if it cannot tell."""

    async def create(self, collection: str, dimension: int) -> None:
        """Create a collection (cosine dense vector, IDF-weighted sparse LEXICAL_VECTOR) unless it exists (never recreates)."""

    async def has_lexical(self, collection: str) -> bool:
        """Whether the collection has the sparse LEXICAL_VECTOR (collections created before it do not)."""

    async def replace_documents(self, collection: str, doc_ids: list[str], points: list[StoredPoint]) -> int:
        """Make `points` the only points of `doc_ids`; returns the points written."""

    async def delete_documents(self, collection: str, doc_ids: list[str]) -> int:
        """Returns the points removed (0 for a missing collection)."""

    async def search(self, collection: str, vector: list[float], limit: int, filter: dict[str, Scalar]) -> list[ScoredChunk]:
        """Raises CollectionNotFound for a missing collection."""

    async def search_lexical(self, collection: str, terms: SparseTerms, limit: int, filter: dict[str, Scalar]) -> list[ScoredChunk]:
        """BM25 over the sparse vector. Raises CollectionNotFound for a missing collection."""

    async def count(self, collection: str) -> int:
        """Raises CollectionNotFound for a missing collection."""

    async def vectors(self, collection: str, chunk_ids: list[str]) -> dict[str, list[float]]:
        """Stored vectors by chunk id; ids that are not stored are absent."""

    async def ping(self) -> str: ...

    async def aclose(self) -> None: ...


# ---- embedded: qdrant-edge ----------------------------------------------------------------------


class EdgeVectorStore:
    """One qdrant-edge shard per collection under `path/<collection>`, owned by this process.

    The engine's API is synchronous: calls run in threads; writes (and opening shards) are serialized by a lock,
    reads run concurrently with them. Every write is flushed before it returns.
    """

    def __init__(self, path: str | Path, optimize_every_points: int = 1024, indexing_threshold_kb: int | None = None):
        self.path = Path(path)
        self.optimize_every_points = optimize_every_points
        self.indexing_threshold_kb = indexing_threshold_kb  # None: the engine default (10 MB per segment)
        self._shards: dict[str, Any] = {}
        self._unoptimized: dict[str, int] = {}  # points written since the last optimize, per collection
        self._lexical: dict[str, bool] = {}  # whether each collection has the sparse vector (fixed at creation)
        self._lock = asyncio.Lock()

    def _dir(self, collection: str) -> Path:
        _check_collection(collection)
        return self.path / collection

    @staticmethod
    async def _engine(collection: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a blocking engine call in a thread; engine failures (plain Exceptions) become StageError."""
        try:
            return await asyncio.to_thread(fn, *args)
        except Exception as exc:
            raise StageError(STAGE, f"qdrant-edge collection {collection!r}: {exc}") from exc

    async def exists(self, collection: str) -> bool:
        if collection in self._shards:
            return True
        # Path.exists raises on errors other than "not there" (e.g. permissions): those propagate.
        return (self._dir(collection) / "edge_config.json").exists()

    async def _shard(self, collection: str) -> Any:
        shard = self._shards.get(collection)
        if shard is not None:
            return shard
        async with self._lock:
            return await self._open(collection)

    async def _open(self, collection: str) -> Any:
        """Under the lock: the open shard, loading it from disk on first use."""
        import qdrant_edge

        if collection in self._shards:
            return self._shards[collection]
        directory = self._dir(collection)
        if not (directory / "edge_config.json").exists():
            raise CollectionNotFound(collection)
        try:
            shard = await asyncio.to_thread(qdrant_edge.EdgeShard.load, str(directory))
        except Exception as exc:
            # Typically "failed to open WAL ... WouldBlock": another process owns the shard.
            raise StageUnavailable(STAGE, f"cannot open the qdrant-edge shard {directory}: {exc}") from exc
        self._shards[collection] = shard
        return shard

    async def create(self, collection: str, dimension: int) -> None:
        import qdrant_edge as qe

        async with self._lock:
            if await self.exists(collection):
                return
            directory = self._dir(collection)
            optimizers = (
                qe.EdgeOptimizersConfig(indexing_threshold=self.indexing_threshold_kb)
                if self.indexing_threshold_kb is not None
                else None
            )
            config = qe.EdgeConfig(
                vectors=qe.EdgeVectorParams(size=dimension, distance=qe.Distance.Cosine),
                sparse_vectors={LEXICAL_VECTOR: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
                optimizers=optimizers,
            )

            def create() -> Any:
                directory.parent.mkdir(parents=True, exist_ok=True)
                shard = qe.EdgeShard.create(str(directory), config)
                # Replacing and deleting documents filter on doc_id.
                shard.update(qe.UpdateOperation.create_field_index("doc_id", qe.PayloadSchemaType.Keyword))
                shard.flush()
                return shard

            self._shards[collection] = await asyncio.to_thread(create)
            self._unoptimized[collection] = 0
            self._lexical[collection] = True
            log.info("created qdrant-edge collection %s (%d-d cosine + BM25 sparse) in %s", collection, dimension, directory)

    async def has_lexical(self, collection: str) -> bool:
        if collection not in self._lexical:  # the engine does not expose its config: read the file it writes
            path = self._dir(collection) / "edge_config.json"
            if not path.exists():
                raise CollectionNotFound(collection)
            config = json.loads(await asyncio.to_thread(path.read_text))
            self._lexical[collection] = LEXICAL_VECTOR in (config.get("sparse_vectors") or {})
        return self._lexical[collection]

    @staticmethod
    def _point(p: StoredPoint, lexical: bool) -> Any:
        import qdrant_edge as qe

        if lexical and p.sparse is not None:
            vector: Any = {"": p.vector, LEXICAL_VECTOR: qe.SparseVector(p.sparse.indices, p.sparse.values)}
        else:
            vector = p.vector
        return qe.Point(id=uuid.UUID(p.id), vector=vector, payload=p.payload)

    @staticmethod
    def _doc_filter(doc_ids: list[str], keep: list[str] | None = None) -> Any:
        """Points of `doc_ids`, except the point ids in `keep`."""
        import qdrant_edge as qe

        must_not = [qe.HasIdCondition({uuid.UUID(i) for i in keep})] if keep else None
        return qe.Filter(must=[qe.FieldCondition(key="doc_id", match=qe.MatchAny(list(doc_ids)))], must_not=must_not)

    @staticmethod
    def _filter(filter: dict[str, Scalar]) -> Any:
        import qdrant_edge as qe

        if not filter:
            return None
        conditions = []
        for key, value in filter.items():
            field = f"metadata.{key}"
            if isinstance(value, float):  # MatchValue takes str/int/bool only: a float matches as a point range
                conditions.append(qe.FieldCondition(key=field, range=qe.RangeFloat(gte=value, lte=value)))
            elif isinstance(value, bool):
                # qdrant-edge-py 0.9 reads a Python bool as the integer 1/0 (never matching a stored true/false);
                # numpy's bool is no int subclass and arrives as a bool.
                conditions.append(qe.FieldCondition(key=field, match=qe.MatchValue(np.bool_(value))))
            else:
                conditions.append(qe.FieldCondition(key=field, match=qe.MatchValue(value)))
        return qe.Filter(must=conditions)

    def _after_write(self, collection: str, shard: Any, written: int) -> None:
        """In a worker thread, under the lock: flush, and optimize once enough points changed."""
        shard.flush()
        pending = self._unoptimized.get(collection, 0) + written
        if pending >= self.optimize_every_points:
            started = time.monotonic()
            # Builds HNSW for segments over the indexing threshold, vacuums deletions; no-op when nothing qualifies.
            if shard.optimize():
                shard.flush()
                log.info("optimized qdrant-edge collection %s in %.2fs", collection, time.monotonic() - started)
            pending = 0
        self._unoptimized[collection] = pending

    async def replace_documents(self, collection: str, doc_ids: list[str], points: list[StoredPoint]) -> int:
        import qdrant_edge as qe

        async with self._lock:
            shard = await self._open(collection)
            lexical = await self.has_lexical(collection)

            def write() -> int:
                # Insert first, then drop the documents' other (stale) points: readers never see a document
                # vanish, and a refused insert leaves the previous version in place.
                if points:
                    shard.update(qe.UpdateOperation.upsert_points([self._point(p, lexical) for p in points]))
                if doc_ids:
                    stale = self._doc_filter(doc_ids, keep=[p.id for p in points])
                    shard.update(qe.UpdateOperation.delete_points_by_filter(stale))
                self._after_write(collection, shard, len(points))
                return len(points)

            return await self._engine(collection, write)

    async def delete_documents(self, collection: str, doc_ids: list[str]) -> int:
        import qdrant_edge as qe

        if not doc_ids or not await self.exists(collection):
            return 0
        async with self._lock:
            shard = await self._open(collection)

            def delete() -> int:
                doc_filter = self._doc_filter(doc_ids)
                removed = shard.count(qe.CountRequest(exact=True, filter=doc_filter))
                if removed:
                    shard.update(qe.UpdateOperation.delete_points_by_filter(doc_filter))
                    self._after_write(collection, shard, removed)
                return removed

            return await self._engine(collection, delete)

    async def search(self, collection: str, vector: list[float], limit: int, filter: dict[str, Scalar]) -> list[ScoredChunk]:
        import qdrant_edge as qe

        shard = await self._shard(collection)
        request = qe.QueryRequest(limit=limit, query=qe.Query.Nearest(vector), filter=self._filter(filter), with_payload=True)
        points = await self._engine(collection, shard.query, request)
        return [_scored(p.payload, p.score) for p in points]

    async def search_lexical(self, collection: str, terms: SparseTerms, limit: int, filter: dict[str, Scalar]) -> list[ScoredChunk]:
        import qdrant_edge as qe

        shard = await self._shard(collection)
        if not terms.indices:  # only stop words: nothing can match
            return []
        query = qe.Query.Nearest(qe.SparseVector(terms.indices, terms.values), using=LEXICAL_VECTOR)
        request = qe.QueryRequest(limit=limit, query=query, filter=self._filter(filter), with_payload=True)
        points = await self._engine(collection, shard.query, request)
        return [_scored(p.payload, p.score) for p in points]

    async def count(self, collection: str) -> int:
        import qdrant_edge as qe

        shard = await self._shard(collection)
        return await self._engine(collection, shard.count, qe.CountRequest(exact=True))

    async def vectors(self, collection: str, chunk_ids: list[str]) -> dict[str, list[float]]:
        shard = await self._shard(collection)
        ids = [uuid.UUID(point_id(collection, c)) for c in chunk_ids]
        records = await self._engine(collection, shard.retrieve, ids, True, True)
        return {r.payload["chunk_id"]: _dense(r.vector) for r in records}

    async def ping(self) -> str:
        await asyncio.to_thread(self.path.mkdir, parents=True, exist_ok=True)
        collections = sum(1 for p in self.path.iterdir() if (p / "edge_config.json").exists())
        return f"qdrant-edge {importlib.metadata.version('qdrant-edge-py')} at {self.path} ({collections} collections)"

    async def aclose(self) -> None:
        async with self._lock:
            shards, self._shards = self._shards, {}

            def close() -> None:
                for shard in shards.values():
                    shard.flush()
                    shard.close()

            await asyncio.to_thread(close)


# ---- Qdrant server (or qdrant-client's local mode) -----------------------------------------------


class ServerVectorStore:
    """A Qdrant server through qdrant-client. `url=":memory:"` runs qdrant-client's local mode (tests)."""

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 10.0):
        self.url = url
        self._api_key = api_key
        self.timeout = timeout
        self._client: Any = None
        self._known: set[str] = set()  # collections seen to exist: saves a round trip per search
        self._lexical: dict[str, bool] = {}  # whether each collection has the sparse vector (fixed at creation)
        self._create_lock = asyncio.Lock()

    @property
    def _local(self) -> bool:
        return self.url == ":memory:"

    @property
    def name(self) -> str:
        return "qdrant-client local mode (:memory:)" if self._local else f"qdrant {redact_url(self.url)}"

    def _get_client(self) -> Any:
        if self._client is None:
            from qdrant_client import AsyncQdrantClient

            kwargs: dict[str, Any] = {"location": self.url}
            if not self._local:
                kwargs.update(timeout=max(1, math.ceil(self.timeout)), check_compatibility=False)
                if self._api_key:
                    kwargs["api_key"] = self._api_key
            self._client = AsyncQdrantClient(**kwargs)
        return self._client

    async def _call(self, what: str, coro: Awaitable[Any]) -> Any:
        """Await a client call; transport failures become StageUnavailable (never "missing", never empty)."""
        from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

        try:
            return await coro
        except UnexpectedResponse as exc:
            raise StageError(STAGE, f"{self.name} {what}: HTTP {exc.status_code}: {exc.content[:200]!r}") from exc
        except (ResponseHandlingException, OSError, TimeoutError) as exc:
            raise StageUnavailable(STAGE, f"{self.name} unreachable ({what}): {exc}") from exc

    async def exists(self, collection: str) -> bool:
        _check_collection(collection)
        if collection in self._known:
            return True
        found = bool(await self._call("collection_exists", self._get_client().collection_exists(collection)))
        if found:
            self._known.add(collection)
        return found

    async def _require(self, collection: str) -> None:
        if not await self.exists(collection):
            raise CollectionNotFound(collection)

    def _missing(self, collection: str, exc: BaseException) -> bool:
        """A call failed because the collection is gone (deleted behind our back): forget it."""
        cause = exc.__cause__
        gone = getattr(cause, "status_code", None) == 404 or (isinstance(exc, ValueError) and "not found" in str(exc))
        if gone:
            self._known.discard(collection)
            self._lexical.pop(collection, None)
        return gone

    async def create(self, collection: str, dimension: int) -> None:
        from qdrant_client import models

        async with self._create_lock:
            if await self.exists(collection):
                return
            client = self._get_client()
            try:
                await self._call("create_collection", client.create_collection(
                    collection,
                    vectors_config=models.VectorParams(size=dimension, distance=models.Distance.COSINE),
                    sparse_vectors_config={LEXICAL_VECTOR: models.SparseVectorParams(modifier=models.Modifier.IDF)},
                ))
            except StageError as exc:
                if getattr(exc.__cause__, "status_code", None) != 409:  # 409: another replica created it first
                    raise
            if not self._local:  # local mode has no payload indexes (it warns and ignores them)
                await self._call("create_payload_index", client.create_payload_index(
                    collection, "doc_id", models.PayloadSchemaType.KEYWORD
                ))
            self._known.add(collection)
            log.info("created Qdrant collection %s (%d-d cosine + BM25 sparse) on %s", collection, dimension, self.name)

    async def has_lexical(self, collection: str) -> bool:
        if collection not in self._lexical:
            await self._require(collection)
            try:
                info = await self._call("get_collection", self._get_client().get_collection(collection))
            except (StageError, ValueError) as exc:
                if self._missing(collection, exc):
                    raise CollectionNotFound(collection) from exc
                raise
            self._lexical[collection] = LEXICAL_VECTOR in (info.config.params.sparse_vectors or {})
        return self._lexical[collection]

    @staticmethod
    def _point(p: StoredPoint, lexical: bool) -> Any:
        from qdrant_client import models

        if lexical and p.sparse is not None:
            sparse = models.SparseVector(indices=p.sparse.indices, values=p.sparse.values)
            return models.PointStruct(id=p.id, vector={"": p.vector, LEXICAL_VECTOR: sparse}, payload=p.payload)
        return models.PointStruct(id=p.id, vector=p.vector, payload=p.payload)

    @staticmethod
    def _doc_filter(doc_ids: list[str], keep: list[str] | None = None) -> Any:
        """Points of `doc_ids`, except the point ids in `keep`."""
        from qdrant_client import models

        must_not = [models.HasIdCondition(has_id=list(keep))] if keep else None
        return models.Filter(
            must=[models.FieldCondition(key="doc_id", match=models.MatchAny(any=list(doc_ids)))], must_not=must_not
        )

    @staticmethod
    def _filter(filter: dict[str, Scalar]) -> Any:
        from qdrant_client import models

        if not filter:
            return None
        conditions = []
        for key, value in filter.items():
            field = f"metadata.{key}"
            if isinstance(value, float):  # MatchValue takes str/int/bool only: a float matches as a point range
                conditions.append(models.FieldCondition(key=field, range=models.Range(gte=value, lte=value)))
            else:
                conditions.append(models.FieldCondition(key=field, match=models.MatchValue(value=value)))
        return models.Filter(must=conditions)

    async def replace_documents(self, collection: str, doc_ids: list[str], points: list[StoredPoint]) -> int:
        from qdrant_client import models

        await self._require(collection)
        client = self._get_client()
        lexical = await self.has_lexical(collection)
        # Insert first, then drop the documents' other (stale) points: readers never see a document vanish,
        # and a refused insert leaves the previous version in place.
        for start in range(0, len(points), _UPSERT_BATCH):
            batch = [self._point(p, lexical) for p in points[start : start + _UPSERT_BATCH]]
            await self._call("upsert", client.upsert(collection, points=batch, wait=True))
        if doc_ids:
            stale = self._doc_filter(doc_ids, keep=[p.id for p in points])
            await self._call("delete", client.delete(collection, points_selector=models.FilterSelector(filter=stale), wait=True))
        return len(points)

    async def delete_documents(self, collection: str, doc_ids: list[str]) -> int:
        from qdrant_client import models

        if not doc_ids or not await self.exists(collection):
            return 0
        client = self._get_client()
        doc_filter = self._doc_filter(doc_ids)
        removed = (await self._call("count", client.count(collection, count_filter=doc_filter, exact=True))).count
        if removed:
            await self._call("delete", client.delete(
                collection, points_selector=models.FilterSelector(filter=doc_filter), wait=True
            ))
        return removed

    async def search(self, collection: str, vector: list[float], limit: int, filter: dict[str, Scalar]) -> list[ScoredChunk]:
        await self._require(collection)
        try:
            result = await self._call("query_points", self._get_client().query_points(
                collection, query=vector, limit=limit, query_filter=self._filter(filter), with_payload=True
            ))
        except (StageError, ValueError) as exc:
            if self._missing(collection, exc):
                raise CollectionNotFound(collection) from exc
            raise
        return [_scored(p.payload, p.score) for p in result.points]

    async def search_lexical(self, collection: str, terms: SparseTerms, limit: int, filter: dict[str, Scalar]) -> list[ScoredChunk]:
        from qdrant_client import models

        await self._require(collection)
        if not terms.indices:  # only stop words: nothing can match
            return []
        try:
            result = await self._call("query_points", self._get_client().query_points(
                collection, query=models.SparseVector(indices=terms.indices, values=terms.values), using=LEXICAL_VECTOR,
                limit=limit, query_filter=self._filter(filter), with_payload=True,
            ))
        except (StageError, ValueError) as exc:
            if self._missing(collection, exc):
                raise CollectionNotFound(collection) from exc
            raise
        return [_scored(p.payload, p.score) for p in result.points]

    async def count(self, collection: str) -> int:
        await self._require(collection)
        try:
            result = await self._call("count", self._get_client().count(collection, exact=True))
        except (StageError, ValueError) as exc:
            if self._missing(collection, exc):
                raise CollectionNotFound(collection) from exc
            raise
        return result.count

    async def vectors(self, collection: str, chunk_ids: list[str]) -> dict[str, list[float]]:
        await self._require(collection)
        records = await self._call("retrieve", self._get_client().retrieve(
            collection, ids=[point_id(collection, c) for c in chunk_ids], with_payload=["chunk_id"], with_vectors=True
        ))
        return {r.payload["chunk_id"]: _dense(r.vector) for r in records}

    async def ping(self) -> str:
        collections = await self._call("get_collections", self._get_client().get_collections())
        return f"{self.name} ({len(collections.collections)} collections)"

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


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


@serve.deployment
class Vector(VectorService):
    """The vector stage as a Serve deployment; embeds through the Embedder deployment."""

    def __init__(self, config: VectorConfig, embedder: DeploymentHandle):
        configure_logging()
        super().__init__(
            config,
            embed=lambda texts: embedder.embed.remote(texts),
            dimension=lambda: embedder.dimension.remote(),
        )

    async def __del__(self) -> None:
        await self.aclose()
