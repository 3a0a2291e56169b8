"""Retrieval modes and fusion in the pipeline (no Ray): which stages each mode calls, what it fuses, how a
collection without the lexical vector is reported."""

from __future__ import annotations

import pytest

from deployments.errors import StageUnavailable
from deployments.ingress.fusion import min_max, reciprocal_rank_fusion, source_scores, weighted_score_fusion
from deployments.models import PackedVectors, RetrieveRequest
from tests.fakes import FakeStages, chunk, make


def lexical_fake() -> FakeStages:
    fake = FakeStages()
    fake.lexical_hits = [chunk("b#0", score=7.0), chunk("d#0", score=3.0)]
    return fake


async def test_modes_without_graph_never_call_the_graph_stage():
    for mode in ("dense", "lexical", "hybrid"):
        fake = lexical_fake()
        resp = await make(fake).retrieve(RetrieveRequest(query="q", mode=mode, rerank=False))
        assert "graph" not in fake.spans and resp.timings.graph is None, mode
        assert resp.mode == mode and fake.modes == [mode]
        assert not any("graph" in h.sources for h in resp.hits)


async def test_each_mode_fuses_its_own_sources():
    async def sources(mode: str) -> dict[str, list[str]]:
        resp = await make(lexical_fake()).retrieve(RetrieveRequest(query="q", mode=mode, rerank=False, top_k=10))
        return {h.chunk_id: sorted(h.sources) for h in resp.hits}

    assert await sources("dense") == {"a#0": ["vector"], "b#0": ["vector"]}
    assert await sources("lexical") == {"b#0": ["lexical"], "d#0": ["lexical"]}
    assert await sources("hybrid") == {"a#0": ["vector"], "b#0": ["lexical", "vector"], "d#0": ["lexical"]}
    both = await sources("hybrid+graph")
    assert both["a#0"] == ["graph", "vector"] and both["c#0"] == ["graph"] and both["d#0"] == ["lexical"]


async def test_mode_defaults_to_the_config_and_use_graph_false_drops_the_graph():
    fake = lexical_fake()
    resp = await make(fake, **{"retrieval.mode": "lexical"}).retrieve(RetrieveRequest(query="q"))
    assert resp.mode == "lexical" and fake.modes == ["lexical"]
    fake = lexical_fake()
    await make(fake).retrieve(RetrieveRequest(query="q", mode="hybrid+graph", use_graph=False))
    assert "graph" not in fake.spans


async def test_rerank_gets_each_sources_scores_and_can_be_skipped():
    fake = lexical_fake()
    resp = await make(fake).retrieve(RetrieveRequest(query="q", mode="hybrid", rerank=True, top_k=10))
    assert resp.reranker == "test-scorer"
    ids = fake.hints.chunk_ids
    assert set(fake.hints.signals) == {"vector", "lexical"}
    assert (
        fake.hints.signals["lexical"][ids.index("d#0")] == 3.0
        and fake.hints.signals["vector"][ids.index("d#0")] is None
    )
    fake = lexical_fake()
    resp = await make(fake).retrieve(RetrieveRequest(query="q", mode="hybrid", rerank=False))
    assert resp.reranker is None and "rerank" not in fake.spans and resp.timings.rerank is None


async def test_collection_without_lexical_vector_is_reported_never_silent():
    fake = FakeStages()
    real_search = fake.vector_search

    async def legacy_search(collection, query, top_k, filt, mode="dense", query_vector=None):
        result = await real_search(collection, query, top_k, filt, mode, query_vector)
        result.lexical_hits, result.lexical_error = None, "collection 'c' was created without the lexical vector"
        return result

    fake.vector_search = legacy_search
    resp = await make(fake).retrieve(RetrieveRequest(query="q", mode="hybrid", rerank=False))
    assert [d.stage for d in resp.degraded] == ["lexical"] and "without the lexical" in resp.degraded[0].error
    assert {h.chunk_id for h in resp.hits} == {"a#0", "b#0"}  # the dense hits still answer


async def test_failed_vector_stage_without_graph_is_unavailable():
    fake = lexical_fake()
    fake.fail["vector"] = ConnectionError("qdrant down")
    with pytest.raises(StageUnavailable, match="qdrant down"):
        await make(fake).retrieve(RetrieveRequest(query="q", mode="hybrid"))


def test_weighted_rrf_and_score_fusion():
    dense = [chunk("x", score=0.9), chunk("y", score=0.5)]
    lexical = [chunk("y", score=12.0), chunk("z", score=2.0)]
    rrf = reciprocal_rank_fusion({"vector": dense, "lexical": lexical}, k=60, weights={"vector": 1.0, "lexical": 2.0})
    assert [c.chunk_id for c, _, _ in rrf] == ["y", "z", "x"]  # lexical weighs double
    assert rrf[0][1] == pytest.approx(1 / 62 + 2 / 61)
    fused = weighted_score_fusion({"vector": dense, "lexical": lexical}, {"vector": 1.0, "lexical": 0.5})
    scores = {c.chunk_id: (s, sources) for c, s, sources in fused}
    # x: dense 1.0; y: dense 0.0 + lexical 0.5 * 1.0; z: lexical 0.5 * 0.0
    assert scores["x"] == (pytest.approx(1.0), ["vector"])
    assert scores["y"] == (pytest.approx(0.5), ["vector", "lexical"])
    assert scores["z"][0] == pytest.approx(0.0)
    assert min_max([3.0, 3.0]) == [1.0, 1.0] and min_max([]) == []


def test_source_scores_align_with_the_candidates():
    ranked = {"vector": [chunk("x", score=0.9)], "lexical": [chunk("y", score=4.0), chunk("x", score=1.0)]}
    assert source_scores(ranked, ["y", "x", "w"]) == {"vector": [None, 0.9, None], "lexical": [4.0, 1.0, None]}


def test_unknown_mode_is_refused_by_request_and_config():
    from pydantic import ValidationError

    from deployments.config import AppConfig

    with pytest.raises(ValidationError, match="mode"):
        RetrieveRequest(query="q", mode="semantic")
    with pytest.raises(ValidationError, match="mode"):
        AppConfig.from_args({"data_dir": "/tmp/graphrag-unit", "retrieval.mode": "semantic"})


async def test_the_query_is_embedded_once_and_its_vector_sent_to_vector_and_graph():
    fake = lexical_fake()
    resp = await make(fake).retrieve(RetrieveRequest(query="q", mode="hybrid+graph"))
    assert fake.query_vectors == [[1.0, 0.0]] and fake.graph_query_vector == [1.0, 0.0]
    assert fake.hints.query_vector == [1.0, 0.0]  # and the reranker scores with it
    assert resp.timings.embed is not None and fake.spans["embed"][1] <= fake.spans["vector"][0]
    fake = lexical_fake()
    await make(fake).retrieve(RetrieveRequest(query="q", mode="lexical"))
    assert "embed" not in fake.spans and fake.query_vectors == [None]  # BM25 alone needs no embedding


async def test_without_the_embedder_hybrid_modes_answer_lexically_and_dense_is_unavailable():
    fake = lexical_fake()
    fake.fail["embed"] = ConnectionError("embedder down")
    resp = await make(fake).retrieve(RetrieveRequest(query="q", mode="hybrid+graph", rerank=False, top_k=10))
    assert [d.stage for d in resp.degraded] == ["embed"] and "embedder down" in resp.degraded[0].error
    assert fake.modes == ["lexical"] and fake.graph_query_vector is None
    assert {h.chunk_id for h in resp.hits} == {"b#0", "d#0", "c#0", "a#0"}  # BM25 and the graph's hits
    fake = lexical_fake()
    fake.fail["embed"] = ConnectionError("embedder down")
    with pytest.raises(StageUnavailable, match="embedder down") as err:
        await make(fake).retrieve(RetrieveRequest(query="q", mode="dense"))
    assert err.value.stage == "embed" and "vector" not in fake.spans


async def test_the_reranker_gets_the_stored_vectors_of_vector_and_graph_hits():
    fake = lexical_fake()
    real_graph = fake.graph_search

    async def graph_with_vectors(*args, **kwargs):
        result = await real_graph(*args, **kwargs)
        result.vectors = PackedVectors.pack({"c#0": [0.0, 1.0], "a#0": [9.0, 9.0]})
        return result

    async def vector_with_vectors(*args, real=fake.vector_search):
        result = await real(*args)
        result.hit_vectors = PackedVectors.pack({"a#0": [1.0, 0.0], "b#0": [0.5, 0.5], "not-a-candidate#0": [0.3, 0.3]})
        return result

    fake.graph_search, fake.vector_search = graph_with_vectors, vector_with_vectors
    await make(fake).retrieve(RetrieveRequest(query="q", mode="hybrid+graph"))
    carried = fake.hints.vectors.unpack()
    assert set(carried) == {"a#0", "b#0", "c#0"}  # nothing left for the reranker to fetch, and nothing more sent
    assert list(carried["a#0"]) == [1.0, 0.0] and list(carried["c#0"]) == [0.0, 1.0]  # the vector stage's first
