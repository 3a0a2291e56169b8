"""The payloads the stages pass each other over deployment handles: chunks and what extraction finds in them,
each stage's results, and the vectors that travel with them. Re-exported by `deployments.models`."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Chunk(BaseModel):
    chunk_id: str
    doc_id: str
    index: int
    text: str
    metadata: dict[str, Any] = Field(default_factory=dict)


class Entity(BaseModel):
    key: str  # normalized name: the linking key
    name: str
    type: str
    lead: bool = False  # named in the chunk's first sentence (or heading): what the chunk is about
    aliases: list[str] = Field(default_factory=list)  # keys of the other names it goes by ("giuliani", "nasa")


class Relation(BaseModel):
    source: str  # entity key
    target: str  # entity key
    type: str
    weight: float = 1.0


class Extraction(BaseModel):
    """Entities and relations found in one chunk."""

    chunk_id: str
    entities: list[Entity] = Field(default_factory=list)
    relations: list[Relation] = Field(default_factory=list)
    extractor: str = "offline"  # the provider whose result this is (LLM extraction), or "offline"
    failures: dict[str, str] = Field(default_factory=dict)  # provider -> why it did not win
    dropped_relations: int = 0  # relations dropped in normalization (an endpoint missing, a self-loop)


class GraphNode(BaseModel):
    id: str
    name: str
    type: str
    hops: int = 0  # distance from an entity linked in the query
    aliases: list[str] = Field(default_factory=list)  # keys of its other names ("giuliani", "rudy giuliani")


class GraphEdge(BaseModel):
    source: str
    target: str
    type: str
    weight: float = 1.0


class Subgraph(BaseModel):
    nodes: list[GraphNode] = Field(default_factory=list)
    edges: list[GraphEdge] = Field(default_factory=list)


class ScoredChunk(BaseModel):
    """A chunk a stage found, with that stage's own score."""

    chunk_id: str
    doc_id: str
    text: str
    score: float
    metadata: dict[str, Any] = Field(default_factory=dict)


class Span(BaseModel):
    """When a stage ran: wall-clock epoch seconds, so spans from different processes line up."""

    start: float
    end: float


class PackedVectors(BaseModel):
    """Vectors by chunk id as one float32 buffer: crosses a process boundary as a single bytes copy, not as
    thousands of pickled Python floats (30 hits x 384 floats per request)."""

    ids: list[str] = Field(default_factory=list)
    dim: int = 0
    data: bytes = b""

    @classmethod
    def pack(cls, vectors: dict[str, Any]) -> PackedVectors:
        import numpy as np

        if not vectors:
            return cls()
        matrix = np.asarray(list(vectors.values()), dtype=np.float32)
        return cls(ids=list(vectors), dim=int(matrix.shape[1]), data=matrix.tobytes())

    def unpack(self) -> dict[str, Any]:
        """chunk id -> np.ndarray (read-only views of the one buffer)."""
        import numpy as np

        if not self.ids:
            return {}
        matrix = np.frombuffer(self.data, dtype=np.float32).reshape(len(self.ids), self.dim)
        return dict(zip(self.ids, matrix))

    @classmethod
    def select(cls, ids: list[str], *packs: PackedVectors | None) -> PackedVectors | None:
        """The vectors of `ids` found in `packs` (the first pack holding an id wins), in one buffer; None when no
        pack was given. Only these travel on: the stages send more vectors than the candidates fusion keeps."""
        if all(p is None for p in packs):
            return None
        found: dict[str, Any] = {}
        for pack in packs:
            if pack is not None and pack.ids:
                vectors = pack.unpack()
                found.update((i, vectors[i]) for i in ids if i not in found and i in vectors)
        return cls.pack(found)


class VectorResult(BaseModel):
    hits: list[ScoredChunk]
    # The stored vectors of the dense and lexical hits, when the vector stage is asked for them
    # (vector.hit_vectors): the embedded reranker scores with them instead of calling back into this stage.
    hit_vectors: PackedVectors | None = None
    embed: Span | None = None  # None when no query embedding was needed (lexical mode)
    query_vector: list[float] | None = None  # reused by the embedded reranker
    lexical_hits: list[ScoredChunk] | None = None  # BM25 hits; None when not asked for or not possible
    lexical_error: str | None = None  # why lexical hits were asked for but not searched


class GraphResult(BaseModel):
    chunks: list[ScoredChunk]
    subgraph: Subgraph
    # The chunks' stored vectors, when the stage read them: the embedded reranker scores the chunks the graph
    # alone found with them instead of calling the vector stage.
    vectors: PackedVectors | None = None
    linked: list[str] = Field(default_factory=list)  # entity keys linked from the query
    # False: `chunks` are ids, documents and scores with empty texts (asked with texts=False of the in-memory
    # index); the caller reads the texts and vectors (the ingress: from the vector stage, one call).
    texts: bool = True


class RerankHints(BaseModel):
    """What the request already knows about the texts; scorers that can use it skip work (HTTP rerankers ignore it)."""

    collection: str
    chunk_ids: list[str]  # one per text
    query_vector: list[float] | None = None
    # Stored vectors of the texts (VectorResult.hit_vectors), so that the scorer needs no call to fetch them.
    vectors: PackedVectors | None = None
    # Per retrieval source ("vector", "lexical", "graph"), its own score of each text; None where it missed it.
    signals: dict[str, list[float | None]] = Field(default_factory=dict)
    # The types of the entities the question links (the graph stage's): one of reranker.entity_types makes it
    # entity-centric, and the embedded scorer lifts the graph's candidates with its entity-centric weights.
    linked_types: list[str] = Field(default_factory=list)


class RerankResult(BaseModel):
    scores: list[float]  # one per input text, same order
    scorer: str  # which scorer produced them, e.g. "tei:<url>" or "embedded-dense-lexical"


class ChatResult(BaseModel):
    answer: str
    model: str


class ChatDelta(BaseModel):
    """One streamed piece of an answer."""

    content: str
    model: str
