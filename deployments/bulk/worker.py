"""One node's share of a bulk ingest: rows -> chunks -> vectors and extractions -> one-chunk documents that
/v1/ingest stores as they come (`Document.vector`, `Document.extraction`): nothing is embedded or extracted again.

Plain and synchronous, tested without Ray; cluster.py runs one per node as a Ray actor.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from deployments.config import AppConfig
from deployments.embedder.backends import EmbeddingBackend, make_embedder
from deployments.graph.extraction.llm import offline_extractor
from deployments.ingress.chunking import chunk_document
from deployments.models import Chunk, ChunkExtraction, Document, Extraction

SOURCE_ID = "source_id"  # metadata of a one-chunk document cut from a longer source document


def document_id(chunk: Chunk, chunks_of_source: int) -> str:
    """A source of one chunk keeps its id (stored as `<id>#0`, as /v1/ingest would); a longer source becomes one
    document per chunk, `<id>#<n>` (a vector stands for one chunk only)."""
    return chunk.doc_id if chunks_of_source == 1 else chunk.chunk_id


class ChunkWorker:
    """Chunks (the ingress's chunking), embeds (the embedder's backend) and extracts (graph.extraction.offline)."""

    def __init__(
        self,
        config: AppConfig,
        embedder: EmbeddingBackend | None = None,
        extractor: Callable[[Chunk], Extraction] | None = None,
    ):
        self.config = config
        self.embedder = embedder if embedder is not None else make_embedder(config.embedder)
        # With LLM providers configured the server's graph stage runs their race: no extraction is sent.
        llm = bool(config.graph.extraction.providers)
        self.extractor = extractor if extractor is not None or llm else offline_extractor(config.graph.extraction)
        self._loop = asyncio.new_event_loop()  # the embedder backends are async; one loop for the worker's life

    def close(self) -> None:
        self._loop.run_until_complete(self.embedder.aclose())
        self._loop.close()

    def __call__(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Rows {id, text, metadata?} -> /v1/ingest documents {id, text, metadata, vector, extraction?} (JSON-ready)."""
        chunks: list[Chunk] = []
        per_source: dict[str, int] = {}
        for row in rows:
            source = Document(id=row["id"], text=row["text"], metadata=row.get("metadata") or {})
            pieces = chunk_document(source, self.config.chunking)
            per_source[source.id] = len(pieces)
            chunks += pieces
        if not chunks:
            return []
        vectors = self._loop.run_until_complete(self.embedder.embed([c.text for c in chunks]))
        extractions = self._extract(chunks)
        out = []
        for chunk, vector, extraction in zip(chunks, vectors, extractions):
            n = per_source[chunk.doc_id]
            metadata = chunk.metadata if n == 1 else {**chunk.metadata, SOURCE_ID: chunk.doc_id}
            doc = {"id": document_id(chunk, n), "text": chunk.text, "metadata": metadata, "vector": list(vector)}
            if extraction is not None:
                doc["extraction"] = ChunkExtraction.of(extraction).model_dump()
            out.append(doc)
        return out

    def _extract(self, chunks: list[Chunk]) -> list[Extraction | None]:
        if self.extractor is None:
            return [None] * len(chunks)
        many = getattr(self.extractor, "extract_many", None)  # spaCy parses a batch in one nlp.pipe
        return list(many(chunks)) if many is not None else [self.extractor(c) for c in chunks]
