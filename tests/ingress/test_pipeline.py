"""Pipeline logic without Ray: fan-out concurrency, fusion, degradation, all-or-nothing ingest."""

from __future__ import annotations

import pytest

from deployments.errors import CollectionNotFound, StageUnavailable
from deployments.ingress.fusion import reciprocal_rank_fusion
from deployments.models import AnswerRequest, Document, IngestRequest, RetrieveRequest
from tests.fakes import FakeStages, chunk, make


@pytest.mark.parametrize("seeds", [{"retrieval.graph_seeds": "lookup"}, {"vector.qdrant_url": "http://127.0.0.1:1"}])
async def test_vector_and_graph_run_concurrently(seeds):
    """The graph looking its seed passages up itself (asked to, or `auto` with a Qdrant server)."""
    fake = FakeStages(vector_delay=0.2, graph_delay=0.2)
    resp = await make(fake, **seeds).retrieve(RetrieveRequest(query="q"))
    (vs, ve), (gs, ge) = fake.spans["vector"], fake.spans["graph"]
    assert max(vs, gs) < min(ve, ge), "the stages did not overlap"
    t = resp.timings
    assert t.graph.start_ms < t.vector.start_ms + t.vector.duration_ms
    assert t.vector.start_ms < t.graph.start_ms + t.graph.duration_ms
    assert fake.graph_seeds == [None] and fake.graph_query_vector == [1.0, 0.0]


@pytest.mark.parametrize("seeds", [{}, {"retrieval.graph_seeds": "vector_hits"}])
async def test_the_graph_seeds_from_the_vector_hits_with_the_embedded_store(seeds):
    """`auto` with the embedded store (one Vector replica): the graph is called once the dense hits are in, with
    the best `passage_seeds` of them, and asks the vector stage nothing itself."""
    fake = FakeStages(vector_delay=0.05)
    resp = await make(fake, **{"graph.index.passage_seeds": 2, **seeds}).retrieve(RetrieveRequest(query="q"))
    (_, vector_end), (graph_start, _) = fake.spans["vector"], fake.spans["graph"]
    assert vector_end <= graph_start
    assert fake.graph_seeds == [[("a#0", 1.0), ("b#0", 1.0)]]
    assert {h.chunk_id for h in resp.hits} == {"a#0", "b#0", "c#0"} and resp.degraded == []


async def test_with_the_vector_stage_down_the_graph_looks_its_seeds_up_itself():
    fake = FakeStages()
    fake.fail["vector"] = ConnectionError("vector down")
    resp = await make(fake).retrieve(RetrieveRequest(query="q"))
    assert fake.graph_seeds[0] is None and fake.graph_query_vector == [1.0, 0.0]
    assert [d.stage for d in resp.degraded] == ["vector"] and {h.chunk_id for h in resp.hits} == {"c#0", "a#0"}


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
    fake.fail["rerank"] = StageUnavailable("rerank", "tei down")
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
        await make(fake, **{"chat.fallback_extractive": False}).answer(AnswerRequest(query="text"))
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


def _remote(cause: BaseException) -> BaseException:
    """The exception a Serve handle raises when the replica's code raised `cause` (Ray's RayTaskError, made an
    instance of the cause's class as Serve does)."""
    from ray.exceptions import RayTaskError

    return RayTaskError("Graph.search", "Traceback (most recent call last):\n  ...", cause).as_instanceof_cause()


def _stage_failures() -> list[BaseException]:
    from ray.exceptions import ActorDiedError, ActorUnavailableError
    from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

    return [
        ConnectionError("refused"),
        TimeoutError("slow"),
        StageUnavailable("graph", "bolt down"),
        _remote(StageUnavailable("graph", "bolt down")),
        ActorDiedError(),
        ActorUnavailableError("gone", None),
        BackPressureError(num_queued_requests=10, max_queued_requests=10),
        DeploymentUnavailableError("Graph"),
        _remote(ConnectionError("refused inside the replica")),
    ]


@pytest.mark.parametrize("failure", _stage_failures(), ids=lambda e: type(e).__name__)
async def test_stage_failures_degrade(failure):
    fake = FakeStages()
    fake.fail["graph"] = failure
    resp = await make(fake).retrieve(RetrieveRequest(query="q"))
    assert [d.stage for d in resp.degraded] == ["graph"]
    assert {h.chunk_id for h in resp.hits} == {"a#0", "b#0"}


@pytest.mark.parametrize(
    "bug",
    [
        TypeError("unsupported operand"),
        AttributeError("no attribute 'hits'"),
        KeyError("x"),
        _remote(TypeError("remote bug")),
        _remote(ValueError("remote bug")),
    ],
    ids=lambda e: type(e).__name__,
)
@pytest.mark.parametrize("stage", ["vector", "graph", "rerank", "chat"])
async def test_programming_errors_are_not_degraded_but_raised(stage, bug):
    fake = FakeStages()
    fake.fail[stage] = bug
    with pytest.raises(type(bug)):
        await make(fake).answer(AnswerRequest(query="q"))


async def test_programming_error_in_first_streamed_piece_is_raised():
    fake = FakeStages()
    fake.fail["chat"] = TypeError("bug")
    with pytest.raises(TypeError):
        async for _ in make(fake).answer_stream(AnswerRequest(query="q")):
            pass


async def test_ingest_bug_in_one_store_still_removes_both_then_raises():
    fake = FakeStages()
    fake.fail["graph"] = TypeError("bug in graph upsert")
    req = IngestRequest(documents=[Document(id="d1", text="One. Two.")])
    with pytest.raises(TypeError):
        await make(fake).ingest(req)
    assert fake.stored == {"vector": set(), "graph": set()}, "a failed ingest left documents behind"


async def test_delete_bug_is_raised_not_a_503():
    fake = FakeStages()

    async def broken(collection, doc_ids):
        raise TypeError("bug in delete")

    fake.graph_delete = broken
    with pytest.raises(TypeError):
        await make(fake).delete_document("default", "d1")
