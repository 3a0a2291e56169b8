"""The local walk (sparse pushes from the seeds, index/walk.py) against the walk as full sparse matrix–vector products
over the whole passage–entity graph (the index's walk before it went local), on real data: the HotpotQA-100 passages,
chunked and extracted as the server does, questions 0–49 (dev). The walk is linear, so the pushes must give the same
scores; a hub cap changes only which passages a hub's mass reaches, never a returned passage's score."""

from __future__ import annotations

import json
from functools import cache

import numpy as np
import pytest
import scipy.sparse as sp

from benchmarks.harness import DATASETS
from deployments.config import ChunkingConfig, GraphIndexConfig
from deployments.graph.extraction.offline import extract, named_query_keys
from deployments.graph.extraction.ontology import UNTYPED
from deployments.graph.index.aliases import NameVariants
from deployments.graph.index.collection import CollectionIndex, IndexedChunk, PPRParams
from deployments.ingress.chunking import chunk_document
from deployments.models import Document

HOTPOT = DATASETS / "hotpotqa-100"


@cache
def hotpot() -> tuple[list[IndexedChunk], list[str]]:
    corpus = json.loads((HOTPOT / "hotpotqa_train_corpus.json").read_text())
    questions = [q["question"] for q in json.loads((HOTPOT / "hotpotqa_train.json").read_text())[:50]]
    rows = []
    for title, sentences in corpus.items():
        doc = Document(id=title, text=f"{title}\n\n{' '.join(sentences)}", metadata={})
        for c in chunk_document(doc, ChunkingConfig()):
            ex = extract(c)
            rows.append(
                IndexedChunk(
                    c.chunk_id,
                    c.doc_id,
                    tuple(e.key for e in ex.entities),
                    tuple(e.key for e in ex.entities if e.lead),
                    tuple((r.source, r.type, r.target, r.weight) for r in ex.relations),
                    tuple((a, e.key) for e in ex.entities for a in e.aliases),
                )  # fmt: skip
            )
    return rows, questions


def reference_walk(rows: list[IndexedChunk], p: PPRParams, index: CollectionIndex, query: str, seeds) -> dict:
    """Every passage's score by full mat-vecs over matrices built here from the rows (the former implementation's
    formulas); linking is the index's own (unchanged by the local walk)."""
    index.ensure_built()
    ent: dict[str, int] = {}
    m = [(i, ent.setdefault(k, len(ent)), k in r.lead) for i, r in enumerate(rows) for k in dict.fromkeys(r.keys)]
    rel = [
        (ent.setdefault(s, len(ent)), ent.setdefault(o, len(ent)), w)
        for r in rows
        for s, t, o, w in r.relations
        if p.relation_types == "all" or t not in UNTYPED
    ] + [(ent.setdefault(a, len(ent)), ent.setdefault(k, len(ent)), 1.0) for r in rows for a, k in r.aliases]
    n_p, n_e = len(rows), len(ent)
    r, c, lead = (np.asarray(x) for x in zip(*m))
    df = np.bincount(c, minlength=n_e).astype(float)
    idf = np.log(n_p / np.maximum(df, 1.0)) + 1e-3
    w_out = idf[c] ** p.idf_power if p.idf_power else np.ones(len(c))
    to_e = sp.csr_matrix((w_out / np.bincount(r, weights=w_out)[r], (c, r)), shape=(n_e, n_p))
    w_in = 1.0 + p.lead_weight * lead
    to_p = sp.csr_matrix((w_in / np.bincount(c, weights=w_in, minlength=n_e)[c], (r, c)), shape=(n_p, n_e))
    mentioned = [k for k, j in ent.items() if df[j] > 0]
    rel += [(ent[a], ent[b], 1.0) for a, b in NameVariants(mentioned, None).pairs()]
    src, tgt, w = (np.asarray(x, dtype=float) for x in zip(*rel)) if rel else (np.zeros(0),) * 3
    related = sp.csr_matrix((np.r_[w, w], (np.r_[tgt, src], np.r_[src, tgt])), shape=(n_e, n_e))
    related = related @ sp.diags(1.0 / np.maximum(np.asarray(related.sum(axis=0)).ravel(), 1e-12))

    def spread(e):
        return e + p.relation_weight * (related @ e) if p.relation_weight > 0 else e

    slot = {row.chunk_id: i for i, row in enumerate(rows)}
    seed_p = np.zeros(n_p)
    best = sorted(seeds, key=lambda s: -s[1])[: p.passage_seeds]
    for cid, cos in best:
        seed_p[slot[cid]] = np.exp((cos - best[0][1]) / p.seed_temperature)
    seed_p /= seed_p.sum()
    seed_e = np.zeros(n_e)
    named = {k for q in named_query_keys(query) for k in index._resolve(q)}
    for key in (k for k in index.link(query) if k in named):
        seed_e[ent[key]] = idf[ent[key]]
    if seed_e.any() and p.entity_seed_weight > 0:
        seed_e *= p.entity_seed_weight / seed_e.sum()
    else:
        seed_e[:] = 0
    e = spread(to_e @ seed_p + seed_e)
    score, scale = to_p @ e, 1.0
    for _ in range(p.hops - 1):
        scale *= p.damping
        e = spread(to_e @ score)
        score = score + scale * (to_p @ e)
    score = score + p.restart_weight * seed_p
    return {rows[i].chunk_id: float(score[i]) for i in np.flatnonzero(score > 0)}


def seeds_for(rows: list[IndexedChunk], qi: int) -> list[tuple[str, float]]:
    """Seed passages with cosines, fixed per question (the walk's arithmetic does not depend on how they were found)."""
    rng = np.random.default_rng(qi)
    picked = rng.choice(len(rows), 5, replace=False)
    return [(rows[i].chunk_id, float(c)) for i, c in zip(picked, rng.uniform(0.3, 0.8, 5))]


SETTINGS = {
    "server": {},  # graph.index's defaults: the default mode's walk
    "two_hops_restart_all_relations": {"hops": 2, "passage_seeds": 3, "restart_weight": 0.5, "relation_types": "all"},
    "idf_off_no_relations": {"idf_power": 0.0, "relation_weight": 0.0, "entity_seed_weight": 1.0},
}


@pytest.mark.parametrize("setting", SETTINGS)
def test_the_local_walk_scores_as_the_full_matrix_walk_on_hotpotqa_dev(setting):
    rows, questions = hotpot()
    params = PPRParams(**{**GraphIndexConfig().params().__dict__, **SETTINGS[setting]})
    index = CollectionIndex(params)
    index.upsert(rows)
    compared = 0
    for qi, question in enumerate(questions):
        seeds = seeds_for(rows, qi)
        expected = reference_walk(rows, params, index, question, seeds)
        found = index.search(question, 30, seeds)
        got = {c.chunk_id: s for c, s in found.chunks}
        best = sorted(expected.values(), reverse=True)[:30]
        assert [s for _, s in found.chunks] == pytest.approx(best, rel=1e-5), question  # the same ranking
        assert all(got[c] == pytest.approx(expected[c], rel=1e-5) for c in got), question  # ... of the same passages
        compared += len(got)
    assert compared > 50 * 10  # the walks reached something


@pytest.mark.parametrize("limit", [{"max_entity_passages": 50}, {"push_budget": 100}])
def test_a_hub_past_the_cap_keeps_the_returned_passages_scores_exact(limit):
    """A hub entity in 40% of the collection: with the cap its mass reaches only its first passages (those about it
    first), with a push budget only the entities that give a passage the most push; yet every returned passage
    scores what the full walk gives it, and the top ones stay the full walk's."""
    rows, questions = hotpot()
    hub_rows = [
        IndexedChunk(r.chunk_id, r.doc_id, (*r.keys, "hub"), r.lead, r.relations, r.aliases) if i % 5 < 2 else r
        for i, r in enumerate(rows)
    ]
    base = {**GraphIndexConfig().params().__dict__, "entity_seed_weight": 1.0}
    capped = CollectionIndex(PPRParams(**{**base, "max_entity_passages": 0, "push_budget": 0, **limit}))
    full = CollectionIndex(PPRParams(**{**base, "max_entity_passages": 0, "push_budget": 0}))
    for index in (capped, full):
        index.upsert(hub_rows)
    for qi, question in enumerate(questions[:20]):
        seeds = seeds_for(hub_rows, qi)
        expected = reference_walk(hub_rows, capped.params, capped, question, seeds)
        got = capped.search(question, 10, seeds).chunks
        assert all(s == pytest.approx(expected[c.chunk_id], rel=1e-5) for c, s in got)
        uncapped = full.search(question, 10, seeds).chunks
        assert [s for _, s in uncapped] == pytest.approx(sorted(expected.values(), reverse=True)[:10], rel=1e-5)
        assert [c for c, _ in got][:5] == [c for c, _ in uncapped][:5]
