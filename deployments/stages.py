"""What each stage offers its callers, as typed interfaces (no Ray here).

The ingress's `Pipeline` and the stages that call another stage (vector → embedder when ingesting, reranker →
embedder and vector when not given the vectors) depend on these protocols only. The same `Stages` is built over deployment handles in the app
(`deployments.handles.stages_from_handles`) and over in-process services in tests and the benchmarks' monolith:
one construction, two transports.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from deployments.graph.ties import MentionTable
from deployments.models import (
    ChatDelta,
    ChatResult,
    Chunk,
    CollectionSummary,
    DocumentPage,
    EntityResponse,
    Extraction,
    GraphQueryResponse,
    GraphResult,
    PackedVectors,
    RerankHints,
    RerankResult,
    RetrievalMode,
    Scalar,
    VectorResult,
)


class EmbedderStage(Protocol):
    async def embed(self, texts: list[str]) -> list[list[float]]: ...

    async def dimension(self) -> int: ...

    async def count_tokens(self, texts: list[str]) -> int | None:
        """The model's tokens in `texts` (as embedded, after truncation); None when the backend cannot tell."""
        ...

    async def ping(self) -> str: ...


class VectorStage(Protocol):
    async def search(
        self,
        collection: str,
        query: str,
        top_k: int,
        filter: dict[str, Scalar] | None = None,
        mode: RetrievalMode = "dense",
        query_vector: list[float] | None = None,
    ) -> VectorResult:
        """`query_vector`: the query's embedding when the caller has it (else the stage embeds the query)."""
        ...

    async def upsert(self, collection: str, chunks: list[Chunk], given: PackedVectors | None = None) -> int:
        """`given`: the vectors callers brought, by chunk id (those chunks are not embedded)."""
        ...

    async def dimension(self, collection: str) -> int:
        """The collection's vector size (the embedder's for a collection not created yet)."""
        ...

    async def delete_documents(self, collection: str, doc_ids: list[str]) -> int: ...

    async def drop_collection(self, collection: str) -> int | None:
        """Removes the whole collection: the points it held, None when it did not exist."""
        ...

    async def count(self, collection: str) -> int: ...

    async def nearest(self, collection: str, vector: list[float], k: int) -> list[tuple[str, float]]:
        """(chunk id, cosine) of the k stored passages nearest `vector` (the graph stage's seed passages)."""
        ...

    async def vectors(self, collection: str, chunk_ids: list[str]) -> dict[str, list[float]]: ...

    async def chunks(self, collection: str, chunk_ids: list[str]) -> VectorResult:
        """These chunks as stored (score 0), their vectors as `hit_vectors`; ids not stored are absent."""
        ...

    async def chunk_ids(self, collection: str) -> dict[str, str]:
        """Every stored chunk id with its document id (the consistency check); {} for a missing collection."""
        ...

    async def collections(self, only: list[str] | None = None) -> list[CollectionSummary]:
        """The collections (those named in `only`, when given), with their point and document counts."""
        ...

    async def documents(self, collection: str, limit: int = 100, cursor: str | None = None) -> DocumentPage:
        """One page of a collection's document ids; raises CollectionNotFound for a missing collection."""
        ...

    async def snapshot(self, collection: str, dest: str) -> int:
        """The collection's shard copied into the folder `dest`; bytes copied (ingress/backups.py)."""
        ...

    async def restore(self, collection: str, src: str) -> None: ...

    async def ping(self) -> str: ...


class GraphStage(Protocol):
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
        """`query_vector` seeds the walk with the passages most like the query (`seeds`: those passages, (chunk id,
        cosine), when the caller has them); without either, entity links alone.
        `texts=False`: the chunks may come as ids and scores (`GraphResult.texts` false); the caller reads them."""
        ...

    async def links(
        self, collection: str, query: str, seed_ids: list[str], chunk_ids: list[str]
    ) -> dict[str, float]: ...

    async def mention_table(self, collection: str, query: str, chunk_ids: list[str]) -> MentionTable | None:
        """The chunks' entities for graph/ties.py; None when the replica has no in-memory index."""
        ...

    async def upsert(
        self, collection: str, chunks: list[Chunk], given: dict[str, Extraction] | None = None
    ) -> dict: ...

    async def delete_documents(self, collection: str, doc_ids: list[str]) -> int: ...

    async def drop_collection(self, collection: str) -> int | None:
        """Removes the whole collection: the chunks it held, None when the store held nothing of it."""
        ...

    async def counts(self, collection: str) -> dict: ...

    async def chunk_ids(self, collection: str) -> dict[str, str]: ...

    async def orphan_entities(self, collection: str, remove: bool = False) -> list[str]:
        """Keys of entities no chunk mentions; with `remove`, they are deleted."""
        ...

    async def query(
        self, cypher: str, parameters: dict[str, Any] | None = None, max_rows: int | None = None
    ) -> GraphQueryResponse: ...

    async def export_collection(self, collection: str, path: str) -> dict:
        """The collection's graph written to the file `path`; its counts and size (ingress/backups.py)."""
        ...

    async def import_collection(self, collection: str, path: str) -> dict: ...

    async def entity(self, collection: str, name: str, hops: int = 1) -> EntityResponse: ...

    async def ping(self) -> str: ...


class RerankerStage(Protocol):
    async def rerank(self, query: str, texts: list[str], hints: RerankHints | None = None) -> RerankResult: ...

    async def ping(self) -> str: ...


class ChatStage(Protocol):
    async def answer(self, query: str, passages: list[str], facts: list[str]) -> ChatResult: ...

    def answer_stream(self, query: str, passages: list[str], facts: list[str]) -> AsyncIterator[ChatDelta]:
        """The answer in pieces; closing the iterator early closes the provider's stream."""
        ...

    async def ping(self) -> str: ...


@dataclass
class Stages:
    """The stages the ingress's pipeline calls."""

    embedder: EmbedderStage
    vector: VectorStage
    graph: GraphStage
    reranker: RerankerStage
    chat: ChatStage

    def pings(self) -> dict[str, Any]:
        """Each stage's readiness check, by stage name (the keys of /readyz)."""
        return {name: getattr(self, name).ping for name in ("embedder", "vector", "graph", "reranker", "chat")}
