"""Embedded Qdrant: one qdrant-edge shard per collection in the data folder (one owner process)."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import logging
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deployments.errors import (
    BadRequest,
    CollectionNotFound,
    StageError,
    StageUnavailable,
    StorageFull,
    is_disk_full,
    require_free_space,
)
from deployments.models import Scalar, ScoredChunk
from deployments.vector.edge_filters import (
    documents_filter,
    edge_point,
    first_chunks_filter,
    metadata_filter,
    stored_config,
)
from deployments.vector.lexical import LEXICAL_VECTOR, SparseTerms
from deployments.vector.sparse_copy import copy_sparse
from deployments.vector.store import (
    FIRST_CHUNK_FIELD,
    STAGE,
    HitVectors,
    StoredPoint,
    check_collection,
    dense_vector,
    is_collection_name,
    point_id,
    scored_chunk,
)

log = logging.getLogger(__name__)


class EdgeVectorStore:
    """One qdrant-edge shard per collection under `path/<collection>`, owned by this process.

    The engine's API is synchronous: calls run in threads; writes (and opening shards) are serialized by a lock,
    reads run concurrently with them. Every write is flushed before it returns.
    """

    def __init__(
        self,
        path: str | Path,
        optimize_every_points: int = 1024,
        indexing_threshold_kb: int | None = None,
        min_free_mb: int = 0,
        segments: int = 8,
    ):
        self.path = Path(path)
        # Qdrant's default_segment_number. The engine's own default, the CPU count, is below the segments a large
        # collection already has, so every optimize merged the newest small segment into a big one (15 s per
        # ~7k points written into a 1M collection on 2 cores); with room for more, small segments merge among
        # themselves and the big ones are left alone.
        self.segments = segments
        self.min_free_mb = min_free_mb  # writes refused below it: a full disk under mmap is a SIGBUS, not an error
        self.optimize_every_points = optimize_every_points
        self.indexing_threshold_kb = indexing_threshold_kb  # None: the engine default (10 MB per segment)
        self._shards: dict[str, Any] = {}
        self._unoptimized: dict[str, int] = {}  # points written since the last optimize, per collection
        self._lexical: dict[str, bool] = {}  # whether each collection has the sparse vector (fixed at creation)
        self._lock = asyncio.Lock()

    def _dir(self, collection: str) -> Path:
        check_collection(collection)
        return self.path / collection

    @staticmethod
    async def _engine(collection: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a blocking engine call in a thread; engine failures (plain Exceptions) become StageError."""
        try:
            return await asyncio.to_thread(fn, *args)
        except Exception as exc:
            error = StorageFull if is_disk_full(exc) else StageError
            raise error(STAGE, f"qdrant-edge collection {collection!r}: {exc}") from exc

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
        stored = await self._config(collection)
        wanted = self._optimizers(stored.get("optimizers"))
        load: tuple[Any, ...] = (str(directory),)
        if wanted != stored.get("optimizers"):  # a collection written with other settings: rewrite them
            load += (stored_config(stored, qdrant_edge.EdgeOptimizersConfig(**wanted)),)
        try:
            shard = await asyncio.to_thread(qdrant_edge.EdgeShard.load, *load)
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
            await asyncio.to_thread(require_free_space, self.path, self.min_free_mb, STAGE)
            directory = self._dir(collection)
            config = qe.EdgeConfig(
                vectors=qe.EdgeVectorParams(size=dimension, distance=qe.Distance.Cosine),
                sparse_vectors={LEXICAL_VECTOR: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
                optimizers=qe.EdgeOptimizersConfig(**self._optimizers(None)),
            )

            def create() -> Any:
                directory.parent.mkdir(parents=True, exist_ok=True)
                shard = qe.EdgeShard.create(str(directory), config)
                # Replacing and deleting documents filter on doc_id; listing and counting them on the chunk index.
                shard.update(qe.UpdateOperation.create_field_index("doc_id", qe.PayloadSchemaType.Keyword))
                shard.update(qe.UpdateOperation.create_field_index(FIRST_CHUNK_FIELD, qe.PayloadSchemaType.Integer))
                shard.flush()
                return shard

            self._shards[collection] = await asyncio.to_thread(create)
            self._unoptimized[collection] = 0
            self._lexical[collection] = True
            log.info(
                "created qdrant-edge collection %s (%d-d cosine + BM25 sparse) in %s", collection, dimension, directory
            )

    async def _config(self, collection: str) -> dict[str, Any]:
        """The collection's config as the engine wrote it (the engine does not expose it otherwise)."""
        path = self._dir(collection) / "edge_config.json"
        if not path.exists():
            raise CollectionNotFound(collection)
        return json.loads(await asyncio.to_thread(path.read_text))

    def _optimizers(self, stored: dict[str, Any] | None) -> dict[str, Any]:
        """The optimizer settings a collection should have: the stored ones with this store's set over them."""
        wanted = dict(stored or {})
        wanted["default_segment_number"] = self.segments
        if self.indexing_threshold_kb is not None:
            wanted["indexing_threshold"] = self.indexing_threshold_kb
        return wanted

    async def dimension(self, collection: str) -> int | None:
        if not await self.exists(collection):
            return None
        return int((await self._config(collection))["vectors"][""]["size"])

    async def has_lexical(self, collection: str) -> bool:
        if collection not in self._lexical:
            config = await self._config(collection)
            self._lexical[collection] = LEXICAL_VECTOR in (config.get("sparse_vectors") or {})
        return self._lexical[collection]

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
            await asyncio.to_thread(require_free_space, self.path, self.min_free_mb, STAGE)
            shard = await self._open(collection)
            lexical = await self.has_lexical(collection)

            def write() -> int:
                # Insert first, then drop the documents' other (stale) points: readers never see a document
                # vanish, and a refused insert leaves the previous version in place.
                if points:
                    shard.update(qe.UpdateOperation.upsert_points([edge_point(p, lexical) for p in points]))
                if doc_ids:
                    stale = documents_filter(doc_ids, keep=[p.id for p in points])
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
                doc_filter = documents_filter(doc_ids)
                removed = shard.count(qe.CountRequest(exact=True, filter=doc_filter))
                if removed:
                    shard.update(qe.UpdateOperation.delete_points_by_filter(doc_filter))
                    self._after_write(collection, shard, removed)
                return removed

            return await self._engine(collection, delete)

    async def drop(self, collection: str) -> bool:
        directory = self._dir(collection)
        async with self._lock:
            shard = self._shards.pop(collection, None)
            self._unoptimized.pop(collection, None)
            self._lexical.pop(collection, None)

            def drop() -> bool:
                if shard is not None:
                    shard.close()
                # One atomic rename takes the collection out of sight (a name our API cannot address), then the
                # files go; a crash in between leaves only a hidden folder, removed by the next drop.
                existed = (directory / "edge_config.json").exists()
                if existed:
                    directory.rename(self.path / f".dropped-{collection}-{uuid.uuid4().hex}")
                for leftover in self.path.glob(".dropped-*"):
                    shutil.rmtree(leftover, ignore_errors=True)
                return existed

            return await self._engine(collection, drop)

    async def search(
        self,
        collection: str,
        vector: list[float],
        limit: int,
        filter: dict[str, Scalar],
        vectors: HitVectors | None = None,
    ) -> list[ScoredChunk]:
        import qdrant_edge as qe

        return await self._query(collection, qe.Query.Nearest(vector), limit, filter, vectors)

    async def search_lexical(
        self,
        collection: str,
        terms: SparseTerms,
        limit: int,
        filter: dict[str, Scalar],
        vectors: HitVectors | None = None,
    ) -> list[ScoredChunk]:
        import qdrant_edge as qe

        if not terms.indices:  # only stop words: nothing can match
            await self._shard(collection)  # still: a missing collection is an error
            return []
        query = qe.Query.Nearest(qe.SparseVector(terms.indices, terms.values), using=LEXICAL_VECTOR)
        return await self._query(collection, query, limit, filter, vectors)

    async def _query(
        self, collection: str, query: Any, limit: int, filter: dict[str, Scalar], vectors: HitVectors | None
    ) -> list[ScoredChunk]:
        import qdrant_edge as qe

        shard = await self._shard(collection)
        # [""]: the dense vector alone (True would add the sparse one too).
        request = qe.QueryRequest(
            limit=limit,
            query=query,
            filter=metadata_filter(filter),
            with_payload=True,
            with_vector=[""] if vectors is not None else False,
        )
        points = await self._engine(collection, shard.query, request)
        if vectors is not None:
            vectors.update((p.payload["chunk_id"], p.vector) for p in points)
        return [scored_chunk(p.payload, p.score) for p in points]

    async def count(self, collection: str) -> int:
        import qdrant_edge as qe

        shard = await self._shard(collection)
        return await self._engine(collection, shard.count, qe.CountRequest(exact=True))

    async def _scroll_all(self, collection: str, fields: list[str], filter: Any = None) -> list[dict[str, Any]]:
        """The payload `fields` of every point (matching `filter`)."""
        import qdrant_edge as qe

        shard = await self._shard(collection)

        def scroll_all() -> list[dict[str, Any]]:
            out: list[dict[str, Any]] = []
            offset = None
            while True:
                request = qe.ScrollRequest(
                    offset=offset, limit=1024, filter=filter, with_payload=fields, with_vector=False
                )
                records, offset = shard.scroll(request)
                out += [r.payload for r in records]
                if offset is None or not records:
                    return out

        return await self._engine(collection, scroll_all)

    async def chunk_ids(self, collection: str) -> dict[str, str]:
        if not await self.exists(collection):
            return {}
        return {p["chunk_id"]: p["doc_id"] for p in await self._scroll_all(collection, ["chunk_id", "doc_id"])}

    async def collections(self) -> list[str]:
        def listing() -> list[str]:
            if not self.path.is_dir():
                return []
            return sorted(
                p.name for p in self.path.iterdir() if is_collection_name(p.name) and (p / "edge_config.json").exists()
            )

        return await asyncio.to_thread(listing)

    async def document_count(self, collection: str) -> int:
        import qdrant_edge as qe

        shard = await self._shard(collection)
        return await self._engine(collection, shard.count, qe.CountRequest(exact=True, filter=first_chunks_filter()))

    async def documents(self, collection: str, limit: int, cursor: str | None) -> tuple[list[str], str | None]:
        import qdrant_edge as qe

        shard = await self._shard(collection)
        request = qe.ScrollRequest(
            offset=uuid.UUID(cursor) if cursor else None,
            limit=limit,
            filter=first_chunks_filter(),
            with_payload=["doc_id"],
            with_vector=False,
        )
        records, offset = await self._engine(collection, shard.scroll, request)
        return [r.payload["doc_id"] for r in records], None if offset is None else str(offset)

    async def chunk_counts(self, collection: str, doc_ids: list[str]) -> dict[str, int]:
        counts: dict[str, int] = {}
        if doc_ids:
            for p in await self._scroll_all(collection, ["doc_id"], documents_filter(doc_ids)):
                counts[p["doc_id"]] = counts.get(p["doc_id"], 0) + 1
        return counts

    async def vectors(self, collection: str, chunk_ids: list[str]) -> dict[str, list[float]]:
        return {cid: vector for cid, (_, vector) in (await self.chunks(collection, chunk_ids)).items()}

    async def chunks(self, collection: str, chunk_ids: list[str]) -> dict[str, tuple[ScoredChunk, list[float]]]:
        shard = await self._shard(collection)
        ids = [uuid.UUID(point_id(collection, c)) for c in chunk_ids]
        records = await self._engine(collection, shard.retrieve, ids, True, True)
        return {r.payload["chunk_id"]: (scored_chunk(r.payload, 0.0), dense_vector(r.vector)) for r in records}

    async def snapshot(self, collection: str, dest: Path) -> int:
        """Copies the collection's shard, flushed, to `dest` while writes wait (reads go on); returns bytes copied."""
        async with self._lock:
            shard = await self._open(collection)

            def copy() -> int:
                shard.flush()
                shutil.copytree(self._dir(collection), dest, copy_function=copy_sparse)
                return sum(f.stat().st_blocks * 512 for f in dest.rglob("*") if f.is_file())  # on disk

            return await self._engine(collection, copy)

    async def restore(self, collection: str, src: Path) -> None:
        """Puts a shard copied by `snapshot` in place as `collection`, which must not exist."""
        async with self._lock:
            if await self.exists(collection):
                raise BadRequest(
                    f"the vector store already holds collection {collection!r}: restore into an empty data folder"
                )
            target = self._dir(collection)
            tmp = target.with_name(f".{collection}.restoring")

            def copy() -> None:
                shutil.rmtree(tmp, ignore_errors=True)  # a restore cut short before
                shutil.copytree(src, tmp, copy_function=copy_sparse)
                tmp.rename(target)  # the collection appears whole or not at all

            await self._engine(collection, copy)
            self._lexical.pop(collection, None)

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
