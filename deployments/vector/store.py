"""The vector-store contract both Qdrant engines implement, and the point/payload helpers they share."""
from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from deployments.models import COLLECTION_PATTERN, Chunk, Scalar, ScoredChunk
from deployments.vector.lexical import SparseTerms

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


