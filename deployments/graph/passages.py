"""The vector stage as the graph stage's passage lookup: a Graph replica holds no passage vectors, so its walk's seed
passages and the stored vectors of the chunks it returns come from the vector stage."""

from __future__ import annotations

from typing import Any, Protocol


class Passages(Protocol):
    """The vector stage as the graph stage's index search uses it (a Graph replica holds no passage vectors)."""

    async def nearest(self, collection: str, vector: list[float], k: int) -> list[tuple[str, float]]:
        """(chunk id, cosine) of the k stored passages most similar to `vector` (the walk's seed passages)."""
        ...

    async def vectors(self, collection: str, chunk_ids: list[str]) -> dict[str, list[float]]:
        """The stored vectors of these chunks (sent on with the chunks a search returns, for the reranker)."""
        ...


class StagePassages(Passages):
    """The vector stage (a VectorService, or the Vector deployment through `Remote`) as the graph search's passage
    lookup: its dense search (HNSW) for the seed passages, its stored vectors for the chunks found."""

    def __init__(self, vector: Any):
        self._vector = vector

    async def nearest(self, collection: str, vector: list[float], k: int) -> list[tuple[str, float]]:
        return [(chunk_id, score) for chunk_id, score in await self._vector.nearest(collection, vector, k)]

    async def vectors(self, collection: str, chunk_ids: list[str]) -> dict[str, list[float]]:
        return await self._vector.vectors(collection, chunk_ids)
