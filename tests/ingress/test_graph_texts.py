"""The graph stage answers the ingress with ids and scores; the ingress reads the texts it lacks from the vector
stage in one call, and falls back to the graph stage's own store when the vector stage cannot give them."""

from __future__ import annotations

from deployments.models import GraphNode, RetrieveRequest, Subgraph
from tests.fakes import FakeStages, make


async def test_only_the_chunks_the_graph_alone_found_are_read_with_their_vectors():
    fake = FakeStages()
    resp = await make(fake).retrieve(RetrieveRequest(query="q", top_k=10))
    assert fake.graph_texts == [False]  # asked for ids and scores
    assert fake.chunk_reads == [["c#0"]]  # a#0 came with the vector hits: not read again
    by_id = {h.chunk_id: h for h in resp.hits}
    assert by_id["c#0"].text == "text of c#0" and by_id["c#0"].sources == ["graph"]
    assert list(fake.hints.vectors.unpack()["c#0"]) == [0.0, 1.0]  # its vector came with its text
    assert resp.degraded == []
    # Its time counts in the graph's: from the graph call's start to the texts' end.
    graph, read = fake.spans["graph"], fake.spans["vector_chunks"]
    assert resp.timings.graph.duration_ms >= round((read[1] - graph[0]) * 1000, 3) - 1


async def test_a_chunk_the_vector_store_no_longer_holds_is_left_out():
    fake = FakeStages()
    fake.unstored = {"c#0"}  # deleted since the graph's index last looked
    resp = await make(fake).retrieve(RetrieveRequest(query="q", top_k=10))
    assert "c#0" not in {h.chunk_id for h in resp.hits} and resp.degraded == []


async def test_when_the_vector_stage_cannot_give_the_texts_the_graph_stage_reads_them():
    fake = FakeStages()
    fake.fail["vector_chunks"] = ConnectionError("vector replica gone")
    resp = await make(fake).retrieve(RetrieveRequest(query="q", top_k=10))
    assert fake.graph_texts == [False, True]  # asked again, with the texts from its own store
    assert {h.chunk_id: h.text for h in resp.hits}["c#0"] == "text of c#0"
    assert [(d.stage, "vector replica gone" in d.error) for d in resp.degraded] == [("vector", True)]


async def test_with_the_vector_stage_down_the_graph_answers_with_its_own_texts():
    fake = FakeStages()
    fake.fail["vector"] = ConnectionError("vector down")
    resp = await make(fake).retrieve(RetrieveRequest(query="q", top_k=10))
    assert fake.graph_texts == [False, True] and not hasattr(fake, "chunk_reads")  # no read from a failed stage
    assert {h.chunk_id for h in resp.hits} == {"c#0", "a#0"} and all(h.text for h in resp.hits)
    assert [d.stage for d in resp.degraded] == ["vector"]


async def test_the_reranker_hears_the_types_of_the_entities_the_question_links():
    fake = FakeStages()
    real = fake.graph_search

    async def graph_search(*args, **kwargs):
        found = await real(*args, **kwargs)
        found.subgraph = Subgraph(
            nodes=[
                GraphNode(id="ann lee", name="Ann Lee", type="PERSON", hops=0),
                GraphNode(id="acme", name="Acme", type="ORG", hops=1),  # reached, not linked
                GraphNode(id="paris", name="Paris", type="GPE", hops=0),
            ]
        )
        return found

    fake.graph_search = graph_search
    await make(fake).retrieve(RetrieveRequest(query="Where did Ann Lee live in Paris?"))
    assert fake.hints.linked_types == ["GPE", "PERSON"]
    plain = FakeStages()
    await make(plain).retrieve(RetrieveRequest(query="q", mode="hybrid"))
    assert plain.hints.linked_types == []  # no graph, no types
