import asyncio

import pytest

from deployments.config import GraphConfig
from deployments.errors import StageUnavailable
from deployments.graph.service import GraphService
from deployments.models import Chunk, Entity, Extraction, Relation
from deployments.net import free_port
from deployments.text import normalize_name
from tests.fakes import DOCS, INJECTIONS, chunks_of, raw


def store_search(config):
    """These tests cover the store: its writes and the Cypher search (graph.index.enabled: false;
    tests/graph/test_graph_index.py covers the index). Their counts are the pattern extractor's entities
    (graph.extraction.offline: patterns); the spaCy extractor has tests of its own (test_spacy_extraction.py)."""
    return config.model_copy(update={
        "index": config.index.model_copy(update={"enabled": False}),
        "extraction": config.extraction.model_copy(update={"offline": "patterns"}),
    })  # fmt: skip


@pytest.fixture
async def graph(graph_config):  # noqa: F811
    service = GraphService(store_search(graph_config), graph_config.bolt_uri)
    yield service
    await service.aclose()


@pytest.fixture
def collection(request) -> str:
    # One collection per test: tests share the session's server but never each other's data.
    return request.node.name.replace("[", "_").replace("]", "")[:64]


async def test_ping(graph):
    assert "ArcadeDB" in await graph.ping()


async def test_upsert_counts_and_reupsert_is_idempotent(graph, graph_config, collection):  # noqa: F811
    written = await graph.upsert(collection, chunks_of(DOCS))
    assert written == {"chunks": 3, "entities": 4, "relations": 3, "extractors": {"offline": 3}, "dropped_relations": 0}
    counts = await graph.counts(collection)
    assert counts == {"chunks": 3, "entities": 4, "relations": 3}
    weights = await raw(
        graph_config,
        "MATCH (a:Entity)-[r:RELATED]->(b:Entity) WHERE a.collection = $c RETURN a.key AS s, b.key AS t, r.weight AS w ORDER BY s, t",
        c=collection,
    )
    for _ in range(2):
        await graph.upsert(collection, chunks_of(DOCS))
    assert await graph.counts(collection) == counts
    # Re-ingest replaced the chunks' contributions instead of adding to them.
    assert (
        await raw(
            graph_config,
            "MATCH (a:Entity)-[r:RELATED]->(b:Entity) WHERE a.collection = $c RETURN a.key AS s, b.key AS t, r.weight AS w ORDER BY s, t",
            c=collection,
        )
        == weights
    )
    assert [w["w"] for w in weights] == [1.0, 1.0, 1.0]


async def test_reupsert_with_new_text_replaces_entities(graph, collection):
    await graph.upsert(collection, chunks_of(DOCS))
    await graph.upsert(collection, chunks_of({"d3": "Bob Jones moved to Berlin after retiring."}))
    counts = await graph.counts(collection)
    assert counts == {"chunks": 3, "entities": 4, "relations": 3}
    result = await graph.search(collection, "Paris", 0, 10)
    assert result.chunks == [] and result.linked == []  # the entity went with its only chunk
    result = await graph.search(collection, "Berlin", 0, 10)
    assert [c.chunk_id for c in result.chunks] == ["d3#0"]


async def test_search_links_entities_and_expands_hops(graph, collection):
    await graph.upsert(collection, chunks_of(DOCS, lang="en"))
    zero = await graph.search(collection, "Who is Alice Smith?", 0, 10)
    assert zero.linked == ["alice smith"]
    assert [c.chunk_id for c in zero.chunks] == ["d1#0"]
    assert [(n.id, n.hops) for n in zero.subgraph.nodes] == [("alice smith", 0)]

    one = await graph.search(collection, "Who is Alice Smith?", 1, 10)
    assert {c.chunk_id for c in one.chunks} == {"d1#0", "d2#0"}
    assert one.chunks[0].chunk_id == "d1#0" and one.chunks[0].score > one.chunks[1].score
    assert dict((n.id, n.hops) for n in one.subgraph.nodes) == {"alice smith": 0, "acme corp": 1}

    two = await graph.search(collection, "Who is Alice Smith?", 2, 10)
    ids = [c.chunk_id for c in two.chunks]
    assert "d3#0" in ids and "d3#0" not in {c.chunk_id for c in one.chunks}  # reached only at 2 hops
    assert dict((n.id, n.hops) for n in two.subgraph.nodes)["bob jones"] == 2
    assert {(e.source, e.target) for e in two.subgraph.edges} == {
        ("acme corp", "alice smith"),
        ("acme corp", "bob jones"),
    }
    assert all(e.type == "CO_OCCURS" and e.weight == 1.0 for e in two.subgraph.edges)
    scores = [c.score for c in two.chunks]
    assert scores == sorted(scores, reverse=True)
    hit = next(c for c in two.chunks if c.chunk_id == "d3#0")
    assert hit.doc_id == "d3" and hit.text == DOCS["d3"] and hit.metadata == {"source": "d3", "lang": "en"}

    limited = await graph.search(collection, "Who is Alice Smith?", 3, 1)
    assert [c.chunk_id for c in limited.chunks] == ["d1#0"]


async def test_search_caps_nodes_and_edges(graph_config, collection):  # noqa: F811
    capped = GraphService(
        store_search(graph_config).model_copy(update={"max_nodes": 2, "max_edges": 1}), graph_config.bolt_uri
    )
    try:
        await capped.upsert(collection, chunks_of(DOCS))
        result = await capped.search(collection, "Alice Smith", 3, 10)
        assert len(result.subgraph.nodes) == 2 and len(result.subgraph.edges) == 1
        assert {c.chunk_id for c in result.chunks} == {"d1#0", "d2#0"}
    finally:
        await capped.aclose()


async def test_no_linked_entity_is_an_empty_result(graph, collection):
    await graph.upsert(collection, chunks_of(DOCS))
    result = await graph.search(collection, "completely unrelated words", 2, 10)
    assert result.chunks == [] and result.linked == [] and result.subgraph.nodes == []
    assert (await graph.search(collection, "the of and?", 2, 10)).chunks == []  # no key at all


async def test_invalid_hops_rejected(graph, collection):
    with pytest.raises(ValueError):
        await graph.search(collection, "Alice Smith", 4, 10)


async def test_collections_are_scoped(graph, collection):
    await graph.upsert(collection + "_a", chunks_of(DOCS))
    await graph.upsert(collection + "_b", chunks_of({"d1": DOCS["d1"]}))
    assert (await graph.counts(collection + "_b"))["entities"] == 2
    result = await graph.search(collection + "_b", "Alice Smith", 3, 10)
    assert [c.chunk_id for c in result.chunks] == ["d1#0"]  # nothing reached in the other collection
    await graph.delete_documents(collection + "_b", ["d1"])
    assert await graph.counts(collection + "_a") == {"chunks": 3, "entities": 4, "relations": 3}


async def test_delete_documents(graph, collection):
    await graph.upsert(collection, chunks_of(DOCS))
    assert await graph.delete_documents(collection, ["d2"]) == 1
    assert await graph.counts(collection) == {"chunks": 2, "entities": 4, "relations": 2}
    # acme corp is still mentioned by d1, but no relation links it to bob jones any more.
    result = await graph.search(collection, "Alice Smith", 3, 10)
    assert {c.chunk_id for c in result.chunks} == {"d1#0"}
    assert await graph.delete_documents(collection, ["nope"]) == 0
    assert await graph.delete_documents(collection, ["d1", "d3"]) == 2
    assert await graph.counts(collection) == {"chunks": 0, "entities": 0, "relations": 0}


def hostile_extractor(chunk: Chunk) -> Extraction:
    entities = [Entity(key=normalize_name(n) or f"k{i}", name=n, type=n) for i, n in enumerate(INJECTIONS)]
    entities.append(Entity(key="`raw key`", name="raw", type="ENTITY`]->() DELETE r //"))
    relations = [
        Relation(source=entities[0].key, target=e.key, type="REL`]->(x) DELETE x //", weight=1) for e in entities[1:]
    ]
    return Extraction(chunk_id=chunk.chunk_id, entities=entities, relations=relations)


async def test_injection_attempts_are_stored_as_data(graph_config, collection):  # noqa: F811
    service = GraphService(graph_config, graph_config.bolt_uri, extractor=hostile_extractor)
    plain = GraphService(graph_config, graph_config.bolt_uri)
    try:
        await plain.upsert(collection + "_safe", chunks_of(DOCS))
        written = await service.upsert(collection, [Chunk(chunk_id="h#0", doc_id="h`}) //", index=0, text="anything")])
        assert written["entities"] == len(INJECTIONS) + 1
        stored = await raw(
            graph_config, "MATCH (e:Entity) WHERE e.collection = $c RETURN e.name AS name, e.type AS type", c=collection
        )
        assert {r["name"] for r in stored} == set(INJECTIONS) | {"raw"}
        assert {r["type"] for r in stored} == set(INJECTIONS) | {"ENTITY`]->() DELETE r //"}
        rel_types = await raw(
            graph_config,
            "MATCH (a:Entity)-[r:RELATED]->() WHERE a.collection = $c RETURN DISTINCT r.type AS t",
            c=collection,
        )
        assert rel_types == [{"t": "REL`]->(x) DELETE x //"}]
        # The other collection is untouched, and hostile names are found like any other.
        assert await plain.counts(collection + "_safe") == {"chunks": 3, "entities": 4, "relations": 3}
        result = await plain.search(collection, "Ünïcödé 🚀 名前", 1, 10)
        assert normalize_name("Ünïcödé 🚀 名前") in result.linked and result.chunks[0].doc_id == "h`}) //"
        assert await plain.delete_documents(collection, ["h`}) //"]) == 1
        assert await plain.counts(collection) == {"chunks": 0, "entities": 0, "relations": 0}
    finally:
        await service.aclose()
        await plain.aclose()


async def test_concurrent_upserts_sharing_entities(graph, collection):
    docs = {f"c{i}": f"Alice Smith and Bob Jones met at Acme Corp on day {i}." for i in range(6)}
    results = await asyncio.gather(*(graph.upsert(collection, chunks_of({d: t})) for d, t in docs.items()))
    assert all(r["chunks"] == 1 for r in results)
    assert await graph.counts(collection) == {"chunks": 6, "entities": 3, "relations": 3}
    two = await graph.search(collection, "Alice Smith", 1, 10)
    assert {e.weight for e in two.subgraph.edges} == {6.0}  # every concurrent write counted once


async def test_unreachable_server_raises_stage_unavailable(graph_config):  # noqa: F811
    port = free_port()
    service = GraphService(
        graph_config.model_copy(update={"bolt_uri": f"bolt://127.0.0.1:{port}"}), f"bolt://127.0.0.1:{port}"
    )
    try:
        with pytest.raises(StageUnavailable, match="cannot reach"):
            await service.counts("default")
        with pytest.raises(StageUnavailable):
            await service.search("default", "Alice Smith", 1, 5)
    finally:
        await service.aclose()


def test_config_is_a_graph_config(graph_config):  # noqa: F811
    assert isinstance(graph_config, GraphConfig) and not graph_config.embedded


async def test_chunk_ids_and_orphan_entities(graph, graph_config, collection):  # noqa: F811
    await graph.upsert(collection, chunks_of(DOCS))
    assert await graph.chunk_ids(collection) == {"d1#0": "d1", "d2#0": "d2", "d3#0": "d3"}
    assert await graph.orphan_entities(collection) == []
    # An entity left without its chunk (what a half-applied write could leave): found, then removed on request.
    await raw(graph_config, "MATCH (c:Chunk {collection: $c, id: 'd3#0'}) DETACH DELETE c", c=collection)
    orphans = await graph.orphan_entities(collection)
    assert orphans == [normalize_name("Paris")]
    assert await graph.orphan_entities(collection, remove=True) == orphans
    assert await graph.orphan_entities(collection) == [] and await graph.chunk_ids(collection) == {
        "d1#0": "d1",
        "d2#0": "d2",
    }
