"""A Qdrant server through AsyncQdrantClient (or qdrant-client's local mode in tests)."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable
from typing import Any

from deployments.errors import CollectionNotFound, StageError, StageUnavailable
from deployments.models import Scalar, ScoredChunk
from deployments.net import redact_url
from deployments.vector.lexical import LEXICAL_VECTOR, SparseTerms
from deployments.vector.store import (
    FIRST_CHUNK_FIELD,
    FIRST_CHUNK_INDEX,
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

UPSERT_BATCH = 256  # points per request to a Qdrant server


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
        from qdrant_client.http.exceptions import (
            ResponseHandlingException,
            UnexpectedResponse,
        )

        try:
            return await coro
        except UnexpectedResponse as exc:
            raise StageError(STAGE, f"{self.name} {what}: HTTP {exc.status_code}: {exc.content[:200]!r}") from exc
        except (ResponseHandlingException, OSError, TimeoutError) as exc:
            raise StageUnavailable(STAGE, f"{self.name} unreachable ({what}): {exc}") from exc

    async def exists(self, collection: str) -> bool:
        check_collection(collection)
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

    async def _on_collection(self, collection: str, what: str, call: Awaitable[Any]) -> Any:
        """A call on a collection that existed a moment ago: gone now (deleted behind our back) is CollectionNotFound."""
        try:
            return await self._call(what, call)
        except (StageError, ValueError) as exc:
            if self._missing(collection, exc):
                raise CollectionNotFound(collection) from exc
            raise

    async def create(self, collection: str, dimension: int) -> None:
        from qdrant_client import models

        async with self._create_lock:
            if await self.exists(collection):
                return
            client = self._get_client()
            try:
                await self._call(
                    "create_collection",
                    client.create_collection(
                        collection,
                        vectors_config=models.VectorParams(size=dimension, distance=models.Distance.COSINE),
                        sparse_vectors_config={LEXICAL_VECTOR: models.SparseVectorParams(modifier=models.Modifier.IDF)},
                    ),
                )
            except StageError as exc:
                if getattr(exc.__cause__, "status_code", None) != 409:  # 409: another replica created it first
                    raise
            if not self._local:  # local mode has no payload indexes (it warns and ignores them)
                # Replacing and deleting documents filter on doc_id; listing and counting them on the chunk index.
                await self._call(
                    "create_payload_index",
                    client.create_payload_index(collection, "doc_id", models.PayloadSchemaType.KEYWORD),
                )
                await self._call(
                    "create_payload_index",
                    client.create_payload_index(collection, FIRST_CHUNK_FIELD, models.PayloadSchemaType.INTEGER),
                )
            self._known.add(collection)
            log.info("created Qdrant collection %s (%d-d cosine + BM25 sparse) on %s", collection, dimension, self.name)

    async def dimension(self, collection: str) -> int | None:
        if not await self.exists(collection):
            return None
        info = await self._on_collection(collection, "get_collection", self._get_client().get_collection(collection))
        vectors = info.config.params.vectors
        return int((vectors[""] if isinstance(vectors, dict) else vectors).size)

    async def has_lexical(self, collection: str) -> bool:
        if collection not in self._lexical:
            await self._require(collection)
            info = await self._on_collection(
                collection, "get_collection", self._get_client().get_collection(collection)
            )
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
        for start in range(0, len(points), UPSERT_BATCH):
            batch = [self._point(p, lexical) for p in points[start : start + UPSERT_BATCH]]
            await self._call("upsert", client.upsert(collection, points=batch, wait=True))
        if doc_ids:
            stale = self._doc_filter(doc_ids, keep=[p.id for p in points])
            await self._call(
                "delete", client.delete(collection, points_selector=models.FilterSelector(filter=stale), wait=True)
            )
        return len(points)

    async def delete_documents(self, collection: str, doc_ids: list[str]) -> int:
        from qdrant_client import models

        if not doc_ids or not await self.exists(collection):
            return 0
        client = self._get_client()
        doc_filter = self._doc_filter(doc_ids)
        removed = (await self._call("count", client.count(collection, count_filter=doc_filter, exact=True))).count
        if removed:
            await self._call(
                "delete", client.delete(collection, points_selector=models.FilterSelector(filter=doc_filter), wait=True)
            )
        return removed

    async def drop(self, collection: str) -> bool:
        check_collection(collection)
        self._known.discard(collection)
        self._lexical.pop(collection, None)
        return bool(await self._call("delete_collection", self._get_client().delete_collection(collection)))

    async def search(
        self,
        collection: str,
        vector: list[float],
        limit: int,
        filter: dict[str, Scalar],
        vectors: HitVectors | None = None,
    ) -> list[ScoredChunk]:
        await self._require(collection)
        result = await self._on_collection(
            collection,
            "query_points",
            self._get_client().query_points(
                collection,
                query=vector,
                limit=limit,
                query_filter=self._filter(filter),
                with_payload=True,
                with_vectors=vectors is not None,
            ),
        )
        return self._hits(result.points, vectors)

    async def search_lexical(
        self,
        collection: str,
        terms: SparseTerms,
        limit: int,
        filter: dict[str, Scalar],
        vectors: HitVectors | None = None,
    ) -> list[ScoredChunk]:
        from qdrant_client import models

        await self._require(collection)
        if not terms.indices:  # only stop words: nothing can match
            return []
        result = await self._on_collection(
            collection,
            "query_points",
            self._get_client().query_points(
                collection,
                query=models.SparseVector(indices=terms.indices, values=terms.values),
                using=LEXICAL_VECTOR,
                limit=limit,
                query_filter=self._filter(filter),
                with_payload=True,
                with_vectors=vectors is not None,
            ),
        )
        return self._hits(result.points, vectors)

    @staticmethod
    def _hits(points: list[Any], vectors: HitVectors | None) -> list[ScoredChunk]:
        if vectors is not None:
            vectors.update((p.payload["chunk_id"], dense_vector(p.vector)) for p in points)
        return [scored_chunk(p.payload, p.score) for p in points]

    async def count(self, collection: str) -> int:
        await self._require(collection)
        result = await self._on_collection(collection, "count", self._get_client().count(collection, exact=True))
        return result.count

    async def _scroll_all(self, collection: str, fields: list[str], filter: Any = None) -> list[dict[str, Any]]:
        """The payload `fields` of every point (matching `filter`)."""
        client = self._get_client()
        out: list[dict[str, Any]] = []
        offset = None
        while True:
            records, offset = await self._call(
                "scroll",
                client.scroll(
                    collection, scroll_filter=filter, limit=1024, offset=offset, with_payload=fields, with_vectors=False
                ),
            )
            out += [r.payload for r in records]
            if offset is None or not records:
                return out

    async def chunk_ids(self, collection: str) -> dict[str, str]:
        if not await self.exists(collection):
            return {}
        return {p["chunk_id"]: p["doc_id"] for p in await self._scroll_all(collection, ["chunk_id", "doc_id"])}

    async def collections(self) -> list[str]:
        # A shared server may hold collections of other applications: those our names cannot address are left out.
        response = await self._call("get_collections", self._get_client().get_collections())
        return sorted(c.name for c in response.collections if is_collection_name(c.name))

    @staticmethod
    def _first_chunks() -> Any:
        from qdrant_client import models

        return models.Filter(
            must=[models.FieldCondition(key=FIRST_CHUNK_FIELD, match=models.MatchValue(value=FIRST_CHUNK_INDEX))]
        )

    async def document_count(self, collection: str) -> int:
        await self._require(collection)
        result = await self._on_collection(
            collection, "count", self._get_client().count(collection, count_filter=self._first_chunks(), exact=True)
        )
        return result.count

    async def documents(self, collection: str, limit: int, cursor: str | None) -> tuple[list[str], str | None]:
        await self._require(collection)
        records, offset = await self._on_collection(
            collection,
            "scroll",
            self._get_client().scroll(
                collection,
                scroll_filter=self._first_chunks(),
                limit=limit,
                offset=cursor,
                with_payload=["doc_id"],
                with_vectors=False,
            ),
        )
        return [r.payload["doc_id"] for r in records], None if offset is None else str(offset)

    async def chunk_counts(self, collection: str, doc_ids: list[str]) -> dict[str, int]:
        counts: dict[str, int] = {}
        if doc_ids:
            await self._require(collection)
            for p in await self._scroll_all(collection, ["doc_id"], self._doc_filter(doc_ids)):
                counts[p["doc_id"]] = counts.get(p["doc_id"], 0) + 1
        return counts

    async def vectors(self, collection: str, chunk_ids: list[str]) -> dict[str, list[float]]:
        return {cid: vector for cid, (_, vector) in (await self.chunks(collection, chunk_ids)).items()}

    async def chunks(self, collection: str, chunk_ids: list[str]) -> dict[str, tuple[ScoredChunk, list[float]]]:
        await self._require(collection)
        records = await self._call(
            "retrieve",
            self._get_client().retrieve(
                collection, ids=[point_id(collection, c) for c in chunk_ids], with_payload=True, with_vectors=True
            ),
        )
        return {r.payload["chunk_id"]: (scored_chunk(r.payload, 0.0), dense_vector(r.vector)) for r in records}

    async def ping(self) -> str:
        collections = await self._call("get_collections", self._get_client().get_collections())
        return f"{self.name} ({len(collections.collections)} collections)"

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
