"""The vector-store contract both Qdrant engines implement, and the point/payload helpers they share."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from deployments.models import COLLECTION_PATTERN, Chunk, Scalar, ScoredChunk
from deployments.vector.lexical import SparseTerms

STAGE = "vector"
_COLLECTION = re.compile(COLLECTION_PATTERN)


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


def scored_chunk(payload: dict[str, Any] | None, score: float) -> ScoredChunk:
    payload = payload or {}
    return ScoredChunk(
        chunk_id=payload["chunk_id"],
        doc_id=payload["doc_id"],
        text=payload["text"],
        score=float(score),
        metadata=payload.get("metadata") or {},
    )


def check_collection(collection: str) -> None:
    # Collection names become directory names of the embedded store: never let a path through.
    if not _COLLECTION.fullmatch(collection):
        raise ValueError(f"invalid collection name {collection!r}: must match {COLLECTION_PATTERN}")


@dataclass
class StoredPoint:
    id: str
    vector: list[float]
    payload: dict[str, Any]
    sparse: SparseTerms | None = None  # BM25 terms; dropped for a collection created without the lexical vector


HitVectors = dict[str, Any]  # chunk id -> its stored dense vector (a sequence of floats)


def dense_vector(vector: Any) -> list[float]:
    """The dense vector of a record: a plain list, or the default ("") entry next to the sparse one."""
    return list(vector[""] if isinstance(vector, dict) else vector)


# Every document's chunks are numbered from 0 (deployments/ingress/chunking.py): its first chunk stands for it, so
# documents are listed and counted by the points whose payload `index` is 0 (one per document).
FIRST_CHUNK_FIELD, FIRST_CHUNK_INDEX = "index", 0


def is_collection_name(name: str) -> bool:
    return bool(_COLLECTION.fullmatch(name))


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

    async def dimension(self, collection: str) -> int | None:
        """The size of the collection's dense vectors; None when the collection does not exist."""

    async def has_lexical(self, collection: str) -> bool:
        """Whether the collection has the sparse LEXICAL_VECTOR (collections created before it do not)."""

    async def replace_documents(self, collection: str, doc_ids: list[str], points: list[StoredPoint]) -> int:
        """Make `points` the only points of `doc_ids`; returns the points written."""

    async def delete_documents(self, collection: str, doc_ids: list[str]) -> int:
        """Returns the points removed (0 for a missing collection)."""

    async def drop(self, collection: str) -> bool:
        """Removes the whole collection; False when it did not exist (idempotent)."""

    async def search(
        self,
        collection: str,
        vector: list[float],
        limit: int,
        filter: dict[str, Scalar],
        vectors: HitVectors | None = None,
    ) -> list[ScoredChunk]:
        """Raises CollectionNotFound for a missing collection. With `vectors`, each hit's stored dense vector is
        added to it, read with the hits (no second lookup)."""

    async def search_lexical(
        self,
        collection: str,
        terms: SparseTerms,
        limit: int,
        filter: dict[str, Scalar],
        vectors: HitVectors | None = None,
    ) -> list[ScoredChunk]:
        """BM25 over the sparse vector (`vectors` as in `search`). Raises CollectionNotFound for a missing collection."""

    async def count(self, collection: str) -> int:
        """Raises CollectionNotFound for a missing collection."""

    async def chunk_ids(self, collection: str) -> dict[str, str]:
        """Every stored chunk id with its document id; {} when the collection does not exist."""
        ...

    async def collections(self) -> list[str]:
        """The names of the collections, sorted (names our API cannot address are left out)."""
        ...

    async def document_count(self, collection: str) -> int:
        """Documents stored (their first chunks). Raises CollectionNotFound for a missing collection."""
        ...

    async def documents(self, collection: str, limit: int, cursor: str | None) -> tuple[list[str], str | None]:
        """One page of document ids, in point-id order, and the cursor of the next page (None after the last).
        Raises CollectionNotFound for a missing collection."""
        ...

    async def chunk_counts(self, collection: str, doc_ids: list[str]) -> dict[str, int]:
        """Points per document, for these documents (absent when it has none)."""
        ...

    async def vectors(self, collection: str, chunk_ids: list[str]) -> dict[str, list[float]]:
        """Stored vectors by chunk id; ids that are not stored are absent."""

    async def chunks(self, collection: str, chunk_ids: list[str]) -> dict[str, tuple[ScoredChunk, list[float]]]:
        """Stored chunks (score 0) with their vectors, by chunk id; ids that are not stored are absent."""

    async def ping(self) -> str: ...

    async def aclose(self) -> None: ...
