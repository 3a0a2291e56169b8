"""Dropping a whole collection from the graph store (the real embedded ArcadeDB over Bolt) and from every Graph
replica's in-memory index: the writer's at once, the others' at their next version check."""
from __future__ import annotations

import asyncio

import pytest

from deployments.graph.service import GraphService
from tests.fakes import DOCS, chunks_of


@pytest.fixture
async def replicas(graph_config):
    """Two Graph replicas over one store; each checks the store's version at most every 50 ms."""
    config = graph_config.model_copy(update={"index": graph_config.index.model_copy(update={"check_interval_ms": 50.0})})
    a, b = GraphService(config, config.bolt_uri), GraphService(config, config.bolt_uri)
    yield a, b
    await a.aclose()
    await b.aclose()


async def doc_ids(service: GraphService, collection: str, query: str = "Who is Bob Jones?") -> set[str]:
    return {c.doc_id for c in (await service.search(collection, query, 1, 10)).chunks}


async def test_drop_removes_the_collection_from_the_store_and_both_replicas_indexes(replicas):
    a, b = replicas
    await a.upsert("dropme", chunks_of(DOCS))
    await a.upsert("keepme", chunks_of(DOCS))
    assert await doc_ids(a, "dropme") == await doc_ids(b, "dropme") == {"d2", "d3"}  # both indexes built
    before = await a.counts("dropme")
    assert before["chunks"] == 3 and before["entities"] > 0

    assert await b.drop_collection("dropme") == 3  # through replica b
    assert b.index_of("dropme") is None  # the writer's index is gone at once
    assert await a.counts("dropme") == {"chunks": 0, "entities": 0, "relations": 0}
    await asyncio.sleep(0.06)
    assert await doc_ids(a, "dropme") == set() and await doc_ids(b, "dropme") == set()  # a's within its interval
    assert await doc_ids(a, "keepme") == {"d2", "d3"} and (await a.counts("keepme"))["chunks"] == 3  # untouched

    assert await a.drop_collection("dropme") is None  # nothing left to drop
    assert await a.drop_collection("never-written") is None

    # The name can be used again; the replicas' indexes follow the new content, never the old.
    await a.upsert("dropme", chunks_of({"d9": "Bob Jones opened a bakery in Lyon."}))
    await asyncio.sleep(0.06)
    assert await doc_ids(a, "dropme") == await doc_ids(b, "dropme") == {"d9"}
