"""Multi-hop link boost: GraphService.links against ArcadeDB, and how the pipeline applies it."""

from __future__ import annotations

import asyncio

import pytest

from deployments.errors import NotFound, StageUnavailable
from deployments.graph.service import GraphService
from deployments.graph.store.transactions import longest_matches, specificity
from deployments.graph.ties import ties
from deployments.models import RetrieveRequest
from tests.fakes import DOCS, FakeStages, chunks_of, make


@pytest.fixture(params=["index", "store"])
async def graph(graph_config, request):  # noqa: F811
    """Links from a replica's in-memory index and from the store's query: the same ties either way."""
    config = graph_config.model_copy(
        update={"index": graph_config.index.model_copy(update={"enabled": request.param == "index"})}
    )
    service = GraphService(config, config.bolt_uri)
    yield service
    await service.aclose()


async def test_links_count_shared_entities_the_query_does_not_name(graph, request):
    collection = request.node.name[:64]
    await graph.upsert(collection, chunks_of(DOCS))
    # d3 (the best hit) names Bob Jones; d2 is about him too: the tie the question never states.
    links = await graph.links(collection, "Where did the engineer move after retiring?", ["d3#0"], ["d1#0", "d2#0"])
    assert set(links) == {"d2#0"} and links["d2#0"] == pytest.approx(specificity(2))
    # Named in the query, Bob Jones ties every candidate to the topic, not to the seed: no link.
    assert await graph.links(collection, "Where did Bob Jones move?", ["d3#0"], ["d1#0", "d2#0"]) == {}
    assert await graph.links(collection, "anything", ["d3#0"], ["d3#0"]) == {}


async def test_the_mention_table_gives_the_ties_links_gives(graph, request):
    """The ingress computes the ties from the table (graph/ties.py) as the replica's `links` does; a replica without
    its in-memory index has no table (None: the ingress asks `links`)."""
    collection = request.node.name[:64]
    await graph.upsert(collection, chunks_of(DOCS))
    query, ids = "Where did the engineer move after retiring?", ["d1#0", "d2#0", "d3#0"]
    table = await graph.mention_table(collection, query, ids)
    if not graph.config.index.enabled:
        assert table is None
        return
    expected = await graph.links(collection, query, ["d3#0"], ["d1#0", "d2#0"])
    assert expected and ties(table, ["d3#0"], ["d1#0", "d2#0"]) == pytest.approx(expected)
    named = await graph.mention_table(collection, "Where did Bob Jones move?", ids)  # the query's keys left out
    assert ties(named, ["d3#0"], ["d1#0", "d2#0"]) == {}


def test_specificity_and_longest_match():
    assert specificity(1) == 1.0 and specificity(10) > specificity(100) > 0
    assert longest_matches(["nolan", "christopher nolan", "film", "north carolina", "carolina"]) == [
        "christopher nolan",
        "film",
        "north carolina",
    ]


class LinkedStages(FakeStages):
    def __init__(self, links=None, fail=None):
        super().__init__()
        self.links, self.link_fail, self.link_calls = links or {}, fail, []

    async def graph_links(self, collection, query, seeds, chunk_ids):
        self.link_calls.append((seeds, chunk_ids))
        if self.link_fail:
            raise self.link_fail
        return self.links


async def test_pipeline_raises_linked_candidates_after_rerank():
    # The fake reranker scores the fused list 0, 1, 2: c#0 (2) > b#0 (1) > a#0 (0) (fused order a, c, b).
    fake = LinkedStages(links={"a#0": 3.0})
    resp = await make(fake, retrieval={"link_weight": 0.6}).retrieve(
        RetrieveRequest(query="q", top_k=3, mode="hybrid+graph")
    )
    seeds, rest = fake.link_calls[0]
    assert len(seeds) == 1 and seeds[0] == resp.hits[0].chunk_id and seeds[0] not in rest
    # a#0 gained 0.6 × the score range (2): 0 + 1.2 > b#0's 1.
    assert [h.chunk_id for h in resp.hits][1:] == ["a#0", "b#0"] and resp.degraded == []
    # However strong the tie, a linked hit stays behind the seed that leads to it.
    strong = LinkedStages(links={"a#0": 3.0})
    resp = await make(strong, retrieval={"link_weight": 5}).retrieve(
        RetrieveRequest(query="q", top_k=3, mode="hybrid+graph")
    )
    assert [h.chunk_id for h in resp.hits] == ["c#0", "a#0", "b#0"] and resp.hits[1].score < resp.hits[0].score

    off = LinkedStages(links={"a#0": 3.0})
    resp = await make(off, retrieval={"link_weight": 0}).retrieve(
        RetrieveRequest(query="q", top_k=3, mode="hybrid+graph")
    )
    assert off.link_calls == [] and [h.chunk_id for h in resp.hits][-1] == "a#0"
    no_graph = LinkedStages(links={"a#0": 3.0})
    await make(no_graph).retrieve(RetrieveRequest(query="q", mode="hybrid+graph", use_graph=False))
    await make(no_graph).retrieve(RetrieveRequest(query="q", mode="hybrid"))
    assert no_graph.link_calls == []


class TableStages(LinkedStages):
    """A replica with its index: the ingress asks for the candidates' mention table while the reranker runs."""

    def __init__(self, table=None, fail=None):
        super().__init__()
        self.table, self.table_fail, self.events, self.table_ids = table, fail, [], None

    async def graph_mention_table(self, collection, query, chunk_ids):
        self.events.append("mentions asked")
        self.table_ids = chunk_ids
        if self.table_fail:
            raise self.table_fail
        return self.table

    async def rerank(self, query, texts, hints):
        await asyncio.sleep(0.05)
        self.events.append("rerank done")
        return await super().rerank(query, texts, hints)


async def test_link_boost_from_the_mention_table_asked_during_the_rerank():
    # Reranked c#0 > b#0 > a#0; a#0 mentions what the top hit c#0 is about: the same boost as from `links`.
    table = {"c#0": {"bob jones": (True, 3.0)}, "a#0": {"bob jones": (False, 3.0)}, "b#0": {"other": (True, 1.0)}}
    fake = TableStages(table)
    resp = await make(fake, retrieval={"link_weight": 0.6}).retrieve(
        RetrieveRequest(query="q", top_k=3, mode="hybrid+graph")
    )
    assert fake.events == ["mentions asked", "rerank done"] and fake.link_calls == []  # no graph call after it
    assert sorted(fake.table_ids) == ["a#0", "b#0", "c#0"]
    assert [h.chunk_id for h in resp.hits] == ["c#0", "a#0", "b#0"] and resp.degraded == []

    failing = TableStages(fail=StageUnavailable("graph", "down"))
    resp = await make(failing, retrieval={"link_weight": 0.6}).retrieve(
        RetrieveRequest(query="q", top_k=3, mode="hybrid+graph")
    )
    assert [d.stage for d in resp.degraded] == ["graph"] and failing.link_calls == []
    assert [h.chunk_id for h in resp.hits] == ["c#0", "b#0", "a#0"]  # the reranked order stays


async def test_pipeline_link_failure_is_degraded_not_fatal():
    fake = LinkedStages(fail=StageUnavailable("graph", "down"))
    resp = await make(fake, retrieval={"link_weight": 0.3}).retrieve(
        RetrieveRequest(query="q", top_k=3, mode="hybrid+graph")
    )
    assert [d.stage for d in resp.degraded] == ["graph"] and "down" in resp.degraded[0].error
    assert [h.chunk_id for h in resp.hits] == ["c#0", "b#0", "a#0"]  # the reranked order stays


async def test_pipeline_delete_document_404_and_both_stores():
    fake = LinkedStages()
    fake.stored = {"vector": {"d"}, "graph": {"d"}}
    pipeline = make(fake)
    resp = await pipeline.delete_document("default", "d")
    assert (resp.points, resp.chunks) == (1, 1) and fake.stored == {"vector": set(), "graph": set()}

    async def none(collection, doc_ids):
        return 0

    pipeline.stages.vector.delete_documents = pipeline.stages.graph.delete_documents = none
    with pytest.raises(NotFound, match="'d'"):
        await pipeline.delete_document("default", "d")

    async def down(collection, doc_ids):
        raise StageUnavailable("graph", "refused")

    pipeline.stages.graph.delete_documents = down
    with pytest.raises(StageUnavailable, match="refused"):
        await pipeline.delete_document("default", "d")


async def test_links_need_an_entity_one_side_is_about(graph, request):
    collection = request.node.name[:64]
    docs = {
        "seed": "Alice Smith wrote Blue Harbour. Years later she toured Paris.",
        "about": "Blue Harbour is a novel. It sold well.",  # about what the seed mentions
        "passing": "Zed Quinn paints. He once toured Paris too.",  # shares Paris, which neither is about
    }
    await graph.upsert(collection, chunks_of(docs))
    links = await graph.links(collection, "Who wrote the novel?", ["seed#0"], ["about#0", "passing#0"])
    assert set(links) == {"about#0"}


def test_lead_entities_are_the_first_sentences():
    from deployments.config import ExtractionConfig
    from deployments.graph.extraction.llm import LLMGraph, normalize
    from deployments.graph.extraction.offline import extract
    from deployments.models import Chunk

    ex = extract(
        Chunk(chunk_id="c", doc_id="d", index=0, text="Blue Harbour\n\nAlice Smith wrote it. Bob Jones read it.")
    )
    assert {e.key for e in ex.entities if e.lead} == {"blue harbour"}
    graph = LLMGraph.model_validate({"entities": [{"name": "Blue Harbour"}, {"name": "Bob Jones"}]})
    assert [e.lead for e in normalize(graph, "c", ExtractionConfig(), "Blue Harbour").entities] == [True, False]


async def test_the_index_ties_every_pair_as_the_store_query_does(graph_config, request):
    collection = request.node.name[:64]
    docs = {
        **DOCS,
        "seed": "Alice Smith wrote Blue Harbour. Years later she toured Paris with Bob Jones.",
        "about": "Blue Harbour is a novel. It sold well in Paris.",
        "paris": "Paris is the capital of France. Alice Smith lived there.",
        "passing": "Zed Quinn paints. He once toured Paris too.",
    }
    off = graph_config.index.model_copy(update={"enabled": False})
    store = GraphService(graph_config.model_copy(update={"index": off}), graph_config.bolt_uri)
    index = GraphService(graph_config, graph_config.bolt_uri)
    try:
        await store.upsert(collection, chunks_of(docs))
        ids = [f"{d}#0" for d in docs]
        tied = 0
        for query in ("Who wrote the novel?", "Where did Alice Smith travel?"):
            for seed in ids:
                expected = await store.links(collection, query, [seed], ids)
                got = await index.links(collection, query, [seed], ids)
                assert set(got) == set(expected), (query, seed)
                assert all(got[c] == pytest.approx(expected[c]) for c in got), (query, seed)
                tied += len(got)
        assert tied >= 4  # the corpus ties some pairs (the comparison is not of empty results)
    finally:
        await store.aclose()
        await index.aclose()
