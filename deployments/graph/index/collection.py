"""In-memory index of one collection's passage–entity graph, searched by Personalized PageRank (HippoRAG-style).

The graph store stays the source of truth; a Graph replica builds this index from it at start and patches it on
ingest and delete, so a search is a few sparse matrix–vector products in this process instead of Cypher round
trips. Plain numpy/scipy, no Ray, no store: `deployments/graph/index/live.py` keeps it current.

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

from deployments.graph.extraction.offline import named_query_keys, query_keys
from deployments.graph.extraction.ontology import UNTYPED
from deployments.graph.index.aliases import NameVariants


@dataclass(frozen=True)
class PPRParams:
    """Search settings. The server's come from `graph.index` (deployments/config/graph.py), chosen on HotpotQA-100
    questions 0–49 and SciFact train only (benchmarks/graph_tune.py); these defaults are for direct use."""

    damping: float = 0.5  # share of mass that walks on each step; the rest restarts at the seeds
    hops: int = 1  # passage -> entity -> passage steps
    entity_seed_weight: float = 0.0  # restart mass on the query's linked names (vs 1 on the seed passages)
    passage_seeds: int = 3  # how many of the passages most similar to the query vector are seeds
    seed_temperature: float = 0.05  # softmax temperature over the seed passages' cosines
    lead_weight: float = (
        10.0  # entity -> passage: a passage about the entity (named in its first sentence) weighs 1 + this
    )
    idf_power: float = 0.0  # passage -> entity: an entity weighs idf ** this (0: all mentions alike)
    # A seed passage keeps this share of its restart mass in its score (PPR's teleport term): the passage most
    # like the question stays ahead of the passages the walk reaches from it (0: the walk's mass alone).
    restart_weight: float = 0.0
    # Entity -> entity: this share of an entity's mass also flows along its relations (typed relations and
    # aliases), so "X -MOTHER_OF-> Y" stated in the passage about X carries X's mass to Y and on to Y's passages.
    relation_weight: float = 0.0
    relation_types: str = "typed"  # "typed": CO_OCCURS/RELATED_TO edges take no part; "all": they do


@dataclass
class IndexedChunk:
    chunk_id: str
    doc_id: str
    text: str
    metadata: str  # JSON, as stored
    keys: tuple[str, ...]
    lead: tuple[str, ...] = ()  # the keys named in the chunk's first sentence: what it is about
    relations: tuple[tuple[str, str, str, float], ...] = ()  # (source key, type, target key, weight)
    aliases: tuple[tuple[str, str], ...] = ()  # (alias key, entity key): "giuliani" -> "rudolph giuliani"


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

    Every chunk holds a slot (a row of the matrices). Writes are incremental: an upsert appends its chunks'
    slots, mentions and vectors; a delete marks slots dead (a replaced chunk gets a new slot). The next search
    rebuilds the two sparse matrices from the appended mention arrays in vectorized numpy (no Python loop over
    the collection), so a batch of writes costs one rebuild; dead slots are compacted away once they are half.
    """

    def __init__(self, params: PPRParams | None = None, dim: int | None = None):
        self.params = params or PPRParams()
        self.dim = dim
        self.version = 0  # the store's version this index reflects (index/live.py)
        self._slot: dict[str, int] = {}  # chunk id -> slot
        self._by_slot: list[IndexedChunk | None] = []
        self._by_doc: dict[str, set[str]] = {}
        self._alive = np.zeros(0, dtype=bool)
        self._entity_pos: dict[str, int] = {}
        self._entity_keys: list[str] = []
        self._entity_info: dict[str, tuple[str, str]] = {}  # key -> (display name, type), for the subgraph
        # Mentions as appended (slot, entity, lead) arrays, concatenated at build.
        self._m_parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        # Relations as appended (slot, source, target, weight) arrays; the alias pairs each chunk states.
        self._r_parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self._alias_of: dict[str, str] = {}  # alias key -> entity key (built)
        self._variants = NameVariants()
        self.synonyms: list[tuple[str, str]] = []  # close by name embedding (index/synonyms.py); read at each build
        self._vecs = np.zeros((0, dim or 0), dtype=np.float32)
        self._has_vec = np.zeros(0, dtype=bool)
        self._stale = True
        # Built by _build():
        self._to_entities: sp.csr_matrix | None = None  # E x P: passage mass -> entities
        self._to_passages: sp.csr_matrix | None = None  # P x E: entity mass -> passages
        self._related: sp.csr_matrix | None = None  # E x E: entity mass -> related entities (column-stochastic)
        self._df: np.ndarray = np.zeros(0)
        self._idf: np.ndarray = np.zeros(0)
        self._seedable = np.zeros(0, dtype=bool)  # live slots with a vector

    def configure(self, params: PPRParams) -> None:
        self.params = params
        self._stale = True

    # ---- writes ---------------------------------------------------------------------------------

    def _grow(self, n: int) -> None:
        if n <= len(self._alive):
            return
        cap = max(n, 2 * len(self._alive), 1024)
        self._alive = np.concatenate([self._alive, np.zeros(cap - len(self._alive), dtype=bool)])
        self._has_vec = np.concatenate([self._has_vec, np.zeros(cap - len(self._has_vec), dtype=bool)])
        if self.dim:
            vecs = np.zeros((cap, self.dim), dtype=np.float32)
            vecs[: len(self._vecs)] = self._vecs
            self._vecs = vecs

    def _kill(self, chunk_id: str) -> None:
        slot = self._slot.pop(chunk_id, None)
        if slot is not None:
            self._alive[slot] = False
            self._has_vec[slot] = False
            self._by_slot[slot] = None

    def upsert(self, chunks: list[IndexedChunk], vectors: list[list[float] | None] | None = None) -> None:
        """Adds chunks (a chunk id already present is replaced); vectors, when given, one per chunk."""
        if not chunks:
            return
        rows: list[int] = []
        cols: list[int] = []
        lead: list[bool] = []
        rel: list[tuple[int, int, int, float]] = []
        first = len(self._by_slot)
        self._grow(first + len(chunks))
        for i, chunk in enumerate(chunks):
            self._kill(chunk.chunk_id)
            slot = first + i
            self._slot[chunk.chunk_id] = slot
            self._by_slot.append(chunk)
            self._alive[slot] = True
            self._by_doc.setdefault(chunk.doc_id, set()).add(chunk.chunk_id)
            about = set(chunk.lead)
            for key in dict.fromkeys(chunk.keys):
                j = self._entity_pos.get(key)
                if j is None:
                    j = self._entity_pos[key] = len(self._entity_keys)
                    self._entity_keys.append(key)
                rows.append(slot)
                cols.append(j)
                lead.append(key in about)
            typed_only = self.params.relation_types == "typed"
            for source, type_, target, weight in chunk.relations:
                if typed_only and type_ in UNTYPED:
                    continue
                rel.append((slot, self._entity_id(source), self._entity_id(target), float(weight)))
            for alias, key in chunk.aliases:
                rel.append((slot, self._entity_id(alias), self._entity_id(key), 1.0))
        self._m_parts.append(
            (np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64), np.asarray(lead, dtype=bool))
        )
        if rel:
            r = np.asarray(rel, dtype=np.float64).reshape(-1, 4)
            self._r_parts.append(
                (
                    r[:, 0].astype(np.int64),
                    r[:, 1].astype(np.int64),
                    r[:, 2].astype(np.int64),
                    r[:, 3].astype(np.float32),
                )
            )
        if vectors is not None:
            self.set_vectors({c.chunk_id: v for c, v in zip(chunks, vectors) if v is not None})
        self._stale = True

    def _entity_id(self, key: str) -> int:
        j = self._entity_pos.get(key)
        if j is None:
            j = self._entity_pos[key] = len(self._entity_keys)
            self._entity_keys.append(key)
        return j

    def remove_docs(self, doc_ids: list[str]) -> int:
        removed = 0
        for doc_id in doc_ids:
            for chunk_id in self._by_doc.pop(doc_id, set()):
                self._kill(chunk_id)
                removed += 1
        if removed:
            self._stale = True
        return removed

    def set_vectors(self, vectors: dict[str, list[float]]) -> None:
        items = [(self._slot[c], v) for c, v in vectors.items() if c in self._slot]
        if not items:
            return
        arr = np.asarray([v for _, v in items], dtype=np.float32)
        if not self.dim or self._vecs.shape[1] != arr.shape[1]:
            self.dim = arr.shape[1]
            self._vecs = np.zeros((len(self._alive), self.dim), dtype=np.float32)
            self._has_vec[:] = False
        slots = np.asarray([s for s, _ in items], dtype=np.int64)
        self._vecs[slots] = arr / np.maximum(np.linalg.norm(arr, axis=1, keepdims=True), 1e-12)
        self._has_vec[slots] = True
        self._stale = True

    # ---- derived structures ---------------------------------------------------------------------

    def describe_entities(self, info: dict[str, tuple[str, str]]) -> None:
        """Names and types of entities (from the store), shown in search subgraphs; keys stay the identity."""
        self._entity_info.update(info)

    def entity_info(self, key: str) -> tuple[str, str]:
        return self._entity_info.get(key, (key, "ENTITY"))

    def __len__(self) -> int:
        return len(self._slot)

    def chunk_ids(self) -> set[str]:
        return set(self._slot)

    @property
    def has_vectors(self) -> bool:
        return bool(self._has_vec.any())

    def vectors_of(self, chunk_ids: list[str]) -> dict[str, np.ndarray]:
        """The stored (unit-length) vectors of these chunks, where the index has them."""
        slots = {c: self._slot[c] for c in chunk_ids if c in self._slot}
        return {c: self._vecs[s] for c, s in slots.items() if self._has_vec[s]}

    def _compact(self) -> None:
        """Drops dead slots: re-adds the live chunks (and their vectors) to fresh arrays."""
        live = [c for c in self._by_slot if c is not None]
        vecs = {c.chunk_id: self._vecs[self._slot[c.chunk_id]] for c in live if self._has_vec[self._slot[c.chunk_id]]}
        fresh = CollectionIndex(self.params, self.dim)
        fresh.upsert(live)
        fresh.set_vectors(vecs)
        fresh.version = self.version
        self.__dict__.update(fresh.__dict__)

    def _build(self) -> None:
        n_slots = len(self._by_slot)
        if n_slots - len(self._slot) > max(1024, n_slots // 2):
            self._compact()
            n_slots = len(self._by_slot)
        if self._m_parts:
            r = np.concatenate([m[0] for m in self._m_parts])
            c = np.concatenate([m[1] for m in self._m_parts])
            is_lead = np.concatenate([m[2] for m in self._m_parts])
            self._m_parts = [(r, c, is_lead)]
        else:
            r = c = np.zeros(0, dtype=np.int64)
            is_lead = np.zeros(0, dtype=bool)
        keep = self._alive[r]
        r, c, is_lead = r[keep], c[keep], is_lead[keep].astype(np.float32)
        self._m_parts = [(r, c, is_lead.astype(bool))]  # dead mentions go for good
        n_p, n_e = n_slots, len(self._entity_keys)
        df = np.bincount(c, minlength=n_e).astype(np.float32)
        idf = (np.log(max(len(self._slot), 1) / np.maximum(df, 1.0)) + 1e-3).astype(np.float32)
        p = self.params
        # passage -> entity: each passage spreads its mass over its entities, more to rare ones (idf ** power)
        w_out = idf[c] ** p.idf_power if p.idf_power else np.ones(len(c), dtype=np.float32)
        out_sum = np.bincount(r, weights=w_out, minlength=n_p)
        self._to_entities = sp.csr_matrix((w_out / out_sum[r], (c, r)), shape=(n_e, n_p), dtype=np.float32)
        # entity -> passage: an entity passes its mass on, mostly to the passages about it
        w_in = 1.0 + p.lead_weight * is_lead
        in_sum = np.bincount(c, weights=w_in, minlength=n_e)
        self._to_passages = sp.csr_matrix((w_in / in_sum[c], (r, c)), shape=(n_p, n_e), dtype=np.float32)
        self._related = self._build_related(n_e, df)
        self._df = df
        self._idf = idf
        self._seedable = (self._alive & self._has_vec)[:n_p]
        self._stale = False

    def _build_related(self, n_e: int, df: np.ndarray) -> sp.csr_matrix:
        """The entity -> entity matrix of live relations and aliases (both directions, weights summed over chunks),
        each column scaled to sum 1; name variants across documents ("rudy giuliani" ~ "rudolph giuliani") join
        as aliases. Alias keys that no chunk mentions are resolved for linking (`_alias_of`)."""
        if self._r_parts:
            slot = np.concatenate([x[0] for x in self._r_parts])
            src = np.concatenate([x[1] for x in self._r_parts])
            tgt = np.concatenate([x[2] for x in self._r_parts])
            w = np.concatenate([x[3] for x in self._r_parts])
            keep = self._alive[slot]
            self._r_parts = [(slot[keep], src[keep], tgt[keep], w[keep])]
            src, tgt, w = src[keep], tgt[keep], w[keep]
        else:
            src = tgt = np.zeros(0, dtype=np.int64)
            w = np.zeros(0, dtype=np.float32)
        mentioned = {self._entity_keys[j] for j in np.flatnonzero(df > 0)}
        self._alias_of = {}
        for s, t in zip(src.tolist(), tgt.tolist()):
            a, k = self._entity_keys[s], self._entity_keys[t]
            if a not in mentioned and k in mentioned:
                self._alias_of.setdefault(a, k)
        persons = {k for k, (_, t) in self._entity_info.items() if t == "PERSON"} if self._entity_info else None
        self._variants = NameVariants(mentioned, persons, self.synonyms)
        pairs = [(self._entity_pos[a], self._entity_pos[b]) for a, b in self._variants.pairs()]
        if pairs:
            v = np.asarray(pairs, dtype=np.int64)
            src, tgt = np.concatenate([src, v[:, 0]]), np.concatenate([tgt, v[:, 1]])
            w = np.concatenate([w, np.ones(len(v), dtype=np.float32)])
        rows, cols, vals = np.concatenate([tgt, src]), np.concatenate([src, tgt]), np.concatenate([w, w])
        m = sp.csr_matrix((vals, (rows, cols)), shape=(n_e, n_e), dtype=np.float32)
        col_sum = np.asarray(m.sum(axis=0)).ravel()
        return (m @ sp.diags(1.0 / np.maximum(col_sum, 1e-12))).tocsr().astype(np.float32)

    def canonical(self, key: str) -> str:
        """The entity a key names: itself, the entity it is an alias of, or its one name variant."""
        self.ensure_built()
        found = self._resolve(key)
        return found[0] if len(found) == 1 else key

    def aliases_of(self, key: str) -> list[str]:
        """Other names of an entity: the short forms chunks state, and its name variants across documents."""
        self.ensure_built()
        stated = sorted(a for a, k in self._alias_of.items() if k == key)
        return stated + [v for v in self._variants.of(key) if v not in stated]

    def relations_of(self, chunks: list[IndexedChunk], keys: set[str]) -> list[tuple[str, str, str, float]]:
        """The typed relations these chunks state that touch `keys` (summed over chunks), strongest first."""
        summed: dict[tuple[str, str, str], float] = {}
        for chunk in chunks:
            for source, type_, target, weight in chunk.relations:
                if type_ not in UNTYPED and (source in keys or target in keys):
                    summed[(source, type_, target)] = summed.get((source, type_, target), 0.0) + weight
        return [(s, t, o, w) for (s, t, o), w in sorted(summed.items(), key=lambda kv: -kv[1])]

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
            "chunks": len(self._slot),
            "slots": len(self._by_slot),
            "entities": int((self._df > 0).sum()),
            "mentions": int(self._to_passages.nnz) if self._to_passages is not None else 0,
            "matrix_bytes": nbytes,
            "vector_bytes": int(self._vecs[: len(self._by_slot)].nbytes),
        }

    # ---- search ---------------------------------------------------------------------------------

    def link(self, query: str) -> list[str]:
        """Entity keys the query names (longest matches only)."""
        self.ensure_built()
        return longest_matches(list(dict.fromkeys(k for q in query_keys(query) for k in self._resolve(q))))

    def _resolve(self, key: str) -> list[str]:
        """The entity keys a query key names: itself, the entity it is an alias of, or its name variants."""
        key = self._alias_of.get(key, key)
        if key in self._entity_pos and self._df[self._entity_pos[key]] > 0:
            return [key]
        return self._variants.match(key)

    def _spread(self, e: np.ndarray) -> np.ndarray:
        """Entity mass plus the share `relation_weight` of it passed along relations (one step)."""
        w = self.params.relation_weight
        if w <= 0 or self._related is None or not self._related.nnz:
            return e
        return e + w * (self._related @ e)

    def search(
        self, query: str, limit: int, query_vector: list[float] | np.ndarray | None = None, hops: int | None = None
    ) -> SearchResult:
        """Chunks ranked by the mass a walk from the query's most similar passages (and linked entities) brings.

        Without a query vector (or stored passage vectors), or with hops = 0, the walk starts at the linked
        entities alone; hops caps the passage -> entity -> passage steps at `params.hops`.
        """
        self.ensure_built()
        params = self.params
        steps = params.hops if hops is None else min(hops, params.hops)
        if steps <= 0:
            query_vector, steps = None, 1
        n_p = len(self._by_slot)
        linked = self.link(query)
        if not self._slot:
            return SearchResult(chunks=[], linked=linked)
        seed_p = np.zeros(n_p, dtype=np.float32)
        n_seedable = int(self._seedable.sum())
        if query_vector is not None and n_seedable and params.passage_seeds > 0:
            q = np.asarray(query_vector, dtype=np.float32)
            q = q / max(float(np.linalg.norm(q)), 1e-12)
            cos = self._vecs[:n_p] @ q
            cos[~self._seedable] = -np.inf
            k = min(params.passage_seeds, n_seedable)
            top = np.argpartition(-cos, k - 1)[:k]
            seed_p[top] = np.exp((cos[top] - cos[top].max()) / params.seed_temperature)
            seed_p /= seed_p.sum()
        seed_e = np.zeros(len(self._entity_keys), dtype=np.float32)
        # Beside passage seeds, only the entities the query writes as names restart the walk: a generic word it
        # shares with some passage's frequent phrases ("killed", "type") would pull in passages about anything.
        named = {k for q in named_query_keys(query) for k in self._resolve(q)} if seed_p.any() else None
        for key in linked if named is None else [k for k in linked if k in named]:
            seed_e[self._entity_pos[key]] = self._idf[self._entity_pos[key]]
        entity_share = params.entity_seed_weight if seed_p.any() else 1.0
        if seed_e.any() and entity_share > 0:
            seed_e *= entity_share / seed_e.sum()
        else:
            seed_e[:] = 0
        if not seed_p.any() and not seed_e.any():
            return SearchResult(chunks=[], linked=linked)
        to_entities, to_passages = self._to_entities, self._to_passages
        assert to_entities is not None and to_passages is not None  # ensure_built made them
        e = self._spread(to_entities @ seed_p + seed_e)
        entity_mass = e.copy()
        p = to_passages @ e
        scale = 1.0
        for _ in range(steps - 1):  # further hops add damped mass
            scale *= params.damping
            e = self._spread(to_entities @ p)
            entity_mass += scale * e
            p = p + scale * (to_passages @ e)
        if params.restart_weight > 0:
            p = p + params.restart_weight * seed_p
        k = min(limit, n_p)
        top = np.argpartition(-p, k - 1)[:k]
        top = top[np.argsort(-p[top], kind="stable")]
        chunks = [(self._by_slot[i], float(p[i])) for i in top if p[i] > 0 and self._alive[i]]
        linked_set = set(linked)
        n_top = min(len(linked) + 10, len(entity_mass))
        e_top = np.argpartition(-entity_mass, n_top - 1)[:n_top] if n_top else np.zeros(0, dtype=np.int64)
        e_top = e_top[np.argsort(-entity_mass[e_top], kind="stable")]
        reached = [
            self._entity_keys[j] for j in e_top if entity_mass[j] > 0 and self._entity_keys[j] not in linked_set
        ][:10]
        return SearchResult(chunks=chunks, linked=linked, reached=reached)
