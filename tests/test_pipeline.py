"""Pipeline logic without Ray: fan-out concurrency, fusion, degradation, all-or-nothing ingest."""
from __future__ import annotations

import asyncio
import time

import pytest

from deployments.config import AppConfig
from deployments.errors import CollectionNotFound, StageUnavailable
from deployments.models import (
    AnswerRequest,
    ChatResult,
    Document,
    GraphResult,
    IngestRequest,
    RerankResult,
    RetrieveRequest,
    ScoredChunk,
    Span,
    Subgraph,
    VectorResult,
)
from deployments.ingress.pipeline import Pipeline, Stages, reciprocal_rank_fusion


def chunk(cid: str, text: str = "", score: float = 1.0) -> ScoredChunk:
    return ScoredChunk(chunk_id=cid, doc_id=cid.split("#")[0], text=text or f"text of {cid}", score=score)


class FakeStages:
    """Records what the pipeline asked of each stage; behaviour set per test."""

    def __init__(self, vector_delay=0.0, graph_delay=0.0):
        self.vector_delay, self.graph_delay = vector_delay, graph_delay
        self.spans: dict[str, tuple[float, float]] = {}
        self.fail: dict[str, Exception] = {}
        self.stored: dict[str, set[str]] = {"vector": set(), "graph": set()}
        self.chat_answer = "Answer from the first passage [1] and the second [2]."

    async def _stage(self, name, delay):
        start = time.time()
        await asyncio.sleep(delay)
        self.spans[name] = (start, time.time())
        if name in self.fail:
            raise self.fail[name]

    async def vector_search(self, collection, query, top_k, filt, mode="dense"):
        self.modes = [*getattr(self, "modes", []), mode]
        await self._stage("vector", self.vector_delay)
        lexical = getattr(self, "lexical_hits", None) if mode != "dense" else None
        hits = [chunk("a#0"), chunk("b#0")] if mode != "lexical" else []
        return VectorResult(hits=hits, lexical_hits=lexical, embed=Span(start=time.time(), end=time.time()))

    async def graph_search(self, collection, query, hops, limit):
        await self._stage("graph", self.graph_delay)
        return GraphResult(chunks=[chunk("c#0"), chunk("a#0")], subgraph=Subgraph())

    async def rerank(self, query, texts, hints):
        self.hints = hints
        await self._stage("rerank", 0)
        # Reverse the fused order so the test can see the reranker decided.
        return RerankResult(scores=[float(i) for i in range(len(texts))], scorer="test-scorer")

    async def chat(self, query, passages, facts):
        await self._stage("chat", 0)
        return ChatResult(answer=self.chat_answer, model="test-llm")

    async def vector_upsert(self, collection, chunks):
        await self._stage("vector", 0)
        self.stored["vector"] |= {c.doc_id for c in chunks}
        return len(chunks)

    async def graph_upsert(self, collection, chunks):
        await self._stage("graph", 0)
        self.stored["graph"] |= {c.doc_id for c in chunks}
        return {"entities": 3, "relations": 2}

    async def vector_delete(self, collection, doc_ids):
        self.stored["vector"] -= set(doc_ids)
        return 1

    async def graph_delete(self, collection, doc_ids):
        self.stored["graph"] -= set(doc_ids)
        return 1

    async def count(self, collection):
        return len(self.stored["vector"])

    async def counts(self, collection):
        return {"chunks": len(self.stored["graph"]), "entities": 3, "relations": 2}

    async def ok(self):
        return "fine"

    async def down(self):
        raise ConnectionError("refused")

    def stages(self) -> Stages:
        return Stages(
            vector_search=self.vector_search, graph_search=self.graph_search, rerank=self.rerank, chat=self.chat,
            vector_upsert=self.vector_upsert, graph_upsert=self.graph_upsert,
            vector_delete=self.vector_delete, graph_delete=self.graph_delete,
            vector_count=self.count, graph_counts=self.counts,
            pings={"vector": self.ok, "graph": self.down},
        )


def make(fake: FakeStages, **args) -> Pipeline:
    # These tests are about the vector + graph fan-out: the mode that runs both (the default is "hybrid").
    return Pipeline(AppConfig.from_args({"data_dir": "/tmp/graphrag-unit", "retrieval.mode": "hybrid+graph", **args}), fake.stages())


async def test_vector_and_graph_run_concurrently():
    fake = FakeStages(vector_delay=0.2, graph_delay=0.2)
    resp = await make(fake).retrieve(RetrieveRequest(query="q"))
    (vs, ve), (gs, ge) = fake.spans["vector"], fake.spans["graph"]
    assert max(vs, gs) < min(ve, ge), "the stages did not overlap"
    t = resp.timings
    assert t.graph.start_ms < t.vector.start_ms + t.vector.duration_ms
    assert t.vector.start_ms < t.graph.start_ms + t.graph.duration_ms


async def test_fusion_merges_sources_and_reranker_orders():
    resp = await make(FakeStages()).retrieve(RetrieveRequest(query="q", top_k=3))
    by_id = {h.chunk_id: h for h in resp.hits}
    assert set(by_id) == {"a#0", "b#0", "c#0"}
    assert sorted(by_id["a#0"].sources) == ["graph", "vector"]
    assert by_id["c#0"].sources == ["graph"]
    assert [h.score for h in resp.hits] == sorted((h.score for h in resp.hits), reverse=True)
    assert resp.reranker == "test-scorer" and resp.degraded == []
    assert resp.timings.total is not None


def test_rrf_rewards_agreement():
    fused = reciprocal_rank_fusion({"vector": [chunk("x"), chunk("y")], "graph": [chunk("y"), chunk("z")]}, k=60)
    assert [c.chunk_id for c, _, _ in fused] == ["y", "x", "z"]
    assert fused[0][1] == pytest.approx(1 / 62 + 1 / 61)


async def test_failed_graph_is_degraded_and_vector_evidence_kept():
    fake = FakeStages()
    fake.fail["graph"] = ConnectionError("bolt refused")
    resp = await make(fake).retrieve(RetrieveRequest(query="q"))
    assert [d.stage for d in resp.degraded] == ["graph"] and "bolt refused" in resp.degraded[0].error
    assert {h.chunk_id for h in resp.hits} == {"a#0", "b#0"}


async def test_slow_vector_times_out_as_degraded():
    fake = FakeStages(vector_delay=1.0)
    resp = await make(fake, **{"retrieval": {"vector_timeout_s": 0.1}}).retrieve(RetrieveRequest(query="q"))
    assert resp.degraded[0].stage == "vector" and "timed out" in resp.degraded[0].error
    assert {h.chunk_id for h in resp.hits} == {"c#0", "a#0"}


async def test_both_retrieval_stages_down_is_unavailable():
    fake = FakeStages()
    fake.fail["vector"] = ConnectionError("x")
    fake.fail["graph"] = ConnectionError("y")
    with pytest.raises(StageUnavailable) as err:
        await make(fake).retrieve(RetrieveRequest(query="q"))
    assert "vector" in err.value.stage and "graph" in err.value.stage


async def test_unknown_collection_propagates():
    fake = FakeStages()
    fake.fail["vector"] = CollectionNotFound("nope")
    with pytest.raises(CollectionNotFound):
        await make(fake).retrieve(RetrieveRequest(query="q", collection="nope"))


async def test_reranker_failure_keeps_fused_order():
    fake = FakeStages()
    fake.fail["rerank"] = RuntimeError("tei down")
    resp = await make(fake).retrieve(RetrieveRequest(query="q"))
    assert resp.reranker is None and resp.degraded[0].stage == "rerank"
    assert resp.hits[0].chunk_id == "a#0"  # found by both stages: first by RRF


async def test_answer_citations_point_at_passages():
    resp = await make(FakeStages()).answer(AnswerRequest(query="q"))
    assert resp.model == "test-llm"
    assert [(c.n, c.chunk_id) for c in resp.citations] == [(1, resp.hits[0].chunk_id), (2, resp.hits[1].chunk_id)]
    assert resp.timings.chat is not None and resp.timings.total is not None


async def test_chat_failure_falls_back_to_extractive_or_503():
    fake = FakeStages()
    fake.fail["chat"] = ConnectionError("llm down")
    resp = await make(fake).answer(AnswerRequest(query="text"))
    assert resp.model == "extractive" and resp.degraded[-1].stage == "chat"
    with pytest.raises(StageUnavailable) as err:
        await make(fake, chat_fallback_extractive=False).answer(AnswerRequest(query="text"))
    assert err.value.stage == "chat"


async def test_ingest_is_all_or_nothing():
    fake = FakeStages()
    req = IngestRequest(documents=[Document(id="d1", text="One. Two."), Document(id="d2", text="Three.")])
    ok = await make(fake).ingest(req)
    assert ok.chunks == 2 and ok.entities == 3 and fake.stored["vector"] == {"d1", "d2"}
    fake.fail["graph"] = ConnectionError("bolt refused")
    with pytest.raises(StageUnavailable) as err:
        await make(fake).ingest(req)
    assert err.value.stage == "graph"
    assert fake.stored == {"vector": set(), "graph": set()}, "a failed ingest left documents behind"


async def test_ready_reports_each_stage():
    stages = await make(FakeStages()).ready()
    assert stages["vector"].ok and stages["vector"].backend == "fine"
    assert not stages["graph"].ok and "refused" in stages["graph"].error
