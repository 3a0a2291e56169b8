"""In-memory index of one collection's passage–entity graph, searched by a local Personalized PageRank push
(HippoRAG-style).

The graph store stays the source of truth; a Graph replica builds this index from it at start (or loads a snapshot,
index/snapshot.py) and patches it on ingest and delete, so a search is a few sparse pushes in this process instead
of Cypher round trips. Plain numpy/scipy, no Ray, no store: `deployments/graph/index/live.py` keeps it current.

Nodes are the collection's chunks (passages) and the entities they mention; a chunk and an entity are tied when
the chunk mentions it. A search restarts the walk at its seed passages (the passages most similar to the query,
found by the vector stage's dense search: the index holds no passage vectors) and at the entities the query names
(weighted by specificity): mass flows passage -> entity -> passage, so a passage that shares a specific entity with
a passage like the question (the second hop of a multi-hop question) gains, while an entity mentioned by hundreds
of chunks spreads its mass thin. Only the seeds' neighbourhood is touched (index/walk.py): the cost of a search
does not grow with the collection.

Storage is columnar: chunk ids, document ids and the mention and relation arrays; no texts, metadata or vectors
(the vector stage holds those, fetched for the few chunks a search returns).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from deployments.graph.extraction.offline import named_query_keys, query_keys
from deployments.graph.extraction.ontology import UNTYPED
from deployments.graph.index import walk
from deployments.graph.index.aliases import Groups, NameVariants
from deployments.graph.index.columns import Columns, IndexedChunk, Relation
from deployments.graph.store.transactions import specificity
from deployments.graph.ties import MentionTable, ties

__all__ = ["CollectionIndex", "Found", "IndexedChunk", "PPRParams", "SearchResult"]


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
    relation_types: str = "typed"  # "typed": CO_OCCURS/RELATED_TO edges take no part (not even kept); "all": they do
    # Entity -> passage: an entity passes mass to at most this many of its passages (those about it first), so a
    # hub mentioned by a large share of the collection costs a search no more than this; 0: no cap. The passages
    # a search returns are scored exactly; only a passage reached through nothing but such a hub can be missed.
    max_entity_passages: int = 500
    # Entity -> passage, at the walk's last step: mass moves along at most this many mentions (besides one entity's
    # capped passages), from the entities that give one passage the most (mass x the heaviest share) down; 0: no
    # budget. As with the cap, the passages returned are scored exactly; a passage reached only through the entities
    # left out can be missed (a hub's relations reach hundreds of entities at 1M chunks, each with a few passages).
    push_budget: int = 1000


class Found(NamedTuple):
    chunk_id: str
    doc_id: str


@dataclass
class SearchResult:
    chunks: list[tuple[Found, float]]
    linked: list[str]
    reached: list[str] = field(default_factory=list)  # entities that gained the most mass, besides the linked ones


def longest_matches(keys: list[str]) -> list[str]:
    """Linked keys without those inside a longer linked key ("nolan" goes when "christopher nolan" links)."""
    padded = [f" {k} " for k in keys]
    return [k for k, p in zip(keys, padded) if not any(p in other and p != other for other in padded)]


class CollectionIndex(Columns):
    """One collection's chunks, entities and mention graph (writes and storage: index/columns.py), and its walk.

    The next search after writes rebuilds the walk's rows from the mention arrays in vectorized numpy (no Python
    loop over the collection), so a batch of writes costs one rebuild."""

    def __init__(self, params: PPRParams | None = None):
        params = params or PPRParams()
        super().__init__(untyped_relations=params.relation_types == "all")
        self.params = params
        self.synonyms: list[tuple[str, str]] = []  # close by name embedding (index/synonyms.py); read at each build
        # Built by _build():
        self._to_entities = walk.Rows.of(*(np.zeros(0, dtype=np.int64),) * 3, 0)  # passage -> its entities
        self._to_passages = walk.Rows.of(*(np.zeros(0, dtype=np.int64),) * 3, 0)  # entity -> passages, heaviest first
        self._related = walk.Rows.of(*(np.zeros(0, dtype=np.int64),) * 3, 0)  # entity -> related entities
        self._in_sum: np.ndarray = np.zeros(0)  # per entity: the sum of its passage weights (scores a passage exactly)
        self._df: np.ndarray = np.zeros(0)
        self._idf: np.ndarray = np.zeros(0)
        self._alias_of: dict[str, str] = {}  # alias key -> entity key (built)
        self._variants = NameVariants()
        self._loaded_groups: Groups = {}  # name-variant groups a snapshot brought

    def configure(self, params: PPRParams) -> None:
        """New settings for the next search (co-occurrence rows dropped before stay dropped: see Columns)."""
        self.params = params
        self._untyped = params.relation_types == "all"
        self._stale = True

    # ---- derived structures ---------------------------------------------------------------------

    def _build(self) -> None:
        self._drop_dead()
        slot, ent, is_lead = self._m_slot, self._m_ent, self._m_lead
        n_p, n_e = len(self._ids), len(self._entity_keys)
        df = np.bincount(ent, minlength=n_e).astype(np.float32)
        idf = (np.log(max(len(self._slot), 1) / np.maximum(df, 1.0)) + 1e-3).astype(np.float32)
        p = self.params
        # passage -> entity: each passage spreads its mass over its entities, more to rare ones (idf ** power)
        w_out = idf[ent] ** p.idf_power if p.idf_power else np.ones(len(ent), dtype=np.float32)
        out_sum = np.bincount(slot, weights=w_out, minlength=n_p)
        self._to_entities = walk.Rows.of(slot, ent, w_out / out_sum[slot], n_p)
        # entity -> passage: an entity passes its mass on, mostly to the passages about it (listed first)
        w_in = 1.0 + p.lead_weight * is_lead
        self._in_sum = np.bincount(ent, weights=w_in, minlength=n_e)
        heaviest_first = np.lexsort((slot, ~is_lead))
        self._to_passages = walk.Rows.of(
            ent[heaviest_first], slot[heaviest_first], (w_in / self._in_sum[ent])[heaviest_first], n_e
        )
        self._related = self._build_related(n_e, df)
        self._df = df
        self._idf = idf
        self._stale = False

    def _build_related(self, n_e: int, df: np.ndarray) -> walk.Rows:
        """Entity -> entity rows of live relations and aliases (both directions, weights summed over chunks), each
        entity's out-weights summing to 1; name variants across documents ("rudy giuliani" ~ "rudolph giuliani")
        join as aliases. Alias keys that no chunk mentions are resolved for linking (`_alias_of`)."""
        keep = np.ones(len(self._r_type), dtype=bool)
        if self.params.relation_types == "typed":  # aliases (ALIAS) always take part
            untyped = np.asarray([t in UNTYPED for t in self._types] + [False], dtype=bool)
            keep = ~untyped[self._r_type]  # ALIAS = -1 reads the last entry
        src, tgt, w = self._r_src[keep], self._r_tgt[keep], self._r_w[keep]
        mentioned = df > 0
        self._alias_of = {}
        for s, t in zip(src.tolist(), tgt.tolist()):
            if not mentioned[s] and mentioned[t]:
                self._alias_of.setdefault(self._entity_keys[s], self._entity_keys[t])
        keys = [self._entity_keys[j] for j in np.flatnonzero(mentioned)]
        self._variants = NameVariants(
            keys, self.persons(), known=self._variants.groups or self._loaded_groups, synonyms=self.synonyms
        )
        self._loaded_groups = {}
        pairs = [(self._entity_pos[a], self._entity_pos[b]) for a, b in self._variants.pairs()]
        if pairs:
            v = np.asarray(pairs, dtype=np.int64)
            src, tgt = np.concatenate([src, v[:, 0]]), np.concatenate([tgt, v[:, 1]])
            w = np.concatenate([w, np.ones(len(v), dtype=np.float32)])
        src, tgt = np.concatenate([src, tgt]).astype(np.int64), np.concatenate([tgt, src]).astype(np.int64)
        ids, pair = np.unique(src * n_e + tgt, return_inverse=True)
        summed = np.bincount(pair, weights=np.concatenate([w, w]).astype(np.float64))  # per pair
        src, tgt = ids // max(n_e, 1), ids % max(n_e, 1)
        out = np.bincount(src, weights=summed, minlength=n_e)
        return walk.Rows.of(src, tgt, summed / np.maximum(out[src], 1e-12), n_e)

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

    def relations_of(self, chunks: Sequence[Found], keys: set[str]) -> list[Relation]:
        """The typed relations these chunks state that touch `keys` (summed over chunks), strongest first."""
        summed: dict[tuple[str, str, str], float] = {}
        for source, type_, target, weight in self.stated_relations([c.chunk_id for c in chunks]):
            if type_ not in UNTYPED and (source in keys or target in keys):
                summed[(source, type_, target)] = summed.get((source, type_, target), 0.0) + weight
        return [(s, t, o, w) for (s, t, o), w in sorted(summed.items(), key=lambda kv: -kv[1])]

    def links(self, seed_ids: Sequence[str], chunk_ids: Sequence[str], exclude: set[str]) -> dict[str, float]:
        """How strongly each chunk is tied to the seed chunks (graph/ties.py), `exclude` (the query's keys) left
        out; as the store's links query (store/retrieval.py) counts them, from this index's mention rows."""
        return ties(self.mention_table([*seed_ids, *chunk_ids], exclude), seed_ids, chunk_ids)

    def mention_table(self, chunk_ids: Sequence[str], exclude: set[str]) -> MentionTable:
        """Each chunk's entities (keys not in `exclude`) with whether it is about them and their specificity."""
        self.ensure_built()
        table: MentionTable = {}
        for chunk_id in chunk_ids:
            keys = ((self._entity_keys[e], e, lead) for e, lead in self._mentions(chunk_id).items())
            table[chunk_id] = {k: (lead, specificity(int(self._df[e]))) for k, e, lead in keys if k not in exclude}
        return table

    def _mentions(self, chunk_id: str) -> dict[int, bool]:
        """A chunk's entities, each with whether the chunk is about it (the mention rows are in slot order)."""
        slot = self._slot.get(chunk_id)
        if slot is None:
            return {}
        lo, hi = int(self._to_entities.indptr[slot]), int(self._to_entities.indptr[slot + 1])
        return dict(zip(self._to_entities.indices[lo:hi].tolist(), self._m_lead[lo:hi].tolist(), strict=True))

    def ensure_built(self) -> None:
        if self._stale:
            self._build()

    def stats(self) -> dict:
        self.ensure_built()
        return {
            "chunks": len(self._slot),
            "slots": len(self._ids),
            "entities": int((self._df > 0).sum()),
            "mentions": int(self._to_passages.nnz),
            "matrix_bytes": self._to_entities.nbytes + self._to_passages.nbytes + self._related.nbytes,
            "column_bytes": self.column_bytes(),
        }

    # ---- as arrays (index/snapshot.py) -------------------------------------------------------------

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Columns.to_arrays, and the name-variant groups with their pairs (the costly part of a build)."""
        self.ensure_built()
        arrays = super().to_arrays()
        pos = self._entity_pos
        groups = list(self._variants.groups.values())
        arrays["vg_keys"] = np.asarray([pos[k] for keys, _ in groups for k in keys], dtype=np.int32)
        arrays["vg_sizes"] = np.asarray([len(keys) for keys, _ in groups], dtype=np.int32)
        arrays["vg_pairs"] = np.asarray([(pos[a], pos[b]) for _, p in groups for a, b in p], dtype=np.int32).reshape(
            -1, 2
        )
        arrays["vg_pair_counts"] = np.asarray([len(p) for _, p in groups], dtype=np.int32)
        return arrays

    def from_arrays(self, a: dict[str, np.ndarray]) -> None:
        super().from_arrays(a)
        keys = self._entity_keys
        members, pairs = a["vg_keys"].tolist(), a["vg_pairs"].tolist()
        at = done = 0
        for size, count in zip(a["vg_sizes"].tolist(), a["vg_pair_counts"].tolist()):
            names = [keys[j] for j in members[at : at + size]]
            found = [(keys[x], keys[y]) for x, y in pairs[done : done + count]]
            self._loaded_groups[names[0].split()[-1]] = (names, found)
            at, done = at + size, done + count

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

    def _spread(self, e: walk.Sparse) -> walk.Sparse:
        """Entity mass plus the share `relation_weight` of it passed along relations (one step)."""
        w = self.params.relation_weight
        if w <= 0 or not self._related.nnz or not len(e[0]):
            return e
        return walk.add(e, walk.push(self._related, e)[0], scales=(1.0, w))

    def _seed_passages(self, seeds: Sequence[tuple[str, float]]) -> walk.Sparse:
        """The restart mass of the seed passages: a softmax over the cosines of the `passage_seeds` most similar."""
        p = self.params
        known: dict[int, float] = {}
        for c, s in seeds:
            if c in self._slot:
                known[self._slot[c]] = max(float(s), known.get(self._slot[c], -np.inf))
        best = sorted(known.items(), key=lambda cs: -cs[1])[: p.passage_seeds]
        if not best:
            return walk.EMPTY
        ids, cos = np.asarray([i for i, _ in best], dtype=np.int64), np.asarray([c for _, c in best])
        mass = np.exp((cos - cos.max()) / p.seed_temperature)
        return ids, mass / mass.sum()

    def _seed_entities(self, query: str, linked: list[str], with_passages: bool) -> walk.Sparse:
        # Beside passage seeds, only the entities the query writes as names restart the walk: a generic word it
        # shares with some passage's frequent phrases ("killed", "type") would pull in passages about anything.
        named = {k for q in named_query_keys(query) for k in self._resolve(q)} if with_passages else None
        keys = linked if named is None else [k for k in linked if k in named]
        share = self.params.entity_seed_weight if with_passages else 1.0
        if not keys or share <= 0:
            return walk.EMPTY
        ids = np.asarray([self._entity_pos[k] for k in keys], dtype=np.int64)
        ids, mass = walk.merge(ids, self._idf[ids].astype(np.float64))
        return ids, mass * share / mass.sum()

    def search(
        self, query: str, limit: int, seeds: Sequence[tuple[str, float]] | None = None, hops: int | None = None
    ) -> SearchResult:
        """Chunks ranked by the mass a walk from the seed passages (and the query's linked entities) brings.

        `seeds`: (chunk id, cosine to the query) of the passages most similar to it (the vector stage's dense hits);
        without them, or with hops = 0, the walk starts at the linked entities alone; hops caps the
        passage -> entity -> passage steps at `params.hops`.
        """
        self.ensure_built()
        params = self.params
        steps = params.hops if hops is None else min(hops, params.hops)
        if steps <= 0:
            seeds, steps = None, 1
        linked = self.link(query)
        if not self._slot:
            return SearchResult(chunks=[], linked=linked)
        seed_p = self._seed_passages(seeds) if seeds and params.passage_seeds > 0 else walk.EMPTY
        seed_e = self._seed_entities(query, linked, bool(len(seed_p[0])))
        if not len(seed_p[0]) and not len(seed_e[0]):
            return SearchResult(chunks=[], linked=linked)
        cap = params.max_entity_passages
        # The walk's passage scores are (entity -> passage) applied to the entity mass of every hop: the entity
        # mass is pushed exactly, each hop's passage mass only to feed the next hop.
        e = self._spread(walk.add(walk.push(self._to_entities, seed_p)[0], seed_e))
        entity_mass, scale = e, 1.0
        for _ in range(steps - 1):  # further hops add damped mass
            scale *= params.damping
            p = walk.push(self._to_passages, e, cap)[0]
            e = self._spread(walk.push(self._to_entities, p)[0])
            entity_mass = walk.add(entity_mass, e, scales=(1.0, scale))
        p, cut = walk.push(self._to_passages, entity_mass, cap, params.push_budget)
        if params.restart_weight > 0:
            p = walk.add(p, seed_p, scales=(1.0, params.restart_weight))
        ids, score = walk.top(p, min(limit, len(p[0])) if not cut else min(2 * limit + 10, len(p[0])))
        if cut:  # a capped hub or the budget left out some mass: score the best candidates exactly, then rank them
            score = self._exact_scores(ids, entity_mass) + params.restart_weight * walk.lookup(seed_p, ids)
            ids, score = walk.top((ids, score), min(limit, len(ids)))
        chunks = [(Found(self._ids[i], self._docs[i]), float(s)) for i, s in zip(ids.tolist(), score.tolist()) if s > 0]
        linked_set = set(linked)
        e_top, e_mass = walk.top(entity_mass, len(linked) + 10)
        reached = [
            self._entity_keys[j] for j, m in zip(e_top.tolist(), e_mass) if m > 0 and self._entity_keys[j] not in linked_set
        ][:10]  # fmt: skip
        return SearchResult(chunks=chunks, linked=linked, reached=reached)

    def _exact_scores(self, slots: np.ndarray, entity_mass: walk.Sparse) -> np.ndarray:
        """Each passage's full share of the entity mass: over all its entities, none capped."""
        rows = self._to_entities
        starts = rows.indptr[slots]
        lens = rows.indptr[slots + 1] - starts
        pos = walk.edges(starts, lens)
        ent = rows.indices[pos]
        mass = walk.lookup(entity_mass, ent)
        held = np.flatnonzero(mass)  # most of a passage's entities hold no mass: their weights are not read
        lead = self._m_lead[pos[held]]  # the mention arrays are in slot order: the rows' edges are theirs, in order
        share = mass[held] * (1.0 + self.params.lead_weight * lead) / self._in_sum[ent[held]]
        owner = np.repeat(np.arange(len(slots)), lens)[held]
        return np.bincount(owner, weights=share, minlength=len(slots))
