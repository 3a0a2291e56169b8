"""In-memory index of one collection's passage–entity graph, searched by Personalized PageRank (HippoRAG-style).

The graph store stays the source of truth; a Graph replica builds this index from it at start and patches it on
ingest and delete, so a search is a few sparse matrix–vector products in this process instead of Cypher round
trips. Plain numpy/scipy, no Ray, no store: `deployments/graph/live_index.py` keeps it current.

Nodes are the collection's chunks (passages) and the entities they mention; a chunk and an entity are tied when
the chunk mentions it. A search restarts the walk at the entities the query names (weighted by specificity) and,
when a query vector is given, at the passages most similar to it (their dense score): mass flows passage ->
entity -> passage, so a passage that shares a specific entity with a passage like the question (the second hop
of a multi-hop question) gains, while an entity mentioned by hundreds of chunks spreads its mass thin.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from deployments.graph.extraction import query_keys


@dataclass(frozen=True)
class PPRParams:
    """Search settings (chosen on HotpotQA-100 questions 0–49 only; benchmarks/graph_eval.py)."""

    damping: float = 0.5  # share of mass that walks on each step; the rest restarts at the seeds
    hops: int = 1  # passage -> entity -> passage steps
    entity_seed_weight: float = 0.0  # restart mass on the query's linked entities (vs 1 on the seed passages)
    passage_seeds: int = 3  # how many of the passages most similar to the query vector are seeds
    seed_temperature: float = 0.05  # softmax temperature over the seed passages' cosines
    lead_weight: float = 10.0  # entity -> passage: a passage about the entity (named in its first sentence) weighs 1 + this
    idf_power: float = 0.0  # passage -> entity: an entity weighs idf ** this (0: all mentions alike)


@dataclass
class IndexedChunk:
    chunk_id: str
    doc_id: str
    text: str
    metadata: str  # JSON, as stored
    keys: tuple[str, ...]
    lead: tuple[str, ...] = ()  # the keys named in the chunk's first sentence: what it is about


@dataclass
class SearchResult:
    chunks: list[tuple[IndexedChunk, float]]
    linked: list[str]
    reached: list[str] = field(default_factory=list)  # entities that gained the most mass, besides the linked ones


def longest_matches(keys: list[str]) -> list[str]:
    """Linked keys without those inside a longer linked key ("nolan" goes when "christopher nolan" links)."""
    padded = [f" {k} " for k in keys]
    return [k for k, p in zip(keys, padded) if not any(p in other and p != other for other in padded)]


class CollectionIndex:
    """One collection's chunks, entities, mention matrix and (optionally) chunk vectors.

    Writes (`upsert`, `remove_docs`) mark the matrices stale; the next search rebuilds them from the per-chunk
    rows (O(mentions), a few ms at 5k chunks), so a batch of writes costs one rebuild.
    """

    def __init__(self, params: PPRParams | None = None, dim: int | None = None):
        self.params = params or PPRParams()
        self.dim = dim
        self.version = 0  # the store's version this index reflects (live_index.py)
        self._chunks: dict[str, IndexedChunk] = {}
        self._vectors: dict[str, np.ndarray] = {}
        self._by_doc: dict[str, set[str]] = {}
        self._stale = True
        # Built by _build():
        self._order: list[IndexedChunk] = []
        self._entity_pos: dict[str, int] = {}
        self._entity_keys: list[str] = []
        self._to_entities: sp.csr_matrix | None = None  # E x P: passage mass -> entities (rows of A normalized)
        self._to_passages: sp.csr_matrix | None = None  # P x E: entity mass -> passages (columns of A normalized)
        self._df: np.ndarray = np.zeros(0)
        self._idf: np.ndarray = np.zeros(0)
        self._matrix: np.ndarray | None = None  # P x dim unit vectors (rows without a vector are 0)

    def configure(self, params: PPRParams) -> None:
        self.params = params
        self._stale = True

    # ---- writes ---------------------------------------------------------------------------------

    def upsert(self, chunks: list[IndexedChunk], vectors: list[list[float] | None] | None = None) -> None:
        """Adds chunks; a document's earlier chunks are replaced (call remove_docs first for its ids)."""
        for i, chunk in enumerate(chunks):
            self._chunks[chunk.chunk_id] = chunk
            self._by_doc.setdefault(chunk.doc_id, set()).add(chunk.chunk_id)
            vec = vectors[i] if vectors is not None else None
            if vec is not None:
                arr = np.asarray(vec, dtype=np.float32)
                self._vectors[chunk.chunk_id] = arr / max(float(np.linalg.norm(arr)), 1e-12)
                self.dim = arr.shape[0]
            else:
                self._vectors.pop(chunk.chunk_id, None)
        self._stale = True

    def remove_docs(self, doc_ids: list[str]) -> int:
        removed = 0
        for doc_id in doc_ids:
            for chunk_id in self._by_doc.pop(doc_id, set()):
                self._chunks.pop(chunk_id, None)
                self._vectors.pop(chunk_id, None)
                removed += 1
        if removed:
            self._stale = True
        return removed

    def set_vectors(self, vectors: dict[str, list[float]]) -> None:
        for chunk_id, vec in vectors.items():
            if chunk_id in self._chunks:
                arr = np.asarray(vec, dtype=np.float32)
                self._vectors[chunk_id] = arr / max(float(np.linalg.norm(arr)), 1e-12)
                self.dim = arr.shape[0]
        self._stale = True

    # ---- derived structures ---------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._chunks)

    def chunk_ids(self) -> set[str]:
        return set(self._chunks)

    @property
    def has_vectors(self) -> bool:
        return bool(self._vectors)

    def _build(self) -> None:
        order = sorted(self._chunks.values(), key=lambda c: c.chunk_id)
        entity_pos: dict[str, int] = {}
        rows: list[int] = []
        cols: list[int] = []
        lead: list[float] = []
        for i, chunk in enumerate(order):
            about = set(chunk.lead)
            for key in dict.fromkeys(chunk.keys):
                rows.append(i)
                cols.append(entity_pos.setdefault(key, len(entity_pos)))
                lead.append(1.0 if key in about else 0.0)
        n_p, n_e = len(order), len(entity_pos)
        r, c, is_lead = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64), np.asarray(lead, dtype=np.float32)
        df = np.bincount(c, minlength=n_e).astype(np.float32)
        idf = np.log(max(n_p, 1) / np.maximum(df, 1.0)) + 1e-3
        p = self.params
        # passage -> entity: each passage spreads its mass over its entities, more to rare ones (idf ** power)
        w_out = idf[c] ** p.idf_power if p.idf_power else np.ones(len(c), dtype=np.float32)
        out_sum = np.bincount(r, weights=w_out, minlength=n_p)
        self._to_entities = sp.csr_matrix((w_out / out_sum[r], (c, r)), shape=(n_e, n_p), dtype=np.float32)
        # entity -> passage: an entity passes its mass on, mostly to the passages about it
        w_in = 1.0 + p.lead_weight * is_lead
        in_sum = np.bincount(c, weights=w_in, minlength=n_e)
        self._to_passages = sp.csr_matrix((w_in / in_sum[c], (r, c)), shape=(n_p, n_e), dtype=np.float32)
        self._df = df
        self._idf = idf
        self._order = order
        self._entity_pos = entity_pos
        self._entity_keys = list(entity_pos)
        if self._vectors and self.dim:
            m = np.zeros((n_p, self.dim), dtype=np.float32)
            for i, chunk in enumerate(order):
                v = self._vectors.get(chunk.chunk_id)
                if v is not None:
                    m[i] = v
            self._matrix = m
        else:
            self._matrix = None
        self._stale = False

    def ensure_built(self) -> None:
        if self._stale:
            self._build()

    def stats(self) -> dict:
        self.ensure_built()
        nbytes = 0
        for m in (self._to_entities, self._to_passages):
            if m is not None:
                nbytes += m.data.nbytes + m.indices.nbytes + m.indptr.nbytes
        return {
            "chunks": len(self._order),
            "entities": len(self._entity_keys),
            "mentions": int(self._to_passages.nnz) if self._to_passages is not None else 0,
            "matrix_bytes": nbytes,
            "vector_bytes": int(self._matrix.nbytes) if self._matrix is not None else 0,
        }

    # ---- search ---------------------------------------------------------------------------------

    def link(self, query: str) -> list[str]:
        """Entity keys the query names (longest matches only)."""
        self.ensure_built()
        found = [k for k in query_keys(query) if k in self._entity_pos]
        return longest_matches(found)

    def search(self, query: str, limit: int, query_vector: list[float] | np.ndarray | None = None, hops: int | None = None) -> SearchResult:
        """Chunks ranked by the mass a walk from the query's most similar passages (and linked entities) brings.

        Without a query vector (or stored passage vectors), or with hops = 0, the walk starts at the linked
        entities alone; hops caps the passage -> entity -> passage steps at `params.hops`.
        """
        self.ensure_built()
        params = self.params
        steps = params.hops if hops is None else min(hops, params.hops)
        if steps <= 0:
            query_vector, steps = None, 1
        n_p = len(self._order)
        linked = self.link(query)
        if n_p == 0:
            return SearchResult(chunks=[], linked=linked)
        seed_p = np.zeros(n_p, dtype=np.float32)
        if query_vector is not None and self._matrix is not None and params.passage_seeds > 0:
            q = np.asarray(query_vector, dtype=np.float32)
            q = q / max(float(np.linalg.norm(q)), 1e-12)
            cos = self._matrix @ q
            k = min(params.passage_seeds, n_p)
            top = np.argpartition(-cos, k - 1)[:k]
            seed_p[top] = np.exp((cos[top] - cos[top].max()) / params.seed_temperature)
            seed_p /= seed_p.sum()
        seed_e = np.zeros(len(self._entity_keys), dtype=np.float32)
        for key in linked:
            seed_e[self._entity_pos[key]] = self._idf[self._entity_pos[key]]
        entity_share = params.entity_seed_weight if seed_p.any() else 1.0
        if seed_e.any() and entity_share > 0:
            seed_e *= entity_share / seed_e.sum()
        else:
            seed_e[:] = 0
        if not seed_p.any() and not seed_e.any():
            return SearchResult(chunks=[], linked=linked)
        e = self._to_entities @ seed_p + seed_e
        entity_mass = e.copy()
        p = self._to_passages @ e
        scale = 1.0
        for _ in range(steps - 1):  # further hops add damped mass
            scale *= params.damping
            e = self._to_entities @ p
            entity_mass += scale * e
            p = p + scale * (self._to_passages @ e)
        k = min(limit, n_p)
        top = np.argpartition(-p, k - 1)[:k]
        top = top[np.argsort(-p[top], kind="stable")]
        chunks = [(self._order[i], float(p[i])) for i in top if p[i] > 0]
        linked_set = set(linked)
        e_top = np.argsort(-entity_mass)[: len(linked) + 10]
        reached = [self._entity_keys[j] for j in e_top if entity_mass[j] > 0 and self._entity_keys[j] not in linked_set][:10]
        return SearchResult(chunks=chunks, linked=linked, reached=reached)
