"""Wire models: every request and response body (here), and the payloads passed between deployments (messages.py).

Import them all from `deployments.models`: this module re-exports the messages, one surface."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from deployments.models.base import Strict as _Strict
from deployments.models.extraction import ChunkExtraction  # re-exported: a one-chunk document's own extraction
from deployments.models.messages import (  # re-exported: see the docstring
    ChatDelta,
    ChatResult,
    Chunk,
    Entity,
    Extraction,
    GraphEdge,
    GraphNode,
    GraphResult,
    PackedVectors,
    Relation,
    RerankHints,
    RerankResult,
    ScoredChunk,
    Span,
    Subgraph,
    VectorResult,
)

# Hard bounds of the API; the config may only tighten them.
MAX_QUERY_CHARS = 2_000
MAX_TOP_K = 100
MAX_HOPS = 3
MAX_DOCUMENTS_PER_INGEST = 256
MAX_DOCUMENT_CHARS = 200_000
MAX_DOC_ID_CHARS = 256
MAX_VECTOR_DIMENSION = 65_536  # Qdrant's bound on a dense vector's size
COLLECTION_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
DEFAULT_COLLECTION = "default"

Scalar = str | int | float | bool
Source = Literal["vector", "lexical", "graph"]  # "vector": dense (embedding) search; "lexical": BM25
Stage = Literal["embed", "vector", "lexical", "graph", "rerank", "chat", "ingest"]
# Which retrieval sources are fused: dense only, BM25 only, both, or both plus graph-reached chunks.
RetrievalMode = Literal["dense", "lexical", "hybrid", "hybrid+graph"]


def _non_blank(value: str, what: str) -> str:
    if not value.strip():
        raise ValueError(f"{what} must not be empty or only white space")
    return value


# ---- requests ---------------------------------------------------------------------------------


class Document(_Strict):
    id: str = Field(
        min_length=1, max_length=MAX_DOC_ID_CHARS, description="Stable document id; re-ingesting it replaces it."
    )
    text: str = Field(min_length=1, max_length=MAX_DOCUMENT_CHARS)
    metadata: dict[str, Scalar | list[Scalar] | None] = Field(default_factory=dict)
    vector: list[float] | None = Field(
        None,
        min_length=1,
        max_length=MAX_VECTOR_DIMENSION,
        description="The text's embedding, made by the caller with the server's model (Qdrant's `vector`): the "
        "document is stored as one chunk with this vector, not chunked or embedded. Its size must be the "
        "collection's dimension and the text must fit one chunk (chunking.max_words), else 400.",
    )
    extraction: ChunkExtraction | None = Field(
        None,
        description="The one chunk's entities and relations, extracted by the caller with the server's extractor "
        "(the cluster bulk path): stored as given, not extracted again. Only with `vector` (one chunk), else 422.",
    )

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if any(ord(ch) < 32 for ch in v):
            raise ValueError("document id must not contain control characters")
        return _non_blank(v, "document id")

    @field_validator("text")
    @classmethod
    def _text(cls, v: str) -> str:
        return _non_blank(v, "document text")

    @field_validator("vector")
    @classmethod
    def _vector(cls, v: list[float] | None) -> list[float] | None:
        if v is None:
            return v
        if not all(math.isfinite(x) for x in v):
            raise ValueError("vector values must be finite numbers")
        if not any(v):  # cosine distance: a zero vector has no direction
            raise ValueError("vector must not be all zeros")
        return v

    @model_validator(mode="after")
    def _extraction_needs_vector(self) -> Document:
        if self.extraction is not None and self.vector is None:
            raise ValueError("an extraction is given for one chunk: the document must bring its `vector` too")
        return self


class IngestRequest(_Strict):
    collection: str = Field(DEFAULT_COLLECTION, pattern=COLLECTION_PATTERN)
    documents: list[Document] = Field(min_length=1, max_length=MAX_DOCUMENTS_PER_INGEST)

    @field_validator("documents")
    @classmethod
    def _unique_ids(cls, docs: list[Document]) -> list[Document]:
        seen: set[str] = set()
        for doc in docs:
            if doc.id in seen:
                raise ValueError(f"document id {doc.id!r} appears twice in one request")
            seen.add(doc.id)
        return docs


class RetrieveRequest(_Strict):
    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    collection: str = Field(DEFAULT_COLLECTION, pattern=COLLECTION_PATTERN)
    top_k: int | None = Field(None, ge=1, le=MAX_TOP_K, description="Hits returned; config default when absent.")
    max_hops: int | None = Field(
        None, ge=0, le=MAX_HOPS, description="Graph expansion depth; 0 = linked entities only."
    )
    use_graph: bool = Field(
        True,
        deprecated="use `mode` (hybrid instead of hybrid+graph): false only left the graph out of hybrid+graph",
        description="Deprecated: `mode` says which stages run. false = hybrid+graph without the graph stage.",
    )
    mode: RetrievalMode | None = Field(
        None,
        description="Sources fused: dense, lexical (BM25), hybrid (both), hybrid+graph; config default when absent.",
    )
    rerank: bool | None = Field(
        None, description="Rerank the fused candidates; config default (retrieval.rerank) when absent."
    )
    filter: dict[str, Scalar] = Field(default_factory=dict, description="Metadata equality filter on the vector stage.")

    @field_validator("query")
    @classmethod
    def _query(cls, v: str) -> str:
        return _non_blank(v, "query")

    @field_validator("filter")
    @classmethod
    def _filter_keys(cls, v: dict[str, Scalar]) -> dict[str, Scalar]:
        for key in v:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", key):
                raise ValueError(f"filter key {key!r} must match [A-Za-z_][A-Za-z0-9_]{{0,63}}")
        return v


class AnswerRequest(RetrieveRequest):
    stream: bool = Field(
        False, description="Server-Sent Events: a `references` event, `delta` events with the answer, a `done` event."
    )


# ---- responses --------------------------------------------------------------------------------


class Hit(BaseModel):
    chunk_id: str
    doc_id: str
    text: str
    score: float
    sources: list[Source]
    metadata: dict[str, Any] = Field(default_factory=dict)


class StageTiming(BaseModel):
    start_ms: float = Field(description="Offset from the request's start.")
    duration_ms: float


class Timings(BaseModel):
    embed: StageTiming | None = None
    vector: StageTiming | None = None
    graph: StageTiming | None = None
    rerank: StageTiming | None = None
    chat: StageTiming | None = None
    total: StageTiming | None = None


class Degraded(BaseModel):
    stage: Stage
    error: str


class RetrieveResponse(BaseModel):
    query: str
    collection: str
    hits: list[Hit]
    graph: Subgraph
    timings: Timings
    degraded: list[Degraded] = Field(default_factory=list)
    reranker: str | None = Field(None, description="The scorer that ordered the hits; null if reranking was skipped.")
    mode: RetrievalMode | None = Field(None, description="The retrieval mode that ran.")


class Citation(BaseModel):
    n: int
    chunk_id: str
    doc_id: str


class AnswerResponse(RetrieveResponse):
    answer: str
    citations: list[Citation]
    model: str


# ---- streamed answers (POST /v1/answer with stream: true; each one SSE `data:` line) ----------


class StreamReferences(RetrieveResponse):
    """First event: the passages the answer will cite as [n] (hit n-1), before any answer text."""

    type: Literal["references"] = "references"
    model: str = Field(description="The model that is answering.")


class StreamDelta(BaseModel):
    type: Literal["delta"] = "delta"
    content: str


class StreamDone(AnswerResponse):
    """Last event: the whole response, as the non-streamed call returns it."""

    type: Literal["done"] = "done"


class StreamError(BaseModel):
    """Sent instead of `done` when the answer broke off after it had started."""

    type: Literal["error"] = "error"
    stage: str
    detail: str


class IngestResponse(BaseModel):
    collection: str
    documents: int
    chunks: int
    entities: int
    relations: int
    timings: dict[str, StageTiming]
    extractors: dict[str, int] = Field(
        default_factory=dict,
        description="Chunks per extractor that produced their graph (an LLM provider, or offline).",
    )
    dropped_relations: int = Field(0, description="Extracted relations dropped in normalization (a missing endpoint).")


class CollectionStats(BaseModel):
    collection: str
    points: int = Field(description="Chunks stored in the vector store.")
    chunks: int = Field(description="Chunk nodes in the graph store.")
    entities: int
    relations: int


MAX_DOCUMENT_PAGE = 1_000  # documents per page of GET /v1/collections/{c}/documents


class CollectionSummary(BaseModel):
    collection: str
    points: int = Field(description="Chunks stored in the vector store.")
    documents: int = Field(description="Documents stored in the vector store.")


class CollectionList(BaseModel):
    collections: list[CollectionSummary] = Field(
        description="The vector store's collections this API key may access, by name."
    )


class DocumentSummary(BaseModel):
    doc_id: str
    chunks: int = Field(description="The document's chunks in the vector store.")


class DocumentPage(BaseModel):
    collection: str
    documents: list[DocumentSummary] = Field(
        description="One page, in the vector store's point order (not sorted by id)."
    )
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class StageHealth(BaseModel):
    ok: bool
    backend: str
    error: str | None = None


class ReadyResponse(BaseModel):
    ready: bool
    stages: dict[str, StageHealth]
    auth: Literal["open", "api_keys"] = Field(
        description="open: no API key configured, every caller may do everything (local use only); api_keys: keys with scopes."
    )
    recovery: Literal["pending", "done", "failed"] = Field(
        "done", description="The start-up roll-back of ingests a crash interrupted; not ready until it is done."
    )


class ErrorResponse(BaseModel):
    detail: Any


# ---- graph endpoints and document deletion --------------------------------------------------------

MAX_GRAPH_QUERY_CHARS = 20_000


class GraphQueryRequest(_Strict):
    query: str = Field(min_length=1, max_length=MAX_GRAPH_QUERY_CHARS, description="One read-only Cypher statement.")
    parameters: dict[str, Any] = Field(
        default_factory=dict, description="Query parameters ($name); values only, never code."
    )
    max_rows: int | None = Field(None, ge=1, description="Rows returned at most; the server's cap applies anyway.")

    @field_validator("parameters")
    @classmethod
    def _param_names(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key in v:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", key):
                raise ValueError(f"parameter name {key!r} must match [A-Za-z_][A-Za-z0-9_]{{0,63}}")
        return v


class GraphQueryResponse(BaseModel):
    columns: list[str]
    rows: list[list[Any]]
    truncated: bool = Field(description="More rows existed than were returned (the row cap or the byte cap).")
    row_cap: int
    byte_cap: int = Field(description="Bound on the JSON size of `rows` (graph.user_query_max_bytes).")


class RelationProvenance(BaseModel):
    source: str
    target: str
    type: str
    weight: float
    doc_ids: list[str]
    chunk_ids: list[str]


class EntityResponse(BaseModel):
    collection: str
    entity: GraphNode
    doc_ids: list[str] = Field(description="Documents whose chunks mention the entity (capped).")
    chunk_ids: list[str]
    neighbours: list[GraphNode]
    edges: list[GraphEdge]
    relations: list[RelationProvenance] = Field(
        description="The entity's own relations with the chunks that support them."
    )


class DeleteResponse(BaseModel):
    collection: str
    doc_id: str
    points: int = Field(description="Points removed from the vector store.")
    chunks: int = Field(description="Chunk nodes removed from the graph store.")


class CollectionDeleteResponse(BaseModel):
    collection: str
    points: int = Field(description="Points removed from the vector store.")
    chunks: int = Field(description="Chunk nodes removed from the graph store (their entities and relations went too).")


# ---- store consistency (GET /v1/collections/{c}/verify, POST /v1/collections/{c}/repair) -----------

MAX_LISTED_IDS = 100  # document ids / entity keys listed in a report; the counts are always whole


class VerifyResponse(BaseModel):
    collection: str
    consistent: bool = Field(
        description="Every document has the same chunks in both stores, no entity lacks a chunk, no intent is pending."
    )
    documents: int = Field(description="Documents in either store.")
    vector_chunks: int
    graph_chunks: int
    only_in_vector: int = Field(description="Documents with points but no chunk nodes.")
    only_in_graph: int = Field(description="Documents with chunk nodes but no points.")
    mismatched: int = Field(description="Documents in both stores with different chunk ids.")
    orphan_entities: int = Field(description="Entities no chunk mentions.")
    pending_intents: int = Field(description="Interrupted ingests/deletes of this collection not rolled back yet.")
    inconsistent_doc_ids: list[str] = Field(description=f"The affected document ids (at most {MAX_LISTED_IDS}).")
    orphan_entity_keys: list[str] = Field(description=f"At most {MAX_LISTED_IDS}.")


class RepairResponse(BaseModel):
    collection: str
    removed_doc_ids: list[str] = Field(
        description=f"Documents removed from both stores: re-ingest them (at most {MAX_LISTED_IDS} listed)."
    )
    removed_documents: int
    removed_orphan_entities: int
    after: VerifyResponse


# ---- backup (POST /v1/admin/snapshot, POST /v1/admin/restore; graphrag-ingest --snapshot / --restore) --------


class SnapshotRequest(_Strict):
    dir: str = Field(
        min_length=1,
        description=(
            "The snapshot's folder, named relative to the server's backup root (`backup.root`, default "
            "<data_dir>/backups), or an absolute path inside it; new or empty for a snapshot. A path that resolves "
            "outside the root gets 400."
        ),
    )
    collections: list[Annotated[str, StringConstraints(pattern=COLLECTION_PATTERN)]] | None = Field(
        None, description="The collections (default: all the snapshot holds, or all the vector store holds)."
    )


class CollectionSnapshot(BaseModel):
    points: int
    vector_bytes: int
    graph_bytes: int
    graph: dict[str, int] = Field(description="Chunks, entities, relations and mentions in the graph's copy.")
    roll_back: list[str] = Field(description="Documents of an ingest a crash left half-done: removed on restore.")


class SnapshotResponse(BaseModel):
    dir: str
    seconds: float
    collections: dict[str, CollectionSnapshot]


class RestoreResponse(BaseModel):
    dir: str
    seconds: float
    collections: dict[str, VerifyResponse]
